//! The child side of the `base` workload: each measurement runs in its own process
//! (`strata-bench measure-base …`) and prints its result as JSON.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use strata_cache::{
    copy_ref, open_image, pull_image, read_image, BaseImage, ImageLocation, Materializer,
};
use strata_content::{ContentStore, LeaseGuard, LocalStore};
use strata_differ::{CompareOptions, CopyOptions, WalkingDiffer};
use strata_exporter::{
    merge_config, BaseImageRef, ExportContext, Exporter, ImageExporter, PlatformSource, Progress,
    PushOptions, RegistryExporter, Source, RESPONSE_CONFIG_DIGEST, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::Compression;
use strata_registry::RegistryOptions;
use strata_snapshotter::{Filter, NativeSnapshotter, Snapshotter, TempMount};

use crate::BoxError;

/// The hidden child commands of the `base` workload (`strata-bench measure-base …`).
#[derive(Subcommand)]
pub enum Measure {
    /// Cold pull + extract of `image` into fresh directories under `scratch`.
    Pull {
        #[arg(long)]
        image: String,
        #[arg(long)]
        insecure_registry: String,
        #[arg(long)]
        scratch: PathBuf,
    },
    /// The base pulled (untimed), a `COPY` layer on it, the timed `image` export, and
    /// with `--push` the push to `name`.
    CopyExport {
        #[arg(long)]
        image: String,
        #[arg(long)]
        insecure_registry: String,
        #[arg(long)]
        scratch: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        push: bool,
    },
}

/// Runs a child command and prints its JSON result.
pub fn run_measure(measure: Measure) -> Result<(), BoxError> {
    let json = match measure {
        Measure::Pull {
            image,
            insecure_registry,
            scratch,
        } => serde_json::to_string(&measure_pull(&image, &insecure_registry, &scratch)?)?,
        Measure::CopyExport {
            image,
            insecure_registry,
            scratch,
            name,
            push,
        } => serde_json::to_string(&measure_copy_export(
            &image,
            &insecure_registry,
            &scratch,
            &name,
            push,
        )?)?,
    };
    println!("{json}");
    Ok(())
}

/// What the pull child reports (seconds in-process).
#[derive(Serialize, Deserialize)]
pub(super) struct PullTimes {
    /// Manifest, config and layer blobs fetched and verified into the store.
    pub(super) pull: f64,
    /// pull + the top ref's chain extracted into the native snapshotter.
    pub(super) total: f64,
    pub(super) layers: usize,
    pub(super) blob_bytes: u64,
}

/// What the copy-export child reports.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct CopyExportResult {
    /// `copy_ref` of the small source directory (seconds).
    pub(super) copy: f64,
    /// The `image` export alone (seconds).
    pub(super) export: f64,
    pub(super) snapshots_before: usize,
    pub(super) snapshots_after: usize,
    pub(super) copy_layer: String,
    pub(super) base_layers: Vec<String>,
    pub(super) push: Option<PushResult>,
}

/// The push of the copy-export child.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct PushResult {
    pub(super) seconds: f64,
    pub(super) config: String,
    pub(super) manifest: String,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(super) fn reset_dir(dir: &Path) -> Result<(), BoxError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", dir.display()).into()),
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

/// Opens and reads the registry image `image` (plain HTTP to `insecure`).
async fn read_base(image: &str, insecure: &str) -> Result<BaseImage, BoxError> {
    let reference = ImageLocation::parse(image)?;
    let registry = RegistryOptions {
        insecure_hosts: vec![insecure.to_string()],
        ..RegistryOptions::default()
    };
    let root = open_image(&reference, None, None, &registry).await?;
    Ok(read_image(&root, None).await?)
}

/// A fresh local store and native snapshotter under `scratch`, and the materializer
/// over them (blobs applied by the walking differ).
async fn open_scratch(
    scratch: &Path,
) -> Result<(Arc<LocalStore>, Arc<NativeSnapshotter>, Materializer), BoxError> {
    reset_dir(scratch)?;
    let store = Arc::new(LocalStore::open(scratch.join("store")).await?);
    let snapshotter = Arc::new(NativeSnapshotter::open(scratch.join("snapshots"))?);
    let content: Arc<dyn ContentStore> = store.clone();
    let materializer = Materializer {
        store: content.clone(),
        applier: Arc::new(WalkingDiffer::new(content)),
        snapshotter: snapshotter.clone(),
    };
    Ok((store, snapshotter, materializer))
}

