//! [`ImageWriter`]: commits refs and configs as manifests and indexes in a content
//! store, with BuildKit's containerimage writer semantics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use strata_cache::{BlobInfo, BlobKey, BlobLayer, ImmutableRef};
use strata_content::{write_blob, AbortOnDrop, ContentStore, LeaseGuard, LeaseResource};
use strata_oci::{annotations, Compression, Descriptor, Digest, Platform};
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument;

use crate::attestation::GeneratedLayer;
use crate::config::{empty_config, history_of, parse_config, patch_config};
use crate::context::ExportContext;
use crate::error::{Error, Result};
use crate::history::{normalize, LayerMeta};
use crate::manifest::{index_json, index_labels, manifest_json, manifest_labels, MediaTypes};
use crate::options::ImageOptions;
use crate::progress::Progress;
use crate::source::{PlatformSource, Source};
use strata_oci::to_canonical_vec;

mod attestations;
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
    /// The attestation manifests (platform `unknown/unknown`, their statements as
    /// layers), in index order after `images`: one per attested platform.
    pub attestations: Vec<PlatformImage>,
    /// The lease holding everything written.
    pub lease: LeaseGuard,
    /// Base-image layers the image references that the content store does not have,
    /// with where to fetch them: outputs that read blobs from the store fetch them
    /// first ([`CommittedImage::fetch_remote_blobs`]); a push mounts them or streams
    /// them from their provider.
    pub remote_blobs: BTreeMap<Digest, BlobLayer>,
}

impl CommittedImage {
    /// Every blob the image consists of (root, manifests, configs, layers), each once,
    /// sorted by digest.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut out: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        let plain =
            |d: &Descriptor| Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
        out.insert(self.descriptor.digest.clone(), plain(&self.descriptor));
        for img in self.images.iter().chain(&self.attestations) {
            out.insert(img.manifest.digest.clone(), plain(&img.manifest));
            out.insert(img.config.digest.clone(), plain(&img.config));
            for l in &img.layers {
                out.insert(l.digest.clone(), plain(l));
            }
        }
        out.into_values().collect()
    }

    /// Fetches the [`remote_blobs`](CommittedImage::remote_blobs) into `store` (under
    /// the image's lease), verified while they stream, so every blob of the image is
    /// in the store. Errors name the blob and where it was fetched from.
    pub async fn fetch_remote_blobs(
        &mut self,
        store: &Arc<dyn ContentStore>,
        progress: &Progress,
    ) -> Result<()> {
        let store = store.with_lease(self.lease.id());
        let remote = std::mem::take(&mut self.remote_blobs);
        let fetched = futures::stream::iter(remote.into_values())
            .map(|layer| {
                let store = store.clone();
                async move {
                    let desc = &layer.descriptor;
                    let task = progress.start(
                        format!("fetching:{}", desc.digest),
                        format!(
                            "fetching base layer {} from {}",
                            desc.digest,
                            layer.provider.name()
                        ),
                    );
                    task.update(0, Some(desc.size));
                    match layer.fetch_into(&store).await {
                        Ok(_) => {
                            task.update(desc.size, Some(desc.size));
                            task.complete();
                            Ok(())
                        }
                        Err(e) => {
                            task.fail(&e);
                            Err(Error::from(e))
                        }
                    }
                }
            })
            .buffer_unordered(FETCH_JOBS)
            .try_collect::<Vec<()>>()
            .await;
        fetched.map(|_| ())
    }
}

/// How many base layers are fetched at the same time.
const FETCH_JOBS: usize = 4;

/// A base layer's descriptor as the manifest gets it: as the base had it (annotations
/// and URLs kept, strata's and containerd's internal annotations dropped), its media
/// type translated when the output uses the other family (OCI vs Docker), as
/// BuildKit does.
fn base_layer_descriptor(desc: &Descriptor, types: MediaTypes) -> Result<Descriptor> {
    let mut out = desc.clone();
    out.platform = None;
    out.annotations.retain(|k, _| {
        // An eStargz layer's TOC digest is for every snapshotter that lazily pulls it.
        k == annotations::ESTARGZ_TOC_DIGEST
            || !k.starts_with("containerd.io/")
                && !k.starts_with("strata.io/")
                && !k.starts_with("buildkit/")
    });
    let oci_family = desc.media_type.starts_with("application/vnd.oci.");
    if oci_family != types.oci {
        let compression =
            Compression::from_layer_media_type(&desc.media_type).ok_or_else(|| {
                Error::InvalidContent {
                    digest: desc.digest.to_string(),
                    reason: format!("base layer media type {:?} is not a layer", desc.media_type),
                }
            })?;
        out.media_type = compression
            .layer_media_type(types.oci)
            .ok_or(Error::UnsupportedCompression {
                compression,
                media_types: "Docker",
            })?
            .to_string();
    }
    Ok(out)
}

