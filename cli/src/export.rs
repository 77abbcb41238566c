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
use strata_cache::ImmutableRef;
use strata_differ::WalkingDiffer;
use strata_exporter::{
    Destination, DockerExporter, ExportContext, ExportRequest, Exporter, ExporterInstance,
    ImageExporter, ImageOptions, LayerSource, OciExporter, OutputKind, OutputOptions,
    PlatformSource, Progress, PushOptions, RegistryExporter, Source, WriterFactory,
    RESPONSE_DESCRIPTOR, RESPONSE_IMAGE_DIGEST,
};

use crate::attest;
use crate::base;
use crate::error::CliError;
use crate::output::{parse_output, OutputSpec};
use crate::plan::{self, Plan};
use crate::render::{render, ProgressMode};
use crate::sources;
use crate::store::{self, Store, StoreLocation};

/// The arguments of `strata export`, already parsed by clap.
pub struct ExportArgs {
    /// `--base`: the image to build on.
    pub base: Option<String>,
    /// `--layer` directories.
    pub layers: Vec<PathBuf>,
    /// `--description` texts.
    pub descriptions: Vec<String>,
    /// `--copy SRC[:DEST]` layers.
    pub copies: Vec<String>,
    /// `--chown UID:GID` of the copy layers.
    pub chown: Option<(u32, u32)>,
    /// `--insecure-registry` hosts.
    pub insecure_registries: Vec<String>,
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
    /// `--fast-change-detection`: containerd's change rule for `--layer` directories
    /// too (a file with the same size and mtime is unchanged, unread).
    pub fast_change_detection: bool,
    /// `--attest` requests, as given.
    pub attests: Vec<String>,
}

/// containerd's default snapshotter, which `--snapshot` reads and `unpack=true`
/// extracts into unless `--snapshotter` names another.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

fn exporter(
    kind: OutputKind,
    ctx: ExportContext,
    stdout: bool,
    push: PushOptions,
) -> Box<dyn Exporter> {
    let sink: WriterFactory = Arc::new(|| Ok(Box::new(std::io::stdout()) as _));
    match kind {
        OutputKind::Oci if stdout => Box::new(OciExporter::new(ctx).with_writer(sink)),
        OutputKind::Oci => Box::new(OciExporter::new(ctx)),
        OutputKind::Docker if stdout => Box::new(DockerExporter::new(ctx).with_writer(sink)),
        OutputKind::Docker => Box::new(DockerExporter::new(ctx)),
        OutputKind::Image => Box::new(ImageExporter::new(ctx)),
        OutputKind::Registry => Box::new(RegistryExporter::new(ctx).with_push_options(push)),
    }
}

