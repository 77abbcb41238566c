//! The `synthetic` workload: generated trees of 1k, 10k and 100k files (1M files and
//! 1 GiB / 4 GiB trees with `--large`), nine files in ten compressible text and one in
//! ten incompressible random bytes, cached under `<cache>/synthetic/`.
//!
//! For each tree: strata's compare of empty → tree (gzip, default level, all cores),
//! reported as µs/file and s/GiB with peak RSS; then a one-file change on top, measured
//! twice: through the overlay fast path (upper = an overlay mount whose lowerdir is the
//! tree and whose upperdir holds the one changed file) and through the double walk (upper
//! = the merged overlay tree mounted by the bench, a plain directory to the differ).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strata_content::{ContentStore, LocalStore};
use strata_differ::{CompareOptions, Comparer, WalkingDiffer};
use strata_oci::Compression;
use strata_snapshotter::Mount;

use crate::{run_measured, BoxError};

/// One generated tree: its name, file count and approximate total bytes.
struct Spec {
    name: &'static str,
    files: u64,
    /// Size of each random file; text files are 1–4 KiB.
    random_size: usize,
}

const SMALL: &[Spec] = &[
    Spec {
        name: "1k",
        files: 1_000,
        random_size: 16 << 10,
    },
    Spec {
        name: "10k",
        files: 10_000,
        random_size: 16 << 10,
    },
    Spec {
        name: "100k",
        files: 100_000,
        random_size: 16 << 10,
    },
];
const LARGE: &[Spec] = &[
    Spec {
        name: "1M",
        files: 1_000_000,
        random_size: 4 << 10,
    },
    // 1 GiB and 4 GiB: 4 MiB files, one in ten random, the rest text.
    Spec {
        name: "1GiB",
        files: 256,
        random_size: 4 << 20,
    },
    Spec {
        name: "4GiB",
        files: 1_024,
        random_size: 4 << 20,
    },
];

/// A small xorshift generator: reproducible trees without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "layer", "snapshot", "export", "manifest", "digest", "content", "store", "image", "config",
    "history", "python", "debian", "package", "library", "#include", "return", "function", "0x1f",
    "=", "{", "}", "\n", "\n\t", "  ", "the", "of", "and",
];

fn generate(dir: &Path, spec: &Spec) -> Result<(), BoxError> {
    let tmp = dir.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ spec.files);
    let big = spec.random_size >= 1 << 20;
    let mut buf = Vec::with_capacity(spec.random_size);
    for i in 0..spec.files {
        // 100 files per directory, two levels.
        let d = tmp.join(format!("d{:03}/e{:03}", i / 10_000, (i / 100) % 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d)?;
        }
        buf.clear();
        if i % 10 == 0 {
            while buf.len() < spec.random_size {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            let target = if big {
                spec.random_size
            } else {
                1024 + (rng.next() % 3072) as usize
            };
            while buf.len() < target {
                buf.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
                buf.push(b' ');
            }
        }
        let mut f = fs::File::create(d.join(format!("f{i}.dat")))?;
        f.write_all(&buf)?;
    }
    fs::rename(&tmp, dir)?;
    Ok(())
}

/// What one synthetic child reports.
#[derive(Serialize, Deserialize)]
pub struct SyntheticTimes {
    pub files: u64,
    pub tar_bytes: u64,
    pub blob_bytes: u64,
    pub full: f64,
    pub overlay: f64,
    pub double_walk: f64,
}

