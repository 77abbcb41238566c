//! [`ImageWriter`]: commits refs and configs as manifests and indexes in a content
//! store, with BuildKit's containerimage writer semantics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;
use serde_json::{Map, Value};
use strata_cache::{BlobInfo, BlobKey, ImmutableRef};
use strata_content::{write_blob, AbortOnDrop, ContentStore, LeaseGuard, LeaseResource};
use strata_oci::{Compression, Descriptor, Digest, Platform};
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument;

use crate::config::{empty_config, history_of, parse_config, patch_config};
use crate::context::ExportContext;
use crate::error::{Error, Result};
use crate::history::{normalize, LayerMeta};
use crate::manifest::{index_json, index_labels, manifest_json, manifest_labels, MediaTypes};
use crate::options::ImageOptions;
use crate::progress::Progress;
use crate::source::{PlatformSource, Source};
use strata_oci::to_canonical_vec;

mod layers;

/// How long an export's lease outlives a process that died holding it.
const TEMPORARY_LEASE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One platform's image as committed.
#[derive(Clone, Debug)]
pub struct PlatformImage {
    /// The platform (multi-platform sources only).
    pub platform: Option<Platform>,
    /// The manifest's descriptor (with platform and manifest-descriptor annotations).
    pub manifest: Descriptor,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The layers, base first (empty layers dropped).
    pub layers: Vec<Descriptor>,
}

/// The result of [`ImageWriter::commit`]: the root and what it references, still held
/// by `lease` until the caller anchors it.
#[derive(Debug)]
pub struct CommittedImage {
    /// The root: the manifest (single platform) or the index / manifest list,
    /// annotated with the index-descriptor annotations.
    pub descriptor: Descriptor,
    /// The config digest (single-platform sources only, as in BuildKit).
    pub config_digest: Option<Digest>,
    /// Every platform's image, in index order.
    pub images: Vec<PlatformImage>,
    /// The lease holding everything written.
    pub lease: LeaseGuard,
}

impl CommittedImage {
    /// Every blob the image consists of (root, manifests, configs, layers), each once,
    /// sorted by digest.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut out: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        let plain =
            |d: &Descriptor| Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
        out.insert(self.descriptor.digest.clone(), plain(&self.descriptor));
        for img in &self.images {
            out.insert(img.manifest.digest.clone(), plain(&img.manifest));
            out.insert(img.config.digest.clone(), plain(&img.config));
            for l in &img.layers {
                out.insert(l.digest.clone(), plain(l));
            }
        }
        out.into_values().collect()
    }
}

/// The blobs being computed in one commit, keyed by ref and blob key.
type Inflight = Mutex<HashMap<(String, BlobKey), Arc<OnceCell<BlobInfo>>>>;

/// Commits [`Source`]s as images in the context's content store.
pub struct ImageWriter {
    ctx: ExportContext,
    jobs: Arc<Semaphore>,
}

impl ImageWriter {
    /// A writer over `ctx`, computing at most `ctx.jobs` layers at a time.
    pub fn new(ctx: ExportContext) -> ImageWriter {
        let jobs = Arc::new(Semaphore::new(ctx.jobs.max(1)));
        ImageWriter { ctx, jobs }
    }

