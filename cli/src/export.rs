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
use strata_cache::{DirectoryChain, DirectoryError, ImmutableRef, LayerDir, Materializer};
use strata_containerd::ContainerdSnapshotter;
use strata_differ::WalkingDiffer;
use strata_exporter::{
    Destination, DockerExporter, ExportContext, Exporter, ExporterInstance, ImageExporter,
    OciExporter, OutputKind, OutputOptions, Progress, RegistryExporter, Source, UnpackTarget,
    WriterFactory, RESPONSE_DESCRIPTOR, RESPONSE_IMAGE_DIGEST,
};
use strata_snapshotter::{DirectorySnapshotter, NativeSnapshotter, Snapshotter};

use crate::error::CliError;
use crate::output::{parse_output, OutputSpec};
use crate::plan::{self, LayerPlan, Plan};
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
    /// `--snapshotter`: containerd's snapshotter holding `snapshot`, and the one
    /// `unpack=true` extracts into ([`DEFAULT_SNAPSHOTTER`] when not given).
    pub snapshotter: Option<String>,
}

/// containerd's default snapshotter, which `--snapshot` reads and `unpack=true`
/// extracts into unless `--snapshotter` names another.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// Where the snapshot metadata of the directory snapshotter lives in a store.
pub fn snapshots_dir(store: &Path) -> PathBuf {
    store.join(".strata").join("snapshots")
}

/// The name `unpack=true` into the local store gives its snapshotter (in the config's
/// `containerd.io/gc.ref.snapshot.native` label): strata's native snapshotter, laid
/// out as containerd's.
const LOCAL_UNPACK_SNAPSHOTTER: &str = "native";

/// Where `unpack=true` extracts images of the local store: a native snapshotter
/// beside the directory snapshotter's metadata.
pub fn unpack_snapshots_dir(store: &Path) -> PathBuf {
    snapshots_dir(store).join(LOCAL_UNPACK_SNAPSHOTTER)
}