/// The child side: full compare, then the one-file change both ways.
pub fn measure(tree: &Path, scratch: &Path, files: u64) -> Result<SyntheticTimes, BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _ = fs::remove_dir_all(scratch);
    let empty = scratch.join("empty");
    let upperdir = scratch.join("upper");
    let work = scratch.join("work");
    let merged = scratch.join("merged");
    for d in [&empty, &upperdir, &work, &merged] {
        fs::create_dir_all(d)?;
    }
    // The one-file change: a rewritten file in the first directory.
    let rel = "d000/e000";
    fs::create_dir_all(upperdir.join(rel))?;
    fs::write(upperdir.join(rel).join("f1.dat"), b"changed\n")?;
    let overlay = Mount {
        mount_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", tree.display()),
            format!("upperdir={}", upperdir.display()),
            format!("workdir={}", work.display()),
        ],
    };
    let result = rt.block_on(async {
        let store: Arc<dyn ContentStore> = Arc::new(LocalStore::open(scratch.join("store")).await?);
        let differ = WalkingDiffer::new(store);
        let opts = CompareOptions {
            compression: Compression::Gzip,
            ..CompareOptions::default()
        };
        let start = Instant::now();
        let blob = differ
            .compare(
                &[Mount::bind(&empty, true)],
                &[Mount::bind(tree, true)],
                &opts,
            )
            .await?;
        let full = start.elapsed().as_secs_f64();
        let lower = [Mount::bind(tree, true)];
        let start = Instant::now();
        let fast = differ
            .compare(&lower, std::slice::from_ref(&overlay), &opts)
            .await?;
        let overlay_s = start.elapsed().as_secs_f64();
        // The double walk over the merged tree, mounted here.
        let opt = format!(
            "lowerdir={},upperdir={},workdir={}",
            tree.display(),
            upperdir.display(),
            work.display()
        );
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opt])
            .arg(&merged)
            .status()?;
        if !st.success() {
            return Err(format!("mount -t overlay -o {opt} {merged:?} failed").into());
        }
        let start = Instant::now();
        let walked = differ
            .compare(&lower, &[Mount::bind(&merged, true)], &opts)
            .await;
        let double_walk = start.elapsed().as_secs_f64();
        let _ = Command::new("umount").arg(&merged).status();
        let walked = walked?;
        if walked.diff_id != fast.diff_id {
            return Err(format!(
                "overlay fast path and double walk disagree: {} vs {}",
                fast.diff_id, walked.diff_id
            )
            .into());
        }
        Ok::<_, BoxError>(SyntheticTimes {
            files,
            tar_bytes: blob.uncompressed_size,
            blob_bytes: blob.descriptor.size,
            full,
            overlay: overlay_s,
            double_walk,
        })
    });
    let _ = fs::remove_dir_all(scratch);
    result
}

/// Runs the synthetic workload and prints its table.
pub fn bench(cache: &Path, runs: usize, large: bool) -> Result<(), BoxError> {
    let dir = cache.join("synthetic");
    fs::create_dir_all(&dir)?;
    let me = std::env::current_exe()?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let specs: Vec<&Spec> = SMALL
        .iter()
        .chain(if large { LARGE } else { &[] })
        .collect();
    let mut rows: Vec<(String, SyntheticTimes, i64)> = Vec::new();
    for spec in specs {
        let tree: PathBuf = dir.join(spec.name);
        if !tree.exists() {
            eprintln!("generating {tree:?} ({} files)", spec.files);
            generate(&tree, spec)?;
        }
        let mut best: Option<(SyntheticTimes, i64)> = None;
        for _ in 0..runs {
            let (out, _, rss) = run_measured(
                Command::new(&me)
                    .arg("measure-synthetic")
                    .arg("--tree")
                    .arg(&tree)
                    .arg("--scratch")
                    .arg(cache.join("scratch-synthetic"))
                    .args(["--files", &spec.files.to_string()]),
            )?;
            let t: SyntheticTimes = serde_json::from_slice(&out)
                .map_err(|e| format!("measure-synthetic output: {e}"))?;
            let keep = match &best {
                None => true,
                Some((b, _)) => t.full < b.full,
            };
            if keep {
                best = Some((t, rss));
            } else if let Some((b, _)) = best.as_mut() {
                b.overlay = b.overlay.min(t.overlay);
                b.double_walk = b.double_walk.min(t.double_walk);
            }
        }
        let (t, rss) = best.ok_or("no runs")?;
        rows.push((spec.name.to_string(), t, rss));
    }
    println!(
        "\nsynthetic trees (9/10 text, 1/10 random), gzip default level, all cores, best of {runs}, load average at start {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "tree",
        "files",
        "tar MB",
        "wall s",
        "MB/s",
        "µs/file",
        "s/GiB",
        "RSS MiB",
        "overlay ms",
        "dblwalk ms"
    );
    let mut all_fast = true;
    let mut max_rss = 0.0f64;
    for (name, t, rss) in &rows {
        println!(
            "{:<6} {:>9} {:>10.1} {:>8.2} {:>8.1} {:>8.1} {:>8.2} {:>8.1} {:>12.1} {:>12.1}",
            name,
            t.files,
            t.tar_bytes as f64 / 1e6,
            t.full,
            t.tar_bytes as f64 / 1e6 / t.full,
            t.full * 1e6 / t.files as f64,
            t.full / (t.tar_bytes as f64 / (1u64 << 30) as f64),
            *rss as f64 / 1024.0,
            t.overlay * 1e3,
            t.double_walk * 1e3,
        );
        all_fast &= t.overlay < 0.020;
        max_rss = max_rss.max(*rss as f64 / 1024.0);
    }
    println!("\ntargets:");
    println!(
        "  {} overlay fast path after a one-file change < 20 ms on every tree",
        if all_fast { "✓" } else { "✗" }
    );
    println!(
        "  {} peak RSS < 100 MiB on every tree: {max_rss:.1} MiB",
        if max_rss < 100.0 { "✓" } else { "✗" }
    );
    Ok(())
}