/// What [`ImageWriter::commit_leased`] wrote.
struct Written {
    descriptor: Descriptor,
    config_digest: Option<Digest>,
    images: Vec<PlatformImage>,
    attestations: Vec<PlatformImage>,
    remote_blobs: BTreeMap<Digest, BlobLayer>,
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
        if !types.oci && opts.compression.layer_media_type(false).is_none() {
            return Err(Error::UnsupportedCompression {
                compression: opts.compression,
                media_types: "Docker",
            });
        }
        let images = source.checked_images()?;
        // Attestations force an index (BuildKit: inline-only ones only with
        // `attestation-inline`); without an index, the inline-only ones are dropped.
        let multi = source.is_multi_platform()
            || images
                .iter()
                .any(|i| i.forces_index(opts.attestation_inline));
        if multi && !types.oci && images.iter().any(PlatformSource::has_attestations) {
            return Err(Error::InvalidOption {
                key: "oci-mediatypes".into(),
                value: "false".into(),
                reason: "attestations need OCI media types (Docker's have no attestation manifest)"
                    .into(),
            });
        }
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
            Ok(written) => Ok(CommittedImage {
                descriptor: written.descriptor,
                config_digest: written.config_digest,
                images: written.images,
                attestations: written.attestations,
                lease,
                remote_blobs: written.remote_blobs,
            }),
            // Nothing written is needed any more: the lease goes before the error does.
            Err(e) => lease.release_after(Err(e)).await,
        }
    }

    /// [`ImageWriter::commit`], then fetches the base layers the store does not have
    /// ([`CommittedImage::fetch_remote_blobs`]): what outputs that read every blob from
    /// the store (image records, OCI layouts, docker archives) commit.
    pub async fn commit_local(
        &self,
        source: &Source,
        opts: &ImageOptions,
        progress: &Progress,
    ) -> Result<CommittedImage> {
        let mut committed = self.commit(source, opts, progress).await?;
        match committed
            .fetch_remote_blobs(&self.ctx.content, progress)
            .await
        {
            Ok(()) => Ok(committed),
            Err(e) => committed.lease.release_after(Err(e)).await,
        }
    }

    /// The part of [`ImageWriter::commit`] that writes under `lease`: layers, configs,
    /// manifests and the index; returns the root, its config digest (single platform),
    /// every platform's image, and the base layers the store does not have.
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
    ) -> Result<Written> {
        let store = self.ctx.content.with_lease(lease);
        let key = layers::blob_key(opts.compression, opts.source_date_epoch, opts);

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

        let remote_blobs = self.remote_blobs(&chains, lease).await?;
        let mut committed = Vec::new();
        let mut attested = Vec::new();
        for ((img, config), chain) in images.iter().zip(configs).zip(chains) {
            let (mut image, layers) = self
                .commit_manifest(&store, lease, img, config, &chain, opts, types, progress)
                .await?;
            if multi && image.platform.is_none() {
                // A single image in an index (forced by its attestations) needs a
                // platform: its config's.
                image.platform = Some(img.effective_platform());
                image.manifest.platform = image.platform.clone();
            }
            if multi && img.has_attestations() {
                attested.push(
                    self.commit_attestations(&store, lease, img, &image, layers, opts, progress)
                        .await?,
                );
            }
            committed.push(image);
        }

        let (descriptor, config_digest) = if multi {
            // As BuildKit: the attestation manifests after every image manifest, the
            // GC labels numbered on through them.
            let manifests: Vec<Descriptor> = (committed.iter().chain(&attested))
                .map(|c| c.manifest.clone())
                .collect();
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
        Ok(Written {
            descriptor,
            config_digest,
            images: committed,
            attestations: attested,
            remote_blobs,
        })
    }

    /// The base layers the chains use as they came whose blobs the store does not
    /// have (each added to the lease first, so a present one cannot be collected).
    async fn remote_blobs(
        &self,
        chains: &[Vec<(ImmutableRef, BlobInfo)>],
        lease: &str,
    ) -> Result<BTreeMap<Digest, BlobLayer>> {
        let mut remote = BTreeMap::new();
        for (r, info) in chains.iter().flatten() {
            let Some(layer) = r.blob_layer() else {
                continue;
            };
            if layer.descriptor.digest != info.digest || remote.contains_key(&info.digest) {
                continue;
            }
            self.hold(lease, &info.digest).await?;
            match self.ctx.content.info(&info.digest).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    remote.insert(info.digest.clone(), layer.clone());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(remote)
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
    ) -> Result<(PlatformImage, Vec<GeneratedLayer>)> {
        let empty = strata_differ::empty_layer_diff_id();
        // A base image's layers are kept as they are, even an empty one.
        let metas: Vec<LayerMeta> = chain
            .iter()
            .map(|(r, b)| {
                let base = r.blob_layer();
                LayerMeta {
                    history: base.and_then(|l| l.history.clone()),
                    ..LayerMeta::new(
                        r.description(),
                        r.created_at(),
                        base.is_none() && b.diff_id == empty,
                    )
                }
            })
            .collect();
        let normalized = normalize(history_of(&config), &metas);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut kept_refs = Vec::new();
        for &i in &normalized.kept_layers {
            let (r, info) = &chain[i];
            kept_refs.push(r.clone());
            if let Some(layer) = r
                .blob_layer()
                .filter(|l| l.descriptor.digest == info.digest)
            {
                layers.push(base_layer_descriptor(&layer.descriptor, types)?);
                diff_ids.push(info.diff_id.clone());
                continue;
            }
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
            let mut desc = Descriptor::new(media_type, info.digest.clone(), info.size);
            desc.annotations = info.annotations.clone();
            layers.push(desc);
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
        let mut annotations = opts.annotations.manifest_for(img.platform.as_ref());
        if let Some(base) = &img.base {
            for (k, v) in [
                (annotations::BASE_NAME, base.name.clone()),
                (annotations::BASE_DIGEST, base.digest.to_string()),
            ] {
                annotations.entry(k.to_string()).or_insert(v);
            }
        }
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
        let generated = (layers.iter().zip(&diff_ids).zip(kept_refs))
            .map(|((descriptor, diff_id), layer_ref)| GeneratedLayer {
                descriptor: descriptor.clone(),
                diff_id: diff_id.clone(),
                layer_ref,
            })
            .collect();
        let image = PlatformImage {
            platform: img.platform.clone(),
            manifest,
            config: config_desc,
            layers,
        };
        Ok((image, generated))
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