/// Push settings: plain HTTP to the `--insecure-registry` hosts.
pub fn push_options(insecure: &[String]) -> PushOptions {
    let mut push = PushOptions::default();
    push.registry.insecure_hosts = insecure.to_vec();
    push
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
    /// The image options parsed (compression and epoch of `--copy` layers).
    image: ImageOptions,
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
            image: parsed.image,
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
        image: parsed.image,
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
    let started_on = std::time::SystemTime::now();
    let requests = (args.attests.iter())
        .map(|a| attest::parse_attest(a))
        .collect::<Result<Vec<_>, _>>()?;
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
        image: image_opts,
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
            args.base.as_deref(),
            &args.layers,
            &args.descriptions,
            &args.copies,
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
    let checked_attestations = match requests.is_empty() {
        true => None,
        false => {
            let export = ExportRequest {
                output: spec.kind,
                options: opts.clone(),
                started_on,
            };
            Some(attest::check(&plan, &requests, &export).await?)
        }
    };
    let chains = sources::read_layers(&plan).await?;
    let bases = plan
        .platforms
        .iter()
        .map(|p| {
            p.base
                .as_deref()
                .map(|b| base::parse_reference(b, location))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;

    // 2. The store, the base images and the snapshot chains.
    let store = store::open(location, true).await?;
    let mut layer_names = BTreeMap::new();
    let mut images: Vec<PlatformSource> = Vec::new();
    // What base images and --copy layers bring into the store before the exporter's
    // own lease holds it (blobs fetched to extract a base, copy layers) is leased.
    let needs_lease = plan
        .platforms
        .iter()
        .any(|p| p.base.is_some() || !p.copies.is_empty());
    let lease = match needs_lease {
        true => Some(base::temporary_lease(&store).await?),
        false => None,
    };
    if let Some(key) = &args.snapshot {
        let top = sources::containerd_chain(&store, snapshotter, key, &mut layer_names).await?;
        images.push(PlatformSource {
            platform: None,
            top: Some(top),
            config: plan.platforms[0].config.clone(),
            layer_sources: vec![LayerSource::ContainerdSnapshot {
                snapshotter: snapshotter.to_string(),
                key: key.clone(),
            }],
            ..PlatformSource::default()
        });
    } else {
        let built = sources::platform_sources(
            &plan,
            chains,
            &bases,
            &sources::Inputs {
                store: &store,
                location,
                store_dir,
                insecure_registries: &args.insecure_registries,
                chown: args.chown,
                image: &image_opts,
                lease: lease.as_ref(),
                exact_changes: exact_change_detection(&args),
                describe_sources: attest::wants_provenance(&requests),
            },
            &mut layer_names,
        )
        .await;
        images = match built {
            Ok(images) => images,
            // A base that cannot be read, a copy that fails: what they brought in
            // goes with their lease, as after a failed export.
            Err(e) => {
                if let Some(lease) = lease {
                    if let Err(release) = lease.release().await {
                        tracing::debug!(error = %release, "releasing the lease of a failed export");
                    }
                }
                collect_failed(&store).await;
                return Err(e);
            }
        };
    }
    if let Some(checked) = checked_attestations {
        attest::attach(checked, &mut images);
    }
    let tops: Vec<ImmutableRef> = images.iter().filter_map(|i| i.top.clone()).collect();
    let source = Source { images };

    // 3. The export, with progress rendered as it happens.
    let mut ctx = ExportContext::new(
        store.content.clone(),
        store.leases.clone(),
        store.images.clone(),
        Arc::new(
            WalkingDiffer::new(store.content.clone())
                .with_exact_content(exact_change_detection(&args)),
        ),
    )
    .with_jobs(args.jobs);
    if unpack {
        ctx = ctx.with_unpack_target(base::unpack_target(&store, store_dir, snapshotter)?);
    }
    let instance: Box<dyn ExporterInstance> = exporter(
        spec.kind,
        ctx,
        to_stdout,
        push_options(&args.insecure_registries),
    )
    .resolve(opts)
    .await
    .map_err(|e| CliError::usage(format!("invalid --output {:?}: {e}", args.output)))?;
    let (progress, events) = Progress::channel();
    let renderer = tokio::spawn(render(args.progress, events, layer_names));
    let result = instance.export(source, progress).await;
    drop(instance);
    let _ = renderer.await;
    for top in tops {
        if let Err(e) = top.release().await {
            tracing::debug!(error = %e, "releasing snapshot view");
        }
    }
    if let Some(lease) = lease {
        if let Err(e) = lease.release().await {
            tracing::debug!(error = %e, "releasing the lease of the base and copy layers");
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

/// Whether the differ compares the bytes of files whose size and mtime are unchanged:
/// for `--layer` directories (independent trees, often copies where equal mtimes are
/// weak evidence) unless `--fast-change-detection`; never for a containerd `--snapshot`
/// chain, whose layers stay the ones containerd's own differ computes.
fn exact_change_detection(args: &ExportArgs) -> bool {
    args.snapshot.is_none() && !args.fast_change_detection
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
    use crate::plan::LayerPlan;
    use strata_cache::{DirectoryChain, LayerDir};

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
            Err(e) => crate::sources::layer_error(&[layer], e),
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