/// The snapshotter `unpack=true` extracts into: with containerd, its snapshotter
/// `snapshotter` (what `ctr run` uses); otherwise strata's native snapshotter under
/// `store_dir`. Layers are read from the store's content and applied by the walking
/// differ (mounting containerd's overlay mounts needs root).
fn unpack_target(
    store: &Store,
    store_dir: &Path,
    snapshotter: &str,
) -> Result<UnpackTarget, CliError> {
    let (snapshots, name): (Arc<dyn Snapshotter>, &str) = match &store.containerd {
        Some(conn) => (
            Arc::new(ContainerdSnapshotter::new(conn.clone(), snapshotter)),
            snapshotter,
        ),
        None => {
            let dir = unpack_snapshots_dir(store_dir);
            let native = NativeSnapshotter::open(&dir).map_err(|e| {
                CliError::context(format!("opening snapshotter {}", dir.display()), e)
            })?;
            (Arc::new(native), LOCAL_UNPACK_SNAPSHOTTER)
        }
    };
    Ok(UnpackTarget {
        materializer: Materializer {
            store: store.content.clone(),
            applier: Arc::new(WalkingDiffer::new(store.content.clone())),
            snapshotter: snapshots,
        },
        snapshotter_name: name.to_string(),
    })
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

/// The output's options, checked by the exporter's own parser before anything is
/// opened, with what the CLI decides on top.
#[derive(Debug)]
struct CheckedOutput {
    /// The options to resolve the exporter with: the output's, plus
    /// `source-date-epoch` from `SOURCE_DATE_EPOCH` unless the output sets it (as
    /// BuildKit does); `dest=-` removed.
    options: BTreeMap<String, String>,
    /// Where an `oci` or `docker` output goes (`dest` is `None` for stdout).
    destination: Option<Destination>,
    /// Whether the tar goes to stdout (`dest=-`, or no `dest` when stdout is not a
    /// terminal, as buildx does).
    to_stdout: bool,
    /// Whether the image is unpacked (`unpack=true`).
    unpack: bool,
    /// Whether the output names the image (`name`, or `dangling-name-prefix`).
    named: bool,
}

fn check_output(spec: &OutputSpec, output: &str) -> Result<CheckedOutput, CliError> {
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
    let stdout_needs_tar = || {
        CliError::usage("invalid --output: dest=- (stdout) needs a tar output (type=oci or docker)")
    };
    if !spec.kind.writes_files() && opts.get("dest").map(String::as_str) == Some("-") {
        return Err(stdout_needs_tar());
    }
    let parsed = OutputOptions::parse(spec.kind, &opts)
        .map_err(|e| CliError::usage(format!("invalid --output {output:?}: {e}")))?;
    let records = parsed.records.unwrap_or_default();
    let unpack = records.unpack;
    let named = !parsed.image.names.is_empty() || records.dangling_name_prefix.is_some();
    let Some(mut destination) = parsed.destination else {
        return Ok(CheckedOutput {
            options: opts,
            destination: None,
            to_stdout: false,
            unpack,
            named,
        });
    };
    if destination.tar && destination.dest.is_none() {
        if std::io::stdout().is_terminal() {
            return Err(CliError::usage(format!(
                "invalid --output: type={} needs dest=PATH (refusing to write a tar to the terminal; dest=- forces stdout)",
                spec.kind
            )));
        }
        destination.dest = Some(PathBuf::from("-"));
    }
    let to_stdout = destination.dest.as_deref() == Some(Path::new("-"));
    if to_stdout {
        if !destination.tar {
            return Err(stdout_needs_tar());
        }
        opts.remove("dest");
        destination.dest = None;
    }
    Ok(CheckedOutput {
        options: opts,
        destination: Some(destination),
        to_stdout,
        unpack,
        named,
    })
}

/// Checks the destination before any work: a tar's directory must exist, a layout
/// directory must not be a file.
fn check_dest(kind: OutputKind, destination: &Destination) -> Result<(), CliError> {
    let Some(dest) = &destination.dest else {
        return Ok(());
    };
    if destination.tar {
        if dest.is_dir() {
            return Err(CliError::failed(format!(
                "output dest {} is a directory; a {} tar needs a file path (or tar=false)",
                dest.display(),
                kind
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
    let CheckedOutput {
        options: opts,
        destination,
        to_stdout,
        unpack,
        named,
    } = check_output(&spec, &args.output)?;
    if args.snapshotter.is_some() && args.snapshot.is_none() && !unpack {
        return Err(CliError::usage(
            "--snapshotter names where --snapshot KEY is, or where unpack=true extracts: \
             give one of them",
        ));
    }
    let snapshotter = args.snapshotter.as_deref().unwrap_or(DEFAULT_SNAPSHOTTER);
    if matches!(spec.kind, OutputKind::Image | OutputKind::Registry) && !named {
        return Err(CliError::usage(format!(
            "invalid --output {:?}: type={} needs name=REF (or dangling-name-prefix=REPO)",
            args.output, spec.kind
        )));
    }
    if let Some(destination) = &destination {
        check_dest(spec.kind, destination)?;
    }
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
    let chains = read_layers(&plan).await?;

    // 2. The store and the snapshot chains.
    let store = store::open(location, true).await?;
    let mut layer_names = BTreeMap::new();
    let mut tops: Vec<Option<ImmutableRef>> = Vec::new();
    if let Some(key) = &args.snapshot {
        let top = containerd_chain(&store, snapshotter, key, &mut layer_names).await?;
        tops.push(Some(top));
    } else {
        directory_chains(store_dir, &plan, &chains, &mut layer_names, &mut tops).await?;
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
    let mut ctx = ExportContext::new(
        store.content.clone(),
        store.leases.clone(),
        store.images.clone(),
        Arc::new(WalkingDiffer::new(store.content.clone())),
    )
    .with_jobs(args.jobs);
    if unpack {
        ctx = ctx.with_unpack_target(unpack_target(&store, store_dir, snapshotter)?);
    }
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

/// Reads (fingerprints) every platform's `--layer` directories, all platforms at once;
/// errors name the first layer, in plan order, that could not be read.
async fn read_layers(plan: &Plan) -> Result<Vec<DirectoryChain>, CliError> {
    let reads = plan.platforms.iter().map(|p| async {
        let layers: Vec<LayerDir> = p
            .layers
            .iter()
            .map(|l| LayerDir {
                dir: l.dir.clone(),
                description: l.description.clone(),
            })
            .collect();
        DirectoryChain::read(&layers)
            .await
            .map_err(|e| layer_error(&p.layers, e))
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// `error` of one of `layers`, named as the user named the layer.
fn layer_error(layers: &[LayerPlan], error: DirectoryError) -> CliError {
    let dir = error.dir().map(Path::to_path_buf).unwrap_or_default();
    let shown = layers
        .iter()
        .find(|l| l.dir == dir)
        .map_or_else(|| dir.display().to_string(), |l| l.shown.clone());
    match error {
        DirectoryError::Read { path, source, .. } => CliError::context(
            format!("reading layer {shown}"),
            format!("{}: {source}", path.display()),
        ),
        DirectoryError::Register { source, .. } => {
            CliError::context(format!("registering layer {shown}"), source)
        }
        other => CliError::context("registering layers", other),
    }
}

/// Registers (or finds) each platform's `--layer` directories as a snapshot chain in
/// the directory snapshotter under `store_dir`; pushes each chain's top.
async fn directory_chains(
    store_dir: &Path,
    plan: &Plan,
    chains: &[DirectoryChain],
    layer_names: &mut BTreeMap<String, String>,
    tops: &mut Vec<Option<ImmutableRef>>,
) -> Result<(), CliError> {
    let snapshots = DirectorySnapshotter::open(snapshots_dir(store_dir)).map_err(|e| {
        CliError::context(format!("opening snapshots of {}", store_dir.display()), e)
    })?;
    let snapshotter: Arc<dyn Snapshotter> = Arc::new(snapshots.clone());
    for (p, chain) in plan.platforms.iter().zip(chains) {
        let names = chain
            .register(&snapshots)
            .await
            .map_err(|e| layer_error(&p.layers, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_layer_is_an_error_naming_it() {
        let layer = LayerPlan {
            shown: "my-layer".to_string(),
            dir: PathBuf::from("/nonexistent/layer"),
            description: String::new(),
        };
        let read = [LayerDir {
            dir: layer.dir.clone(),
            description: String::new(),
        }];
        let err = match DirectoryChain::read(&read).await {
            Err(e) => layer_error(&[layer], e),
            Ok(_) => panic!("a missing layer directory was read"),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("my-layer") && msg.contains("/nonexistent/layer"),
            "{msg}"
        );
    }

    fn spec(kind: OutputKind, pairs: &[(&str, &str)]) -> OutputSpec {
        OutputSpec {
            kind,
            options: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn tar_is_read_by_the_exporters_parser() {
        // Go's ParseBool spellings, as the exporter reads them: `False` is a directory.
        let checked = check_output(
            &spec(
                OutputKind::Oci,
                &[("tar", "False"), ("dest", "/tmp/layout")],
            ),
            "-o",
        )
        .unwrap();
        assert!(!checked.destination.unwrap().tar);
        assert!(!checked.to_stdout);
        let err = check_output(&spec(OutputKind::Oci, &[("tar", "maybe")]), "-o").unwrap_err();
        assert!(err.to_string().contains("tar"), "{err}");
        let err = check_output(
            &spec(OutputKind::Oci, &[("tar", "False"), ("dest", "-")]),
            "-o",
        )
        .unwrap_err();
        assert!(err.to_string().contains("stdout"), "{err}");
        let checked = check_output(&spec(OutputKind::Docker, &[("dest", "-")]), "-o").unwrap();
        assert!(checked.to_stdout && !checked.options.contains_key("dest"));
    }
}
