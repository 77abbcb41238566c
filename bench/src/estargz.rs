//! The `estargz` workload (issue 16): the Debian base rootfs exported by the strata CLI
//! with `compression=estargz` (walk, tar, eStargz, hash, store: the whole export)
//! against stargz-snapshotter's `estargz.Build` (BuildKit's writer, the
//! `../shared/peers/estargz` peer) converting the same layer's tar, which strata
//! exports once, untimed, with `compression=uncompressed`. Both are child processes
//! (wall time, `wait4` peak RSS and CPU time), run alternately so that both meet the
//! same load; the fastest of `runs` is reported, with both blob sizes. After the
//! clock, strata's blob is verified by the peer (TOC against the layer's `toc.digest`
//! annotation, every chunk): a blob that does not verify fails the bench. Then the
//! whole Debian chain (base → +python3 → slim) is exported as eStargz and every layer
//! verified the same way, its decompressed digest checked against the config's diffID.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use strata_oci::Digester;

use crate::debian::{cli_export, ensure_chain, strata_cli};
use crate::{build_shared_peer, ensure_rootfs, run_measured, run_measured_cpu, BoxError};

/// Builds the peer with `../shared/peers/estargz/build.sh`; returns its path.
fn ensure_peer(cache: &Path) -> Result<PathBuf, BoxError> {
    build_shared_peer("estargz", "ESTARGZ_PEER_DIR", &cache.join("peers/estargz"))
}

/// The only layer of the layout's only image: its blob path and descriptor.
pub(crate) fn only_layer(layout: &Path) -> Result<(PathBuf, Value), BoxError> {
    let blob = |d: &str| -> Result<PathBuf, BoxError> {
        let hex = d.strip_prefix("sha256:").ok_or("not a sha256 digest")?;
        Ok(layout.join("blobs/sha256").join(hex))
    };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("no manifest in index.json")?;
    let manifest: Value = serde_json::from_slice(&fs::read(blob(manifest)?)?)?;
    let layer = manifest["layers"][0].clone();
    let digest = layer["digest"].as_str().ok_or("no layer")?;
    Ok((blob(digest)?, layer))
}

/// A run's wall seconds, peak RSS (KiB), CPU seconds and blob bytes.
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub(crate) seconds: f64,
    pub(crate) rss: i64,
    pub(crate) cpu: f64,
    pub(crate) size: u64,
}

/// Prints `runs` as a table: wall and CPU seconds, peak RSS, blob size.
pub(crate) fn print_runs(runs: &[(&str, Run)]) {
    println!("| | wall s | CPU s | peak RSS MiB | blob MB |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in runs {
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.2} |",
            run.seconds,
            run.cpu,
            run.rss as f64 / 1024.0,
            run.size as f64 / 1e6
        );
    }
}

/// Keeps the faster of `best` and `run`.
pub(crate) fn keep_fastest(best: &mut Option<Run>, run: Run) {
    if best.is_none_or(|b| run.seconds < b.seconds) {
        *best = Some(run);
    }
}

/// One `strata export` of `rootfs` into a fresh store and layout under `scratch`.
pub(crate) fn export(
    strata: &Path,
    rootfs: &Path,
    scratch: &Path,
    compression: &str,
) -> Result<(PathBuf, Value, Run), BoxError> {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch)?;
    let layout = scratch.join("layout");
    let measured = run_measured_cpu(
        Command::new(strata)
            .arg("--store")
            .arg(scratch.join("store"))
            .args(["export", "--progress", "quiet", "--layer"])
            .arg(rootfs)
            .arg("-o")
            .arg(format!(
                "type=oci,tar=false,dest={},compression={compression}",
                layout.display()
            )),
    )?;
    let (blob, desc) = only_layer(&layout)?;
    let run = Run {
        seconds: measured.seconds,
        rss: measured.peak_rss_kib,
        cpu: measured.cpu_seconds,
        size: fs::metadata(&blob)?.len(),
    };
    Ok((blob, desc, run))
}

