//! The `zstd-chunked` workload (issue 16): the Debian base rootfs exported by the
//! strata CLI with `compression=zstd:chunked` against the same export with plain
//! `compression=zstd`, in the same run (child processes, wall time, `wait4` peak RSS,
//! the fastest of `runs` each, runs alternating). After the clock, the two layers must
//! have the same diffID (the zstd:chunked blob decompresses to the same tar) and the
//! zstd:chunked one its three `io.github.containers.zstd-chunked.*` annotations, or the
//! bench fails.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::debian::strata_cli;
use crate::ensure_rootfs;
use crate::estargz::{export, keep_fastest, print_runs, Run};
use crate::BoxError;

/// The diffID of the only layer of the layout `scratch/layout`.
fn diff_id(scratch: &Path) -> Result<String, BoxError> {
    let layout = scratch.join("layout");
    let blob = |d: &str| -> Result<Value, BoxError> {
        let hex = d.strip_prefix("sha256:").ok_or("not a sha256 digest")?;
        Ok(serde_json::from_slice(&fs::read(
            layout.join("blobs/sha256").join(hex),
        )?)?)
    };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let manifest = blob(
        index["manifests"][0]["digest"]
            .as_str()
            .ok_or("no manifest")?,
    )?;
    let config = blob(manifest["config"]["digest"].as_str().ok_or("no config")?)?;
    Ok(config["rootfs"]["diff_ids"][0]
        .as_str()
        .ok_or("no diffID")?
        .to_string())
}

/// Runs the workload and prints its table.
pub fn bench(cache: &Path, runs: usize) -> Result<(), BoxError> {
    let rootfs = ensure_rootfs(cache)?;
    let strata = strata_cli()?;
    let scratch = cache.join("scratch-zstd-chunked");
    let mut best: [Option<Run>; 2] = [None, None];
    let mut diff_ids = [String::new(), String::new()];
    let names = ["zstd", "zstd:chunked"];
    for _ in 0..runs {
        for (i, compression) in names.iter().enumerate() {
            let dir = scratch.join(compression.replace(':', "-"));
            let (_, desc, run) = export(&strata, &rootfs, &dir, compression)?;
            if i == 1 {
                for key in [
                    "manifest-checksum",
                    "manifest-position",
                    "tarsplit-position",
                ] {
                    let key = format!("io.github.containers.zstd-chunked.{key}");
                    if desc["annotations"][&key].as_str().is_none() {
                        return Err(format!("the zstd:chunked layer has no {key}").into());
                    }
                }
            }
            diff_ids[i] = diff_id(&dir)?;
            keep_fastest(&mut best[i], run);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    if diff_ids[0] != diff_ids[1] {
        return Err(format!(
            "diffIDs differ: zstd {} zstd:chunked {}",
            diff_ids[0], diff_ids[1]
        )
        .into());
    }
    let [Some(plain), Some(chunked)] = best else {
        return Err("no runs".into());
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nzstd:chunked: the Debian base layer, {cores} cores, best of {runs}");
    print_runs(&[
        ("strata export, compression=zstd", plain),
        ("strata export, compression=zstd:chunked", chunked),
    ]);
    println!(
        "zstd:chunked takes {:.2}× plain zstd's time; its blob is {:+.2} % of plain zstd's",
        chunked.seconds / plain.seconds,
        (chunked.size as f64 / plain.size as f64 - 1.0) * 100.0
    );
    Ok(())
}
