//! The `crash` workload: cold exports of the Debian chain into one store, each killed
//! with `SIGKILL` at a random moment, then what a crashed build machine's operator
//! runs: SQLite's integrity check, `strata gc`, `strata fsck`, and the next export.
//!
//! It checks the targets of issue 14: after the kills and one `gc` the store holds at
//! most 1.5× the bytes of a store that only ever saw one clean export, fsck is clean,
//! and the next export gives the clean export's digest. The kill moments come from a
//! seeded xorshift, so a run can be repeated (`--seed`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::debian::{ensure_chain, strata_cli};
use crate::BoxError;

/// `SOURCE_DATE_EPOCH` of every export, so digests are comparable.
const EPOCH: &str = "1700000000";
const IMAGE_NAME: &str = "crash:v1";
const IMAGE: &str = "type=image,name=crash:v1";
/// A store may hold at most this many times a clean store's bytes after the kills.
const MAX_GROWTH: f64 = 1.5;

/// The export command of the chain into `store`.
fn export_command(cli: &Path, store: &Path, trees: &[PathBuf]) -> Command {
    let mut cmd = Command::new(cli);
    cmd.arg("--store").arg(store).arg("export");
    for tree in trees {
        cmd.arg("--layer").arg(tree);
    }
    cmd.args(["--progress", "quiet", "-o", IMAGE])
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

/// Exports to completion; returns the printed digest and the wall seconds.
fn export(cli: &Path, store: &Path, trees: &[PathBuf]) -> Result<(String, f64), BoxError> {
    let start = Instant::now();
    let out = export_command(cli, store, trees)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("strata export into {store:?} failed ({})", out.status).into());
    }
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((digest, start.elapsed().as_secs_f64()))
}

/// Runs `strata --store STORE ARGS…`; returns stdout, or an error with stderr.
fn strata(cli: &Path, store: &Path, args: &[&str]) -> Result<String, BoxError> {
    let out = Command::new(cli)
        .arg("--store")
        .arg(store)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "strata {args:?} on {store:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bytes of every regular file under `dir` (apparent sizes; symlinks not followed).
fn tree_bytes(dir: &Path) -> Result<u64, BoxError> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let md = entry.metadata()?;
            if md.is_dir() {
                stack.push(entry.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    Ok(total)
}

/// The ingest directories a local store holds.
fn ingests(store: &Path) -> usize {
    fs::read_dir(store.join(".strata/ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// SQLite's `PRAGMA integrity_check` of the store's database, opened read-only (so
/// opening it does not reclaim anything first).
fn integrity_check(store: &Path) -> Result<String, BoxError> {
    let db = rusqlite::Connection::open_with_flags(
        store.join(".strata/meta.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
}

/// xorshift64: reproducible kill moments without a dependency.
struct Xorshift(u64);

impl Xorshift {
    /// A number in `[0, 1)`.
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the workload: `kills` killed cold exports of the chain, seeded by `seed`.
pub fn bench(cache: &Path, kills: usize, seed: u64) -> Result<(), BoxError> {
    let chain = ensure_chain(cache)?;
    let trees = &chain.trees[..3];
    let cli = strata_cli()?;
    let scratch = cache.join("scratch-crash");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;

    // The reference: one clean cold export (its time sets the kill window).
    let clean = scratch.join("clean");
    let (reference, cold_seconds) = export(&cli, &clean, trees)?;
    let clean_bytes = tree_bytes(&clean)?;
    eprintln!("clean cold export: {cold_seconds:.2} s, {reference}, store {clean_bytes} B");

    let store = scratch.join("crashed");
    let mut rng = Xorshift(seed.max(1));
    let mut completed = 0;
    let mut peak_bytes = 0;
    let mut peak_ingests = 0;
    for kill in 0..kills {
        // Anywhere in the cold export's time, from its first milliseconds on.
        let delay = Duration::from_secs_f64(cold_seconds * (0.01 + 0.98 * rng.next_unit()));
        let mut child = export_command(&cli, &store, trees)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        sleep(delay);
        if child.try_wait()?.is_some() {
            // It beat its kill: forget the image so the next export is cold again.
            completed += 1;
            strata(&cli, &store, &["rm", "--prune", IMAGE_NAME])?;
        } else {
            child.kill()?;
        }
        child.wait()?;
        if store.exists() {
            peak_bytes = peak_bytes.max(tree_bytes(&store)?);
            peak_ingests = peak_ingests.max(ingests(&store));
        }
        eprintln!(
            "kill {}/{kills} after {:.2} s: {} ingests, {} B",
            kill + 1,
            delay.as_secs_f64(),
            ingests(&store),
            if store.exists() {
                tree_bytes(&store)?
            } else {
                0
            }
        );
    }

    let integrity = integrity_check(&store)?;
    let gc = strata(&cli, &store, &["gc"])?;
    let after_gc_bytes = tree_bytes(&store)?;
    let after_gc_ingests = ingests(&store);
    let fsck = strata(&cli, &store, &["fsck"])?;
    let (digest, _) = export(&cli, &store, trees)?;
    let final_bytes = tree_bytes(&store)?;
    let final_fsck = strata(&cli, &store, &["fsck"])?;
    let growth = final_bytes as f64 / clean_bytes as f64;

    println!("crash workload: {kills} SIGKILLed cold exports of the Debian chain (seed {seed})");
    println!("  clean cold export          {cold_seconds:>8.2} s");
    println!("  exports that finished before their kill {completed} (`strata rm --prune`, so the next is cold)");
    println!("  peak store during the kills  {peak_bytes:>12} B, {peak_ingests} ingests");
    println!(
        "  after gc                     {after_gc_bytes:>12} B, {after_gc_ingests} ingests ({})",
        gc.trim()
    );
    println!("  clean store                  {clean_bytes:>12} B");
    println!("  after the next export        {final_bytes:>12} B = {growth:.3}× clean");
    let checks = [
        (
            format!(
                "store ≤ {MAX_GROWTH}× a clean store after gc and the next export ({growth:.3}×)"
            ),
            growth <= MAX_GROWTH,
        ),
        (
            format!("SQLite integrity_check: {integrity}"),
            integrity == "ok",
        ),
        (
            format!(
                "fsck clean after gc: {}",
                fsck.lines().last().unwrap_or("").trim()
            ),
            fsck.contains("all verified"),
        ),
        (
            format!(
                "fsck clean after the next export: {}",
                final_fsck.lines().last().unwrap_or("").trim()
            ),
            final_fsck.contains("all verified"),
        ),
        (
            format!("no ingest left after gc ({after_gc_ingests})"),
            after_gc_ingests == 0,
        ),
        (
            format!("next export gives the reference digest ({digest})"),
            digest == reference,
        ),
    ];
    let mut failed = 0;
    for (what, ok) in &checks {
        println!("  [{}] {what}", if *ok { "x" } else { " " });
        failed += usize::from(!ok);
    }
    fs::remove_dir_all(&scratch)?;
    if failed > 0 {
        return Err(format!("{failed} crash check(s) failed").into());
    }
    Ok(())
}
