//! The `sbom` workload: what `--attest type=sbom` adds to a CLI export of the Debian
//! chain (base → +python3 → slim, `--layer` directories, gzip), cold (a fresh store)
//! and warm (the same store again), against the same export without it. The runs of
//! both alternate so that both meet the same load. Issue 15's target: under 5 % of a
//! cold export, and a warm one only reads the package database.

use std::fs;
use std::path::Path;

use crate::debian::{cli_export, ensure_chain, strata_cli};
use crate::BoxError;

/// Runs the workload and prints its table.
pub fn bench(cache: &Path, runs: usize) -> Result<(), BoxError> {
    let chain = ensure_chain(cache)?;
    let trees = &chain.trees[..3];
    let cli = strata_cli()?;
    let scratch = cache.join("scratch-sbom");
    let variants: [(&str, &[&str]); 2] = [
        ("without attestations", &[]),
        ("--attest type=sbom", &["--attest", "type=sbom"]),
    ];
    // best[variant] = (cold s, cold RSS KiB, warm s)
    let mut best = [(f64::MAX, 0i64, f64::MAX); 2];
    for _ in 0..runs {
        for (i, (_, extra)) in variants.iter().enumerate() {
            let _ = fs::remove_dir_all(&scratch);
            let store = scratch.join("store");
            let cold = cli_export(&cli, &store, trees, &scratch.join("cold"), "gzip", extra)?;
            let warm = cli_export(&cli, &store, trees, &scratch.join("warm"), "gzip", extra)?;
            let b = &mut best[i];
            if cold.0 < b.0 {
                (b.0, b.1) = cold;
            }
            b.2 = b.2.min(warm.0);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nsbom: the Debian chain through the CLI, gzip, {cores} cores, best of {runs}");
    println!("| | cold s | cold peak RSS MiB | warm ms |");
    println!("|---|---:|---:|---:|");
    for ((name, _), (cold, rss, warm)) in variants.iter().zip(best) {
        println!(
            "| {name} | {cold:.3} | {:.0} | {:.0} |",
            rss as f64 / 1024.0,
            warm * 1e3
        );
    }
    let [plain, sbom] = best;
    let added = (sbom.0 / plain.0 - 1.0) * 100.0;
    println!(
        "the SBOM adds {added:+.1} % to a cold export (target < 5 %: {}) and {:+.0} ms to a warm one",
        if added < 5.0 { "met" } else { "NOT met" },
        (sbom.2 - plain.2) * 1e3
    );
    Ok(())
}