/// The child side of pull + extract: everything from the reference to the
/// extracted tree, timed in-process; the tree is checked afterwards (untimed).
fn measure_pull(image: &str, insecure: &str, scratch: &Path) -> Result<PullTimes, BoxError> {
    runtime()?.block_on(async {
        let (store, _, materializer) = open_scratch(scratch).await?;
        let start = Instant::now();
        let base = read_base(image, insecure).await?;
        let name = image.trim_start_matches("docker://");
        pull_image(&base, &materializer.store, Some((store.as_ref(), name))).await?;
        let pull = start.elapsed().as_secs_f64();
        let layers = base.layers.len();
        let blob_bytes = base.layers.iter().map(|l| l.descriptor.size).sum();
        let imported = base.into_refs(&materializer).await?;
        let top = imported.top.ok_or("the base image has no layers")?;
        top.materialize().await?;
        let total = start.elapsed().as_secs_f64();
        let tree = TempMount::mount(&top.mounts().await?)?;
        let found = tree.path().join("etc/debian_version").is_file();
        drop(tree);
        top.release().await?;
        if !found {
            return Err("the extracted base has no /etc/debian_version".into());
        }
        Ok(PullTimes {
            pull,
            total,
            layers,
            blob_bytes,
        })
    })
}

/// A small application tree for the `COPY` layer: a script, a config file and an
/// executable.
fn write_copy_source(dir: &Path) -> Result<(), BoxError> {
    fs::create_dir_all(dir.join("bin"))?;
    let script: String = (0..64)
        .map(|i| format!("print('strata bench line {i}')\n"))
        .collect();
    fs::write(dir.join("main.py"), script)?;
    fs::write(
        dir.join("settings.json"),
        b"{\"listen\": \"0.0.0.0:8080\"}\n",
    )?;
    let run = dir.join("bin/run");
    fs::write(&run, b"#!/bin/sh\nexec python3 /app/main.py \"$@\"\n")?;
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The child side of the warm export and the push.
fn measure_copy_export(
    image: &str,
    insecure: &str,
    scratch: &Path,
    name: &str,
    push: bool,
) -> Result<CopyExportResult, BoxError> {
    runtime()?.block_on(async {
        let (store, snapshotter, materializer) = open_scratch(scratch).await?;
        let src = scratch.join("copy-src");
        write_copy_source(&src)?;
        // The pulled base: its blobs in the store, its tree not extracted.
        let base = read_base(image, insecure).await?;
        pull_image(&base, &materializer.store, None).await?;
        let imported = base.into_refs(&materializer).await?;
        let base_layers = imported
            .layers
            .iter()
            .map(|l| l.descriptor.digest.to_string())
            .collect();
        let snapshots_before = snapshotter.walk(&Filter::All).await?.len();

        // What the copy layer writes is leased until the image record holds it.
        let lease = LeaseGuard::temporary(store.clone(), Duration::from_secs(600)).await?;
        let leased = Materializer {
            store: materializer.store.with_lease(lease.id()),
            ..materializer.clone()
        };
        let start = Instant::now();
        let top = copy_ref(
            imported.top.clone(),
            &src,
            &CopyOptions {
                dest: "/app".into(),
                owner: None,
            },
            "COPY app /app",
            &CompareOptions {
                compression: Compression::Gzip,
                ..CompareOptions::default()
            },
            &leased,
        )
        .await?;
        let copy = start.elapsed().as_secs_f64();
        let copy_layer = top
            .blob_layer()
            .map(|l| l.descriptor.digest.to_string())
            .ok_or("the copy layer is not blob-backed")?;
        let source = Source {
            images: vec![PlatformSource {
                platform: None,
                top: Some(top),
                config: Some(merge_config(&imported.config, None, "default")?),
                base: Some(BaseImageRef {
                    name: imported.name.clone(),
                    digest: imported.manifest.digest.clone(),
                }),
                ..PlatformSource::default()
            }],
        };
        let ctx = ExportContext::new(
            store.clone(),
            store.clone(),
            store.clone(),
            Arc::new(WalkingDiffer::new(store.clone())),
        );
        let options: BTreeMap<String, String> = [("name".to_string(), name.to_string())].into();

        let start = Instant::now();
        ImageExporter::new(ctx.clone())
            .resolve(options.clone())
            .await?
            .export(source.clone(), Progress::discard())
            .await?;
        let export = start.elapsed().as_secs_f64();
        let snapshots_after = snapshotter.walk(&Filter::All).await?.len();

        let push = match push {
            false => None,
            true => {
                let mut push_options = PushOptions::default();
                push_options.registry.insecure_hosts = vec![insecure.to_string()];
                let start = Instant::now();
                let response = RegistryExporter::new(ctx)
                    .with_push_options(push_options)
                    .resolve(options)
                    .await?
                    .export(source, Progress::discard())
                    .await?;
                let field = |key: &str| response.get(key).cloned().unwrap_or_default();
                Some(PushResult {
                    seconds: start.elapsed().as_secs_f64(),
                    config: field(RESPONSE_CONFIG_DIGEST),
                    manifest: field(RESPONSE_IMAGE_DIGEST),
                })
            }
        };
        lease.release().await?;
        Ok(CopyExportResult {
            copy,
            export,
            snapshots_before,
            snapshots_after,
            copy_layer,
            base_layers,
            push,
        })
    })
}