    /// Computes every ref's layer chain, then writes configs, manifests and (for
    /// several platforms) an index, all under a new lease returned with the result.
    pub async fn commit(
        &self,
        source: &Source,
        opts: &ImageOptions,
        progress: &Progress,
    ) -> Result<CommittedImage> {
        let types = MediaTypes {
            oci: opts.oci_media_types,
        };
        if !types.oci && opts.compression == Compression::Zstd {
            return Err(Error::UnsupportedCompression {
                compression: Compression::Zstd,
                media_types: "Docker",
            });
        }
        let images = source.checked_images()?;
        let multi = source.is_multi_platform();
        let configs = images
            .iter()
            .map(|img| match &img.config {
                Some(bytes) => parse_config(bytes, &img.label()),
                None => Ok(empty_config(
                    &img.platform.clone().unwrap_or_else(Platform::host),
                )),
            })
            .collect::<Result<Vec<_>>>()?;

        // BuildKit's temporary leases: a process that dies mid-export does not hold its
        // blobs for ever.
        let lease = LeaseGuard::temporary(self.ctx.leases.clone(), TEMPORARY_LEASE).await?;
        let written = self
            .commit_leased(&images, configs, multi, opts, types, lease.id(), progress)
            .await;
        match written {
            Ok((descriptor, config_digest, images)) => Ok(CommittedImage {
                descriptor,
                config_digest,
                images,
                lease,
            }),
            // Nothing written is needed any more: the lease goes before the error does.
            Err(e) => lease.release_after(Err(e)).await,
        }
    }

    /// The part of [`ImageWriter::commit`] that writes under `lease`: layers, configs,
    /// manifests and the index; returns the root, its config digest (single platform)
    /// and every platform's image.
    #[allow(clippy::too_many_arguments)]
    async fn commit_leased(
        &self,
        images: &[PlatformSource],
        configs: Vec<Map<String, Value>>,
        multi: bool,
        opts: &ImageOptions,
        types: MediaTypes,
        lease: &str,
        progress: &Progress,
    ) -> Result<(Descriptor, Option<Digest>, Vec<PlatformImage>)> {
        let store = self.ctx.content.with_lease(lease);
        let key = BlobKey {
            compression: opts.compression,
            source_date_epoch: opts.source_date_epoch,
        };

        let layers_task = progress.start("exporting-layers", "exporting layers");
        let inflight = Inflight::default();
        let chains = try_join_all(
            images
                .iter()
                .map(|img| self.export_chain(img, key, opts, lease, &inflight, progress)),
        )
        .instrument(layers_task.span().clone())
        .await;
        let chains = match chains {
            Ok(c) => c,
            Err(e) => {
                layers_task.fail(&e);
                return Err(e);
            }
        };
        layers_task.complete();

        let mut committed = Vec::new();
        for ((img, config), chain) in images.iter().zip(configs).zip(chains) {
            committed.push(
                self.commit_manifest(&store, lease, img, config, &chain, opts, types, progress)
                    .await?,
            );
        }

        let (descriptor, config_digest) = if multi {
            let manifests: Vec<Descriptor> = committed.iter().map(|c| c.manifest.clone()).collect();
            let json = index_json(types, &manifests, &opts.annotations.index);
            let bytes = to_canonical_vec(&json).map_err(|source| Error::Encode {
                what: "the image index".into(),
                source,
            })?;
            let digest = Digest::sha256_of(&bytes);
            let task = progress.start(
                format!("manifest-list:{digest}"),
                format!("exporting manifest list {digest}"),
            );
            let mut desc = self
                .put_blob(
                    &store,
                    lease,
                    types.index(),
                    (bytes, digest),
                    index_labels(&manifests),
                )
                .instrument(task.span().clone())
                .await
                .inspect_err(|e| task.fail(e))?;
            task.complete();
            desc.annotations = opts.annotations.index_descriptor.clone();
            (desc, None)
        } else {
            let only = &committed[0];
            let mut desc = only.manifest.clone();
            desc.annotations
                .extend(opts.annotations.index_descriptor.clone());
            (desc, Some(only.config.digest.clone()))
        };
        Ok((descriptor, config_digest, committed))
    }

