//! The `base` workload: a Debian-sized base image on a loopback registry (issue 13).
//!
//! The base (`<cache>/base-image/layout`, built once by strata itself: the minbase
//! rootfs as one gzip layer, `org.opencontainers.image.ref.name` `1`) is pushed by
//! skopeo to a `docker-registry` the bench starts on 127.0.0.1 (strata-tests'
//! harness: temp dir, free port, stopped by PID, access log read back). Then, in the
//! same run:
//!
//! 1. **pull + extract**, cold each repetition (fresh store and snapshot directories):
//!    strata in a child process (`open_image`, `read_image`, `pull_image` into a
//!    `LocalStore`, then the top ref materialized by the walking differ into a
//!    `NativeSnapshotter`) against `skopeo copy docker://… oci:DIR:1` + `umoci unpack`;
//! 2. **warm export**: the base pulled into a fresh store (not extracted, not timed),
//!    one small `COPY` layer (`copy_ref`), then an `image` export into the same store,
//!    timed alone; the native snapshotter must hold no snapshot afterwards;
//! 3. **push** of that image to `127.0.0.1:PORT/app:1` (`RegistryExporter`): the
//!    blob uploads are counted in the registry's access log; only the copy layer and
//!    the config may be uploaded, the base layer must be mounted from `base`.

mod measure;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use strata_content::LocalStore;
use strata_differ::WalkingDiffer;
use strata_exporter::{ExportContext, Exporter, OciExporter, Progress, Source};
use strata_oci::Platform;
use strata_snapshotter::DirectorySnapshotter;
use strata_tests::servers::Registry;

pub use measure::{run_measure, Measure};

use crate::debian::{read_chain, register_chain};
use crate::{ensure_rootfs, run_measured, BoxError};
use measure::{reset_dir, runtime, CopyExportResult, PullTimes};

/// The base's repository and tag in the loopback registry.
const BASE_REPOSITORY: &str = "base";
/// The tag of the base (also its `ref.name` in the cached layout).
const BASE_TAG: &str = "1";
/// The repository the image built on the base is pushed to.
const APP_REPOSITORY: &str = "app";

/// The base's config: the host's platform, a `PATH` and `bash` as the command.
fn base_config() -> Result<Vec<u8>, BoxError> {
    let platform = Platform::host();
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        },
    });
    if let Some(variant) = platform.variant {
        config["variant"] = variant.into();
    }
    Ok(serde_json::to_vec(&config)?)
}

/// The base image as an OCI layout (one gzip layer of `rootfs`), exported by strata
/// once and cached under `<cache>/base-image/layout`.
fn ensure_base_layout(cache: &Path, rootfs: &Path) -> Result<PathBuf, BoxError> {
    let dir = cache.join("base-image");
    let layout = dir.join("layout");
    if layout.join("index.json").is_file() {
        return Ok(layout);
    }
    let work = dir.join("build.tmp");
    reset_dir(&work)?;
    eprintln!("building the base image: {rootfs:?} as one gzip layer, by strata, into {layout:?}");
    let out = work.join("layout");
    runtime()?.block_on(async {
        let store = Arc::new(LocalStore::open(work.join("store")).await?);
        let snapshotter = DirectorySnapshotter::open(work.join("snapshots"))?;
        let chain = read_chain(&[rootfs.to_path_buf()]).await?;
        let top = register_chain(&snapshotter, &chain).await?;
        let ctx = ExportContext::new(
            store.clone(),
            store.clone(),
            store.clone(),
            Arc::new(WalkingDiffer::new(store.clone())),
        );
        let options: BTreeMap<String, String> = [
            ("dest", out.display().to_string()),
            ("tar", "false".into()),
            ("compression", "gzip".into()),
            ("name", format!("{BASE_REPOSITORY}:{BASE_TAG}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        OciExporter::new(ctx)
            .resolve(options)
            .await?
            .export(
                Source::single(Some(top), Some(base_config()?)),
                Progress::discard(),
            )
            .await?;
        Ok::<_, BoxError>(())
    })?;
    fs::rename(&out, &layout)?;
    fs::remove_dir_all(&work)?;
    Ok(layout)
}

/// The digests of the blob uploads into `repository` the registry completed
/// (`PUT …/blobs/uploads/…?digest=…` answered 201), in order.
fn completed_uploads(registry: &Registry, repository: &str) -> Vec<String> {
    registry
        .blob_uploads(repository)
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == 201)
        .filter_map(|r| {
            let query = r.uri.split_once('?')?.1;
            let digest = query.split('&').find_map(|kv| kv.strip_prefix("digest="))?;
            Some(digest.replace("%3A", ":").replace("%3a", ":"))
        })
        .collect()
}

/// Writes back every dirty page (`sync`, untimed) so that one side's writes are not
/// flushed while the other side is timed. Nothing is dropped from the page cache.
fn settle() -> Result<(), BoxError> {
    run_measured(&mut Command::new("sync"))?;
    Ok(())
}

/// `skopeo copy` + `umoci unpack` of `image` into `dir` (empty); returns (copy
/// seconds, unpack seconds, peak RSS KiB).
fn peer_pull(image: &str, dir: &Path) -> Result<(f64, f64, i64), BoxError> {
    let layout = format!("{}:{BASE_TAG}", dir.join("layout").display());
    let bundle = dir.join("bundle");
    let (_, copy, rss_copy) = run_measured(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--insecure-policy",
                "--src-tls-verify=false",
            ])
            .arg(image)
            .arg(format!("oci:{layout}")),
    )?;
    let (_, unpack, rss_unpack) = run_measured(
        Command::new("umoci")
            .args(["unpack", "--image", &layout])
            .arg(&bundle),
    )?;
    if !bundle.join("rootfs/etc/debian_version").is_file() {
        return Err(format!(
            "umoci unpack left no {}/rootfs/etc/debian_version",
            bundle.display()
        )
        .into());
    }
    Ok((copy, unpack, rss_copy.max(rss_unpack)))
}

