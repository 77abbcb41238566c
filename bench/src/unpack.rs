//! The `unpack` workload (issue 17): the Debian chain image (base → +python3 → slim,
//! three gzip layers) unpacked as a root filesystem by `strata unpack` from the store
//! and by `umoci unpack` (and `umoci raw unpack`, which skips umoci's mtree manifest
//! and runtime config) from an OCI layout of the same image, in the same run.
//!
//! The image is exported once per run by the strata CLI (untimed): `type=image` into a
//! fresh store, and `type=oci,tar=false` into a layout (its layers come from the
//! cache of the first export, so both hold the same manifest; the bench fails
//! otherwise). Every measured command is a child process (wall time, `wait4` peak
//! RSS), each repetition unpacks into a directory of its own (see the ext4 note in the
//! README), and `sync` runs before each timed command. After the clock: strata's tree
//! must equal umoci's (types, modes, owners, content, link targets, xattrs, hardlink
//! groups, mtimes with nanoseconds).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use strata_tests::tree::{assert_same_mtimes, assert_same_tree, Compare};

use crate::debian::{ensure_chain, strata_cli};
use crate::{run_measured, BoxError};

/// The image's name in the store and its tag in the layout.
const NAME: &str = "bench/debian:1";

/// One measured side: fastest wall seconds, and the peak RSS of that run.
#[derive(Clone, Copy)]
struct Best {
    seconds: f64,
    rss_kib: i64,
}

impl Best {
    fn keep(best: &mut Option<Best>, seconds: f64, rss_kib: i64) {
        if best.is_none_or(|b| seconds < b.seconds) {
            *best = Some(Best { seconds, rss_kib });
        }
    }
}

fn settle() -> Result<(), BoxError> {
    run_measured(&mut Command::new("sync"))?;
    Ok(())
}

/// The `org.opencontainers.image.ref.name` and manifest digest of the layout's only
/// entry, and the manifest's layer (blob bytes, count).
fn layout_entry(layout: &Path) -> Result<(String, String, u64, usize), BoxError> {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let entry = &index["manifests"][0];
    let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .ok_or("the layout's index.json entry has no ref.name")?
        .to_string();
    let digest = entry["digest"].as_str().ok_or("no digest")?.to_string();
    let hex = digest.strip_prefix("sha256:").ok_or("not sha256")?;
    let manifest: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex))?)?;
    let layers = manifest["layers"].as_array().ok_or("no layers")?;
    let bytes = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
    Ok((tag, digest, bytes, layers.len()))
}

/// Runs the `unpack` workload and prints its table.
pub fn bench(cache: &Path, runs: usize) -> Result<(), BoxError> {
    let chain = ensure_chain(cache)?;
    let trees = &chain.trees[..3];
    let cli = strata_cli()?;
    let scratch = cache.join("scratch-unpack");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    let store = scratch.join("store");
    let layout = scratch.join("layout");

    // The image, untimed: into the store, then as a layout (warm: same layers).
    let export = |output: String| -> Result<String, BoxError> {
        let mut cmd = Command::new(&cli);
        cmd.arg("--store").arg(&store).arg("export");
        for t in trees {
            cmd.arg("--layer").arg(t);
        }
        cmd.args(["--progress", "quiet", "-o", &output]);
        let (out, s, _) = run_measured(&mut cmd)?;
        eprintln!("exported ({output}) in {s:.1} s");
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    };
    let stored = export(format!("type=image,name={NAME}"))?;
    export(format!(
        "type=oci,tar=false,name={NAME},dest={}",
        layout.display()
    ))?;
    let (tag, manifest, blob_bytes, layers) = layout_entry(&layout)?;
    if manifest != stored {
        return Err(format!(
            "the store's image ({stored}) and the layout's ({manifest}) differ: not the same image"
        )
        .into());
    }
    let image = format!("{}:{tag}", layout.display());

    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut strata, mut umoci, mut raw) = (None, None, None);
    let mut trees_out: Option<(PathBuf, PathBuf)> = None;
    for run in 1..=runs {
        let target = scratch.join(format!("strata-{run}"));
        settle()?;
        let (_, s, rss) = run_measured(
            Command::new(&cli)
                .arg("--store")
                .arg(&store)
                .args(["unpack", NAME])
                .arg(&target),
        )?;
        Best::keep(&mut strata, s, rss);

        let bundle = scratch.join(format!("umoci-{run}"));
        settle()?;
        let (_, s, rss) = run_measured(
            Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle),
        )?;
        Best::keep(&mut umoci, s, rss);

        let rootfs = scratch.join(format!("umoci-raw-{run}"));
        settle()?;
        let (_, s, rss) = run_measured(
            Command::new("umoci")
                .args(["raw", "unpack", "--image", &image])
                .arg(&rootfs),
        )?;
        Best::keep(&mut raw, s, rss);
        trees_out.get_or_insert((target, bundle.join("rootfs")));
    }
    let (strata, umoci, raw) = match (strata, umoci, raw) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err("no runs".into()),
    };

    // After the clock: both trees are the image.
    let (ours, theirs) = trees_out.ok_or("no runs")?;
    let everything = Compare {
        mtimes: true,
        xattrs: true,
        hardlinks: true,
    };
    assert_same_tree(&theirs, &ours, everything);
    assert_same_mtimes(&theirs, &ours);
    let files = count_entries(&ours)?;
    let _ = fs::remove_dir_all(&scratch);

    println!(
        "\nunpack: the debian chain image ({layers} gzip layers, {:.1} MB of blobs, {files} entries unpacked), {cores} cores, best of {runs}, load average at start {}",
        blob_bytes as f64 / 1e6,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<52} {:>9} {:>8} {:>11}",
        "", "wall s", "RSS MiB", "umoci/this"
    );
    for (name, b) in [
        ("umoci unpack (rootfs + mtree + config.json)", umoci),
        ("umoci raw unpack (rootfs only)", raw),
        ("strata unpack (CLI, from the store)", strata),
    ] {
        println!(
            "{name:<52} {:>9.3} {:>8.1} {:>10.2}x",
            b.seconds,
            b.rss_kib as f64 / 1024.0,
            umoci.seconds / b.seconds
        );
    }
    let ratio = umoci.seconds / strata.seconds;
    println!("\ntargets:");
    println!(
        "  {} strata unpack ≥ 2× faster than umoci unpack: {ratio:.2}×",
        if ratio >= 2.0 { "✓" } else { "✗" }
    );
    println!(
        "  (info) against umoci raw unpack: {:.2}×",
        raw.seconds / strata.seconds
    );
    println!("  ✓ strata's tree equals umoci's (types, modes, owners, contents, links, xattrs, hardlinks, mtimes)");
    Ok(())
}

/// Entries under `root` (itself excluded).
fn count_entries(root: &Path) -> Result<usize, BoxError> {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            n += 1;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(n)
}