    async fn hold(&self, lease: &str, digest: &Digest) -> Result<()> {
        let res = LeaseResource::content(digest);
        match self.ctx.leases.add_resource(lease, res).await {
            Err(e) if !e.is_already_exists() => Err(e.into()),
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_manifest(
        &self,
        store: &Arc<dyn ContentStore>,
        lease: &str,
        img: &PlatformSource,
        config: Map<String, Value>,
        chain: &[(ImmutableRef, BlobInfo)],
        opts: &ImageOptions,
        types: MediaTypes,
        progress: &Progress,
    ) -> Result<PlatformImage> {
        let empty = strata_differ::empty_layer_diff_id();
        let metas: Vec<LayerMeta> = chain
            .iter()
            .map(|(r, b)| LayerMeta::new(r.description(), r.created_at(), b.diff_id == empty))
            .collect();
        let normalized = normalize(history_of(&config), &metas);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for &i in &normalized.kept_layers {
            let info = &chain[i].1;
            let compression =
                Compression::from_layer_media_type(&info.media_type).ok_or_else(|| {
                    Error::InvalidContent {
                        digest: info.digest.to_string(),
                        reason: format!("recorded media type {:?} is not a layer", info.media_type),
                    }
                })?;
            let media_type =
                compression
                    .layer_media_type(types.oci)
                    .ok_or(Error::UnsupportedCompression {
                        compression,
                        media_types: "Docker",
                    })?;
            layers.push(Descriptor::new(media_type, info.digest.clone(), info.size));
            diff_ids.push(info.diff_id.clone());
        }
        let config = patch_config(
            config,
            &diff_ids,
            normalized.history,
            opts.source_date_epoch,
        );
        let config_bytes =
            to_canonical_vec(&Value::Object(config)).map_err(|e| Error::InvalidConfig {
                platform: img.label(),
                reason: e.to_string(),
            })?;
        let config_digest = Digest::sha256_of(&config_bytes);
        let task = progress.start(
            format!("config:{config_digest}"),
            format!("exporting config {config_digest}"),
        );
        let config_desc = self
            .put_blob(
                store,
                lease,
                types.config(),
                (config_bytes, config_digest),
                BTreeMap::new(),
            )
            .await
            .inspect_err(|e| task.fail(e))?;
        task.complete();

        // As BuildKit: manifest annotations go into Docker manifests too.
        let annotations = opts.annotations.manifest_for(img.platform.as_ref());
        let json = manifest_json(types, &config_desc, &layers, &annotations);
        let bytes = to_canonical_vec(&json).map_err(|source| Error::Encode {
            what: format!("the manifest of {}", img.label()),
            source,
        })?;
        let digest = Digest::sha256_of(&bytes);
        let task = progress.start(
            format!("manifest:{digest}"),
            format!("exporting manifest {digest}"),
        );
        let mut manifest = self
            .put_blob(
                store,
                lease,
                types.manifest(),
                (bytes, digest),
                manifest_labels(&config_desc.digest, &layers),
            )
            .instrument(task.span().clone())
            .await
            .inspect_err(|e| task.fail(e))?;
        task.complete();
        manifest.platform = img.platform.clone();
        manifest.annotations = opts
            .annotations
            .manifest_descriptor_for(img.platform.as_ref());
        Ok(PlatformImage {
            platform: img.platform.clone(),
            manifest,
            config: config_desc,
            layers,
        })
    }

    /// Writes `bytes` (whose digest the caller computed) through the leased `store`
    /// with `labels`; content that already exists gets the labels added and is added
    /// to the lease.
    async fn put_blob(
        &self,
        store: &Arc<dyn ContentStore>,
        lease: &str,
        media_type: &str,
        (bytes, digest): (Vec<u8>, Digest),
        labels: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let desc = Descriptor::new(media_type, digest.clone(), bytes.len() as u64);
        let reference = format!(
            "strata-export-{}-{}-{}",
            digest.hex(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // A cancelled export leaves no ingest (write_blob aborts on its own errors).
        let mut abort_on_drop = AbortOnDrop::new(Arc::clone(store), reference.clone());
        let written = write_blob(store.as_ref(), &reference, &bytes, &desc, labels).await;
        abort_on_drop.disarm();
        written?;
        self.hold(lease, &digest).await?;
        Ok(desc)
    }
}
