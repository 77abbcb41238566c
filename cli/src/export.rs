//! `strata export`: every input is checked first (output options, layer directories,
//! configs, spec, destination), then the store is opened (the local store, or
//! containerd), the layer directories are registered as snapshot chains (or a chain
//! committed in containerd is loaded by key) and the exporter runs. A failed export
//! leaves no blobs behind: its lease goes and a garbage collection sweeps what it wrote.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use strata_content::MemoryStore;
use strata_differ::WalkingDiffer;
use strata_exporter::{
    DockerExporter, ExportContext, Exporter, ExporterInstance, ImageExporter, OciExporter,
    Progress, RegistryExporter, Source, WriterFactory, RESPONSE_DESCRIPTOR, RESPONSE_IMAGE_DIGEST,
};
use strata_snapshotter::{ContainerdSnapshotter, DirectorySnapshotter, ImmutableRef, Snapshotter};

use crate::chain;
use crate::error::CliError;
use crate::output::{parse_output, OutputKind, OutputSpec};
use crate::plan::{self, Plan};
use crate::render::{render, ProgressMode};
use crate::store::{self, Store, StoreLocation};

/// The arguments of `strata export`, already parsed by clap.
pub struct ExportArgs {
    /// `--layer` directories.
    pub layers: Vec<PathBuf>,
    /// `--description` texts.
    pub descriptions: Vec<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--spec`.
    pub spec: Option<PathBuf>,
    /// `--output`.
    pub output: String,
    /// `--jobs`.
    pub jobs: usize,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
    /// `--snapshot`: the key of a committed containerd snapshot to export instead of
    /// `--layer` directories.
    pub snapshot: Option<String>,
    /// `--snapshotter`: containerd's snapshotter holding `snapshot`.
    pub snapshotter: String,
}

/// Where the snapshot metadata of the directory snapshotter lives in a store.
pub fn snapshots_dir(store: &Path) -> PathBuf {
    store.join(".strata").join("snapshots")
}

fn exporter(kind: OutputKind, ctx: ExportContext, stdout: bool) -> Box<dyn Exporter> {
    let sink: WriterFactory = Arc::new(|| Ok(Box::new(std::io::stdout()) as _));
    match kind {
        OutputKind::Oci if stdout => Box::new(OciExporter::new(ctx).with_writer(sink)),
        OutputKind::Oci => Box::new(OciExporter::new(ctx)),
        OutputKind::Docker if stdout => Box::new(DockerExporter::new(ctx).with_writer(sink)),
        OutputKind::Docker => Box::new(DockerExporter::new(ctx)),
        OutputKind::Image => Box::new(ImageExporter::new(ctx)),
        OutputKind::Registry => Box::new(RegistryExporter::new(ctx)),
    }
}

/// The exporter options to use: the output's, plus `SOURCE_DATE_EPOCH` from the
/// environment unless the output sets `source-date-epoch` (as BuildKit does); and
/// whether the tar goes to stdout (`dest=-`).
fn options(spec: &OutputSpec) -> Result<(BTreeMap<String, String>, bool), CliError> {
    let mut opts = spec.options.clone();
    if !opts.contains_key("source-date-epoch") {
        if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
            if !epoch.is_empty() {
                match epoch.parse::<i64>() {
                    Ok(n) if n >= 0 => {
                        opts.insert("source-date-epoch".into(), epoch);
                    }
                    _ => {
                        return Err(CliError::usage(format!(
                            "SOURCE_DATE_EPOCH={epoch:?} is not a number of seconds since 1970"
                        )))
                    }
                }
            }
        }
    }
    let tar = !matches!(
        opts.get("tar").map(String::as_str),
        Some("false") | Some("0")
    );
    // As buildx: a tar output without dest goes to stdout, unless that is a terminal.
    let layout = matches!(spec.kind, OutputKind::Oci | OutputKind::Docker);
    if layout && tar && !opts.contains_key("dest") {
        if std::io::stdout().is_terminal() {
            return Err(CliError::usage(format!(
                "invalid --output: type={} needs dest=PATH (refusing to write a tar to the terminal; dest=- forces stdout)",
                spec.kind
            )));
        }
        opts.insert("dest".into(), "-".into());
    }
    let stdout = opts.get("dest").map(String::as_str) == Some("-");
    if stdout {
        if !layout || !tar {
            return Err(CliError::usage(
                "invalid --output: dest=- (stdout) needs a tar output (type=oci or docker)",
            ));
        }
        opts.remove("dest");
    }
    Ok((opts, stdout))
}

/// Checks the destination before any work: a tar's directory must exist, a layout
/// directory must not be a file.
fn check_dest(spec: &OutputSpec, opts: &BTreeMap<String, String>) -> Result<(), CliError> {
    let Some(dest) = opts.get("dest") else {
        return Ok(());
    };
    let dest = Path::new(dest);
    let tar = !matches!(
        opts.get("tar").map(String::as_str),
        Some("false") | Some("0")
    );
    if tar {
        if dest.is_dir() {
            return Err(CliError::failed(format!(
                "output dest {} is a directory; a {} tar needs a file path (or tar=false)",
                dest.display(),
                spec.kind
            )));
        }
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(CliError::failed(format!(
                "output dest {}: directory {} does not exist",
                dest.display(),
                parent.display()
            )));
        }
    } else if dest.exists() && !dest.is_dir() {
        return Err(CliError::failed(format!(
            "output dest {} is a file; tar=false writes a directory",
            dest.display()
        )));
    }
    Ok(())
}

/// Runs `strata export` into the store at `location`; layer directories are
/// registered under `store_dir` (whichever store holds the blobs).
pub async fn run(
    args: ExportArgs,
    location: &StoreLocation,
    store_dir: &Path,
) -> Result<(), CliError> {
    // 1. Everything the user gave, checked before the store is touched.
    if args.snapshot.is_some() && !matches!(location, StoreLocation::Containerd { .. }) {
        return Err(CliError::usage(
            "--snapshot names a containerd snapshot: it needs --containerd SOCKET",
        ));
    }
    let spec = parse_output(&args.output)
        .map_err(|e| CliError::usage(format!("invalid --output {:?}: {e}", args.output)))?;
    let (opts, to_stdout) = options(&spec)?;
    let memory = Arc::new(MemoryStore::new());
    let dry = ExportContext::new(
        memory.clone(),
        memory.clone(),
        memory.clone(),
        Arc::new(WalkingDiffer::new(memory.clone())),
    );
    exporter(spec.kind, dry, to_stdout)
        .resolve(opts.clone())
        .await
        .map_err(|e| CliError::usage(format!("invalid --output {:?}: {e}", args.output)))?;
    if matches!(spec.kind, OutputKind::Image | OutputKind::Registry) && !opts.contains_key("name") {
        return Err(CliError::usage(format!(
            "invalid --output {:?}: type={} needs name=REF",
            args.output, spec.kind
        )));
    }
    check_dest(&spec, &opts)?;
    let plan: Plan = match &args.spec {
        Some(file) => plan::from_spec(file)?,
        None => plan::from_flags(
            &args.layers,
            &args.descriptions,
            args.config.as_deref(),
            args.platform.as_deref(),
        )?,
    };
    if spec.kind == OutputKind::Docker && plan.platforms.len() > 1 {
        return Err(CliError::failed(format!(
            "type=docker holds one image but the spec has {} platforms; use type=oci",
            plan.platforms.len()
        )));
    }
    let mut fingerprints: Vec<Vec<String>> = Vec::new();
    for p in &plan.platforms {
        let tasks: Vec<_> = p
            .layers
            .iter()
            .map(|l| {
                let (dir, shown) = (l.dir.clone(), l.shown.clone());
                tokio::task::spawn_blocking(move || chain::fingerprint(&dir, &shown))
            })
            .collect();
        let mut fps = Vec::new();
        for t in tasks {
            fps.push(
                t.await
                    .map_err(|e| CliError::context("reading layers", e))??,
            );
        }
        fingerprints.push(fps);
    }

    // 2. The store and the snapshot chains.
    let store = store::open(location, true).await?;
    let mut layer_names = BTreeMap::new();
    let mut tops: Vec<Option<ImmutableRef>> = Vec::new();
    if let Some(key) = &args.snapshot {
        let top = containerd_chain(&store, &args.snapshotter, key, &mut layer_names).await?;
        tops.push(Some(top));
    } else {
        directory_chains(store_dir, &plan, &fingerprints, &mut layer_names, &mut tops).await?;
    }

    let source = if plan.multi {
        let mut entries = Vec::new();
        for (p, top) in plan.platforms.iter().zip(&tops) {
            let (Some(platform), Some(top)) = (p.platform.clone(), top.clone()) else {
                return Err(CliError::failed(format!(
                    "platform {} has no layers; each platform of a spec needs at least one",
                    p.platform
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                )));
            };
            entries.push((platform, top, p.config.clone()));
        }
        Source::multi_platform(entries)
    } else {
        Source::single(tops[0].clone(), plan.platforms[0].config.clone())
    };

    // 3. The export, with progress rendered as it happens.
    let ctx = ExportContext::new(
        store.content.clone(),
        store.leases.clone(),
        store.images.clone(),
        Arc::new(WalkingDiffer::new(store.content.clone())),
    )
    .with_jobs(args.jobs);
    let instance: Box<dyn ExporterInstance> = exporter(spec.kind, ctx, to_stdout)
        .resolve(opts)
        .await
        .map_err(|e| CliError::usage(format!("invalid --output {:?}: {e}", args.output)))?;
    let (progress, events) = Progress::channel();
    let renderer = tokio::spawn(render(args.progress, events, layer_names));
    let result = instance.export(source, progress).await;
    drop(instance);
    let _ = renderer.await;
    for top in tops.into_iter().flatten() {
        if let Err(e) = top.release().await {
            tracing::debug!(error = %e, "releasing snapshot view");
        }
    }
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            collect_failed(&store).await;
            return Err(CliError::context(
                format!("export to {} failed", spec.kind),
                e,
            ));
        }
    };

    // 4. Results.
    if let Some(file) = &args.metadata_file {
        write_metadata(file, &response)?;
    }
    if !to_stdout {
        if let Some(d) = response.get(RESPONSE_IMAGE_DIGEST) {
            println!("{d}");
        }
    }
    Ok(())
}

/// Registers (or finds) each platform's `--layer` directories as a snapshot chain in
/// the directory snapshotter under `store_dir`; pushes each chain's top.
async fn directory_chains(
    store_dir: &Path,
    plan: &Plan,
    fingerprints: &[Vec<String>],
    layer_names: &mut BTreeMap<String, String>,
    tops: &mut Vec<Option<ImmutableRef>>,
) -> Result<(), CliError> {
    let snapshots = DirectorySnapshotter::open(snapshots_dir(store_dir)).map_err(|e| {
        CliError::context(format!("opening snapshots of {}", store_dir.display()), e)
    })?;
    let snapshotter: Arc<dyn Snapshotter> = Arc::new(snapshots.clone());
    for (p, fps) in plan.platforms.iter().zip(fingerprints) {
        let names = chain::register(&snapshots, &p.layers, fps).await?;
        for (name, l) in names.iter().zip(&p.layers) {
            layer_names
                .entry(name.clone())
                .or_insert_with(|| l.shown.clone());
        }
        let top = match names.last() {
            Some(name) => Some(
                ImmutableRef::load(snapshotter.clone(), name)
                    .await
                    .map_err(|e| CliError::context(format!("loading snapshot {name}"), e))?,
            ),
            None => None,
        };
        tops.push(top);
    }
    Ok(())
}

/// Loads the committed containerd snapshot `key` (and its parents) from containerd's
/// snapshotter `snapshotter`; names its links for progress.
async fn containerd_chain(
    store: &Store,
    snapshotter: &str,
    key: &str,
    layer_names: &mut BTreeMap<String, String>,
) -> Result<ImmutableRef, CliError> {
    let Some(conn) = store.containerd.clone() else {
        return Err(CliError::usage(
            "--snapshot names a containerd snapshot: it needs --containerd SOCKET",
        ));
    };
    let snapshots: Arc<dyn Snapshotter> = Arc::new(ContainerdSnapshotter::new(conn, snapshotter));
    let top = ImmutableRef::load(snapshots, key).await.map_err(|e| {
        CliError::context(
            format!("loading snapshot {key:?} of containerd's {snapshotter} snapshotter"),
            e,
        )
    })?;
    let mut link = Some(&top);
    while let Some(r) = link {
        layer_names.insert(r.id().to_string(), r.id().to_string());
        link = r.parent();
    }
    Ok(top)
}

/// After a failed export (which released its lease before returning the error):
/// collect what it wrote. GC never removes leased or referenced content, so this is safe
/// while other exports run.
async fn collect_failed(store: &Store) {
    if let Err(e) = store.gc.garbage_collect().await {
        tracing::warn!(error = %e, "collecting the blobs of the failed export");
    }
}

/// Writes the exporter response as buildx's `--metadata-file` does: string values,
/// and `containerimage.descriptor` decoded to its JSON object.
fn write_metadata(file: &Path, response: &BTreeMap<String, String>) -> Result<(), CliError> {
    let mut out = serde_json::Map::new();
    for (k, v) in response {
        let value = if k == RESPONSE_DESCRIPTOR {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_else(|| serde_json::Value::String(v.clone()))
        } else {
            serde_json::Value::String(v.clone())
        };
        out.insert(k.clone(), value);
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(out))
        .map_err(|e| CliError::context("encoding the metadata file", e))?;
    std::fs::write(file, text + "\n")
        .map_err(|e| CliError::context(format!("writing metadata file {}", file.display()), e))
}