/// Runs the workload and prints its table. strata's and the peer's runs alternate, so
/// that both meet the same load when other work shares the machine.
pub fn bench(cache: &Path, runs: usize) -> Result<(), BoxError> {
    let rootfs = ensure_rootfs(cache)?;
    let strata = strata_cli()?;
    let peer = ensure_peer(cache)?;
    let scratch = cache.join("scratch-estargz");
    let (tar, _, _) = export(&strata, &rootfs, &scratch.join("tar"), "uncompressed")?;
    let tar_bytes = fs::metadata(&tar)?.len();

    let mut ours: Option<Run> = None;
    let mut theirs: Option<Run> = None;
    let out_blob = scratch.join("peer.esgz");
    for _ in 0..runs {
        let (blob, desc, run) = export(&strata, &rootfs, &scratch.join("strata"), "estargz")?;
        let toc = desc["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .ok_or("strata's layer has no toc.digest annotation")?;
        let (out, _, _) = run_measured(Command::new(&peer).arg(&blob).arg(toc))?;
        if !String::from_utf8_lossy(&out).starts_with("ok ") {
            return Err("strata's blob did not verify".into());
        }
        keep_fastest(&mut ours, run);

        let measured =
            run_measured_cpu(Command::new(&peer).arg("-build").arg(&tar).arg(&out_blob))?;
        let run = Run {
            seconds: measured.seconds,
            rss: measured.peak_rss_kib,
            cpu: measured.cpu_seconds,
            size: fs::metadata(&out_blob)?.len(),
        };
        keep_fastest(&mut theirs, run);
    }
    let verified = verify_chain(cache, &strata, &peer, &scratch.join("chain"))?;
    let _ = fs::remove_dir_all(&scratch);
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return Err("no runs".into());
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\neStargz: the Debian base layer ({:.1} MB of tar), {cores} cores, best of {runs} (runs alternate)",
        tar_bytes as f64 / 1e6
    );
    print_runs(&[
        ("strata export, compression=estargz", ours),
        ("estargz.Build of the same tar", theirs),
    ]);
    println!(
        "strata is {:.1}× faster ({:.1}× less CPU); its blob is {:+.2} % of estargz.Build's",
        theirs.seconds / ours.seconds,
        theirs.cpu / ours.cpu,
        (ours.size as f64 / theirs.size as f64 - 1.0) * 100.0
    );
    println!(
        "the Debian chain (base → +python3 → slim) as eStargz: all {verified} layers verified by the estargz reader (TOC digest from the annotation, every chunk), diffIDs = the decompressed blobs"
    );
    Ok(())
}

/// Exports the Debian chain (base → +python3 → slim) with `compression=estargz` and
/// checks every layer: the estargz library's reader (`peer BLOB TOC`) verifies it
/// against the TOC digest its annotation gives, and the decompressed blob's digest is
/// the config's diffID. Returns how many layers were checked.
fn verify_chain(
    cache: &Path,
    strata: &Path,
    peer: &Path,
    scratch: &Path,
) -> Result<usize, BoxError> {
    let chain = ensure_chain(cache)?;
    let _ = fs::remove_dir_all(scratch);
    let layout = scratch.join("layout");
    cli_export(
        strata,
        &scratch.join("store"),
        &chain.trees[..3],
        &layout,
        "estargz",
        &[],
    )?;
    let blob = |d: &str| -> Result<PathBuf, BoxError> {
        let hex = d.strip_prefix("sha256:").ok_or("not a sha256 digest")?;
        Ok(layout.join("blobs/sha256").join(hex))
    };
    let json =
        |d: &str| -> Result<Value, BoxError> { Ok(serde_json::from_slice(&fs::read(blob(d)?)?)?) };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let manifest = json(
        index["manifests"][0]["digest"]
            .as_str()
            .ok_or("no manifest")?,
    )?;
    let config = json(manifest["config"]["digest"].as_str().ok_or("no config")?)?;
    let layers = manifest["layers"].as_array().ok_or("no layers")?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("no diff_ids")?;
    if layers.len() != 3 || diff_ids.len() != 3 {
        return Err(format!("expected 3 layers: {manifest}").into());
    }
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let digest = layer["digest"].as_str().ok_or("no layer digest")?;
        let toc = layer["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .ok_or_else(|| format!("layer {digest} has no toc.digest annotation"))?;
        let (out, _, _) = run_measured(Command::new(peer).arg(blob(digest)?).arg(toc))?;
        if !String::from_utf8_lossy(&out).starts_with("ok ") {
            return Err(format!(
                "layer {digest} did not verify: {}",
                String::from_utf8_lossy(&out)
            )
            .into());
        }
        let mut gunzip = Command::new("pigz")
            .arg("-dc")
            .arg(blob(digest)?)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut tar = gunzip.stdout.take().ok_or("pigz has no stdout")?;
        let mut digester = Digester::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = tar.read(&mut buf)?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
        }
        if !gunzip.wait()?.success() {
            return Err(format!("pigz -dc of layer {digest} failed").into());
        }
        let actual = digester.finish().to_string();
        if diff_id.as_str() != Some(actual.as_str()) {
            return Err(format!(
                "layer {digest} decompresses to {actual}, its diffID is {diff_id}"
            )
            .into());
        }
    }
    let _ = fs::remove_dir_all(scratch);
    Ok(layers.len())
}