/// Runs the whole `base` workload and prints its table.
pub fn bench(cache: &Path, runs: usize) -> Result<(), BoxError> {
    let rootfs = ensure_rootfs(cache)?;
    let layout = ensure_base_layout(cache, &rootfs)?;
    let scratch = cache.join("scratch-base");
    reset_dir(&scratch)?;
    let registry = Registry::start();
    let host = registry.host();
    let image = format!("docker://{host}/{BASE_REPOSITORY}:{BASE_TAG}");
    run_measured(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{BASE_TAG}", layout.display()))
            .arg(&image),
    )?;
    let me = std::env::current_exe()?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // 1. Cold pull + extract, strata and the peers in turn. Every repetition writes
    // into directories of its own, all removed at the end: ext4 skips inodes deleted
    // within the last minutes when it allocates new ones (`recently_deleted`), so a
    // tree created right after another was deleted costs several times more system
    // time, whoever creates it.
    let mut strata: Option<(f64, i64, PullTimes)> = None;
    let mut peer: Option<(f64, f64, i64)> = None;
    for run in 1..=runs {
        settle()?;
        let (out, seconds, rss) = run_measured(
            Command::new(&me)
                .args(["measure-base", "pull", "--image", &image])
                .args(["--insecure-registry", &host])
                .arg("--scratch")
                .arg(scratch.join(format!("strata-pull-{run}"))),
        )?;
        let times: PullTimes =
            serde_json::from_slice(&out).map_err(|e| format!("measure-base pull output: {e}"))?;
        if strata.as_ref().is_none_or(|(s, _, _)| seconds < *s) {
            strata = Some((seconds, rss, times));
        }
        let dir = scratch.join(format!("peer-pull-{run}"));
        fs::create_dir_all(&dir)?;
        settle()?;
        let (copy, unpack, rss) = peer_pull(&image, &dir)?;
        if peer.as_ref().is_none_or(|(c, u, _)| copy + unpack < c + u) {
            peer = Some((copy, unpack, rss));
        }
    }
    let (strata_s, strata_rss, times) = strata.ok_or("no runs")?;
    let (copy_s, unpack_s, peer_rss) = peer.ok_or("no runs")?;
    let peer_s = copy_s + unpack_s;

    // 2. and 3. Warm export on the pulled base; the push in the first run only.
    let app = format!("{host}/{APP_REPOSITORY}:1");
    let mut export: Option<CopyExportResult> = None;
    let mut pushed: Option<CopyExportResult> = None;
    for run in 1..=runs {
        let mut cmd = Command::new(&me);
        cmd.args(["measure-base", "copy-export", "--image", &image])
            .args(["--insecure-registry", &host, "--name", &app])
            .arg("--scratch")
            .arg(scratch.join(format!("copy-export-{run}")));
        if run == 1 {
            cmd.arg("--push");
        }
        settle()?;
        let (out, _, _) = run_measured(&mut cmd)?;
        let result: CopyExportResult = serde_json::from_slice(&out)
            .map_err(|e| format!("measure-base copy-export output: {e}"))?;
        if result.snapshots_after != result.snapshots_before {
            return Err(format!(
                "the export extracted the base: {} snapshots before, {} after",
                result.snapshots_before, result.snapshots_after
            )
            .into());
        }
        if export.as_ref().is_none_or(|e| result.export < e.export) {
            export = Some(result.clone());
        }
        if result.push.is_some() {
            pushed = Some(result);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    let export = export.ok_or("no runs")?;
    let pushed = pushed.ok_or("no push")?;
    let push = pushed.push.as_ref().ok_or("no push")?;
    let uploads = completed_uploads(&registry, APP_REPOSITORY);
    let mounts = registry.mounts(APP_REPOSITORY).len();
    let upload_requests = registry.blob_uploads(APP_REPOSITORY).len();
    drop(registry);

    // The table.
    println!(
        "\nbase image: {} as one gzip layer ({:.1} MB blob, {} layer(s)) on a loopback docker-registry, {cores} cores, best of {runs}, load average at start {}",
        rootfs.display(),
        times.blob_bytes as f64 / 1e6,
        times.layers,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<58} {:>9} {:>8} {:>11}",
        "", "wall s", "RSS MiB", "peer/this"
    );
    let row = |name: &str, s: f64, rss: Option<i64>, ratio: bool| {
        println!(
            "{name:<58} {s:>9.3} {:>8} {:>11}",
            rss.map_or("-".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            if ratio {
                format!("{:.2}x", peer_s / s)
            } else {
                "-".into()
            }
        );
    };
    row(
        "pull + extract: skopeo copy + umoci unpack",
        peer_s,
        Some(peer_rss),
        true,
    );
    row("  skopeo copy docker:// → oci:", copy_s, None, false);
    row("  umoci unpack", unpack_s, None, false);
    row(
        "pull + extract: strata lib (child process)",
        strata_s,
        Some(strata_rss),
        true,
    );
    row(
        "  in-process: pull (fetch + verify into the store)",
        times.pull,
        None,
        false,
    );
    row(
        "  in-process: pull + extract (native snapshotter)",
        times.total,
        None,
        false,
    );
    row(
        "warm: COPY layer written (copy_ref, in-process)",
        export.copy,
        None,
        false,
    );
    row(
        "warm: export type=image on the pulled base",
        export.export,
        None,
        false,
    );
    row(
        "push to app:1 (RegistryExporter)",
        push.seconds,
        None,
        false,
    );

    let new_blobs: BTreeSet<String> = [pushed.copy_layer.clone(), push.config.clone()].into();
    let uploaded: BTreeSet<String> = uploads.iter().cloned().collect();
    let base_uploaded = pushed
        .base_layers
        .iter()
        .filter(|d| uploaded.contains(*d))
        .count();
    println!(
        "push: {} blob uploads completed ({} upload requests), {} cross-repository mounts; new blobs: copy layer {}, config {}",
        uploads.len(),
        upload_requests,
        mounts,
        pushed.copy_layer,
        push.config
    );
    println!("pushed manifest {}", push.manifest);
    let ratio = peer_s / strata_s;
    let checks = [
        (
            format!("pull + extract ≥ 2× faster than skopeo copy + umoci unpack: {ratio:.2}×"),
            ratio >= 2.0,
        ),
        (
            format!("warm export (type=image, pulled base + 1 COPY layer) < 100 ms: {:.1} ms", export.export * 1e3),
            export.export < 0.100,
        ),
        (
            format!(
                "the export extracted nothing: {} snapshots before, {} after",
                export.snapshots_before, export.snapshots_after
            ),
            export.snapshots_after == export.snapshots_before,
        ),
        (
            format!(
                "push uploads only the new blobs: {} uploaded (expected {}: copy layer + config), {} base layer(s) uploaded, {} mounted",
                uploaded.len(),
                new_blobs.len(),
                base_uploaded,
                mounts
            ),
            uploaded == new_blobs && uploads.len() == new_blobs.len(),
        ),
    ];
    println!("\ntargets:");
    for (text, ok) in checks {
        println!("  {} {text}", if ok { "✓" } else { "✗" });
    }
    Ok(())
}
