//! What each platform of an export is built from: its base image (imported as
//! blob-backed refs), its `--layer` directories (registered as a snapshot chain on the
//! base), its `--copy` layers, and its config (over the base's) — or a committed
//! containerd snapshot chain.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata_cache::{
    fingerprint, import_image, DirectoryChain, DirectoryError, ImageLocation, ImageRoot,
    ImmutableRef, LayerDir, Materializer,
};
use strata_containerd::ContainerdSnapshotter;
use strata_content::LeaseGuard;
use strata_exporter::{merge_config, BaseImageRef, ImageOptions, LayerSource, PlatformSource};
use strata_snapshotter::{DirectorySnapshotter, Snapshotter};

use crate::base;
use crate::error::CliError;
use crate::plan::{LayerPlan, Plan, PlatformPlan};
use crate::store::snapshots_dir;
use crate::store::{Store, StoreLocation};

/// What building the platforms' sources needs besides the plan.
pub struct Inputs<'a> {
    /// The open store.
    pub store: &'a Store,
    /// Where the store is (`containerd:` bases need containerd).
    pub location: &'a StoreLocation,
    /// The local store directory (layer registrations, extracted bases).
    pub store_dir: &'a Path,
    /// `--insecure-registry` hosts.
    pub insecure_registries: &'a [String],
    /// `--chown` of the copy layers.
    pub chown: Option<(u32, u32)>,
    /// The output's image options (the copy layers' compression and epoch).
    pub image: &'a ImageOptions,
    /// Whether the differ compares the bytes of files whose size and mtime match
    /// (exact change detection) rather than containerd's rule.
    pub exact_changes: bool,
    /// The lease holding what base images and copy layers bring into the store until
    /// the exporter's lease holds it (set when there are bases or copies).
    pub lease: Option<&'a LeaseGuard>,
    /// Whether each platform lists where its layers came from
    /// ([`PlatformSource::layer_sources`], for provenance): copy sources are then
    /// fingerprinted too.
    pub describe_sources: bool,
}

/// One [`PlatformSource`] per platform of `plan`: its base imported (`bases`, parsed
/// from the plan), its layer chain (`chains`, read from the plan) registered on the
/// base, its copies stacked on top, its config put over the base's. Names the layers
/// for progress in `layer_names`.
pub async fn platform_sources(
    plan: &Plan,
    chains: Vec<DirectoryChain>,
    bases: &[Option<ImageLocation>],
    inputs: &Inputs<'_>,
    layer_names: &mut BTreeMap<String, String>,
) -> Result<Vec<PlatformSource>, CliError> {
    let mut images = Vec::new();
    let mut roots: BTreeMap<String, ImageRoot> = BTreeMap::new();
    let materializer = match inputs.lease {
        Some(lease) => Some(Materializer {
            store: inputs.store.content.with_lease(lease.id()),
            ..base::materializer(inputs.store, inputs.store_dir)?
        }),
        None => None,
    };
    for (i, (p, chain)) in plan.platforms.iter().zip(chains).enumerate() {
        let label = p
            .platform
            .as_ref()
            .map_or_else(|| "default".to_string(), |p| p.to_string());
        let imported = match (&bases[i], &materializer) {
            (Some(reference), Some(m)) => {
                // A base several platforms share is opened (resolved, authenticated,
                // indexed) once.
                let key = reference.to_string();
                let root = match roots.get(&key) {
                    Some(root) => root.clone(),
                    None => {
                        let root = base::open(
                            reference,
                            inputs.store,
                            inputs.location,
                            inputs.store_dir,
                            inputs.insecure_registries,
                        )
                        .await?;
                        roots.insert(key, root.clone());
                        root
                    }
                };
                // Only the manifest and config are read (verified) here.
                let imported = import_image(&root, p.platform.as_ref(), m)
                    .await
                    .map_err(|e| CliError::context("reading the base image", e))?;
                Some(imported)
            }
            _ => None,
        };
        let mut layer_sources: Vec<LayerSource> = match inputs.describe_sources {
            true => chain
                .fingerprints()
                .map(|(dir, fingerprint)| LayerSource::Directory {
                    path: dir.to_path_buf(),
                    fingerprint: fingerprint.to_string(),
                    copy_to: None,
                })
                .collect(),
            false => Vec::new(),
        };
        if inputs.describe_sources {
            for c in &p.copies {
                layer_sources.push(copy_source(&c.src, &c.dest, &c.shown).await?);
            }
        }
        let base_top = imported.as_ref().and_then(|b| b.top.clone());
        let mut link = base_top.as_ref();
        while let Some(r) = link {
            layer_names.insert(r.id().to_string(), format!("base layer {}", r.id()));
            link = r.parent();
        }
        let top = directory_chain(
            inputs.store_dir,
            p,
            chain,
            base_top,
            inputs.exact_changes,
            layer_names,
        )
        .await?;
        let top = match &materializer {
            Some(m) if !p.copies.is_empty() => {
                let top = base::stack_copies(
                    top,
                    &p.copies,
                    inputs.chown,
                    inputs.image.compression,
                    inputs.image.source_date_epoch,
                    m,
                )
                .await?;
                for (r, c) in
                    std::iter::successors(top.as_ref(), |r| r.parent()).zip(p.copies.iter().rev())
                {
                    layer_names.insert(r.id().to_string(), format!("COPY {}", c.shown));
                }
                top
            }
            _ => top,
        };
        let (config, base_ref) = match &imported {
            Some(b) => (
                Some(
                    merge_config(&b.config, p.config.as_deref(), &label)
                        .map_err(|e| CliError::context("--config", e))?,
                ),
                Some(BaseImageRef {
                    name: b.name.clone(),
                    digest: b.manifest.digest.clone(),
                }),
            ),
            None => (p.config.clone(), None),
        };
        if plan.multi && top.is_none() {
            return Err(CliError::failed(format!(
                "platform {label} has no layers; each platform of a spec needs at least one"
            )));
        }
        images.push(PlatformSource {
            platform: if plan.multi { p.platform.clone() } else { None },
            top,
            config,
            base: base_ref,
            layer_sources,
            ..PlatformSource::default()
        });
    }
    Ok(images)
}

/// A `--copy` source as provenance names it: its directory and fingerprint.
async fn copy_source(src: &Path, dest: &str, shown: &str) -> Result<LayerSource, CliError> {
    let src = src.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        let path = src.canonicalize().map_err(|e| e.to_string())?;
        let fingerprint = fingerprint(&path).map_err(|e| e.to_string())?;
        Ok::<_, String>((path, fingerprint))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (path, fingerprint) =
        read.map_err(|e| CliError::context(format!("reading --copy {shown}"), e))?;
    Ok(LayerSource::Directory {
        path,
        fingerprint,
        copy_to: Some(dest.to_string()),
    })
}

/// Reads (fingerprints) every platform's `--layer` directories, all platforms at once;
/// errors name the first layer, in plan order, that could not be read.
pub async fn read_layers(plan: &Plan) -> Result<Vec<DirectoryChain>, CliError> {
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
pub fn layer_error(layers: &[LayerPlan], error: DirectoryError) -> CliError {
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

/// Registers (or finds) one platform's `--layer` directories as a snapshot chain in
/// the directory snapshotter under `store_dir`, on `base` (a base image's top) when
/// there is one; returns the chain's top (`base` without layers).
async fn directory_chain(
    store_dir: &Path,
    p: &PlatformPlan,
    chain: DirectoryChain,
    base: Option<ImmutableRef>,
    exact_changes: bool,
    layer_names: &mut BTreeMap<String, String>,
) -> Result<Option<ImmutableRef>, CliError> {
    if p.layers.is_empty() {
        return Ok(base);
    }
    let snapshots = DirectorySnapshotter::open(snapshots_dir(store_dir)).map_err(|e| {
        CliError::context(format!("opening snapshots of {}", store_dir.display()), e)
    })?;
    // What decides the layers besides the trees: the base they are diffed against,
    // and containerd's change rule when --fast-change-detection chose it (a layer it
    // computed may miss a rewrite, so exact exports must not reuse it).
    let mut key = base
        .as_ref()
        .map(|b| b.id().to_string())
        .unwrap_or_default();
    if !exact_changes {
        key.push_str("|change-rule=size+mtime");
    }
    let chain = if key.is_empty() {
        chain
    } else {
        chain.keyed(&key)
    };
    let names = chain
        .register(&snapshots)
        .await
        .map_err(|e| layer_error(&p.layers, e))?;
    for (name, l) in names.iter().zip(&p.layers) {
        layer_names
            .entry(name.clone())
            .or_insert_with(|| l.shown.clone());
    }
    let Some(name) = names.last() else {
        return Ok(base);
    };
    let snapshotter: Arc<dyn Snapshotter> = Arc::new(snapshots);
    ImmutableRef::load_onto(snapshotter, name, base)
        .await
        .map(Some)
        .map_err(|e| CliError::context(format!("loading snapshot {name}"), e))
}

/// Loads the committed containerd snapshot `key` (and its parents) from containerd's
/// snapshotter `snapshotter`; names its links for progress.
pub async fn containerd_chain(
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
