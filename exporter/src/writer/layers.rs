//! The layer blobs of an export: every link of every chain computed concurrently
//! (bounded by the job limit, each shared ref once), cached blobs reused, blobs of
//! another compression reused or converted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use strata_cache::{BlobInfo, BlobKey, BlobLayer, EstargzVariant, ImmutableRef};
use strata_differ::{CompareOptions, LayerBlob, ProgressFn};
use strata_oci::{Compression, Descriptor};
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::{ImageWriter, Inflight};
use crate::error::{Error, Result};
use crate::options::ImageOptions;
use crate::progress::{Progress, ProgressTask};
use crate::source::PlatformSource;

impl ImageWriter {
    /// The blobs of `img`'s layer chain, base first, each computed (or reused) once
    /// per commit.
    pub(super) async fn export_chain(
        &self,
        img: &PlatformSource,
        key: BlobKey,
        opts: &ImageOptions,
        lease: &str,
        inflight: &Inflight,
        progress: &Progress,
    ) -> Result<Vec<(ImmutableRef, BlobInfo)>> {
        let Some(top) = &img.top else {
            return Ok(Vec::new());
        };
        let chain = top.chain();
        let blobs = try_join_all(
            chain
                .iter()
                .map(|r| self.layer_blob(r, key, opts, lease, inflight, progress)),
        )
        .await?;
        Ok(chain.into_iter().zip(blobs).collect())
    }

    /// The blob of one link, computed once per commit even when several platforms
    /// share the ref.
    async fn layer_blob(
        &self,
        r: &ImmutableRef,
        key: BlobKey,
        opts: &ImageOptions,
        lease: &str,
        inflight: &Inflight,
        progress: &Progress,
    ) -> Result<BlobInfo> {
        let cell = {
            let mut map = inflight
                .lock()
                .map_err(|_| Error::Interrupted("layer table poisoned".into()))?;
            map.entry((r.id().to_string(), key))
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        cell.get_or_try_init(|| self.compute_blob(r, key, opts, lease, progress))
            .await
            .cloned()
    }

    async fn compute_blob(
        &self,
        r: &ImmutableRef,
        key: BlobKey,
        opts: &ImageOptions,
        lease: &str,
        progress: &Progress,
    ) -> Result<BlobInfo> {
        let task = progress.start(
            format!("layer:{}", r.id()),
            format!("exporting layer {}", r.id()),
        );
        let result = self
            .compute_blob_inner(r, key, opts, lease, &task)
            .instrument(task.span().clone())
            .await;
        match &result {
            Ok(info) => {
                task.update(info.size, Some(info.size));
                task.complete();
            }
            Err(e) => task.fail(e),
        }
        result
    }

    async fn compute_blob_inner(
        &self,
        r: &ImmutableRef,
        key: BlobKey,
        opts: &ImageOptions,
        lease: &str,
        task: &ProgressTask,
    ) -> Result<BlobInfo> {
        if let Some(layer) = r.blob_layer() {
            return self.base_layer_blob(r, layer, key, opts, lease, task).await;
        }
        // Reuse a blob recorded on the ref when the store still has it.
        if let Some(info) = self.cached_blob(r, key, lease).await? {
            tracing::debug!(snapshot = r.id(), digest = %info.digest, "reusing layer blob");
            return Ok(info);
        }
        // A blob of the same tree in another compression: used as it is (BuildKit's
        // default, when the media types can express it), or converted with
        // force-compression (no tree walk either way).
        let mut other = None;
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Uncompressed,
            Compression::Estargz,
            Compression::ZstdChunked,
        ] {
            // An eStargz blob is a gzip one to reuse, but not a source to convert: its
            // tar goes on with the TOC entry.
            let skipped = c == Compression::Estargz && opts.force_compression;
            if c == key.compression || skipped {
                continue;
            }
            let k = blob_key(c, key.source_date_epoch, opts);
            if let Some(info) = self.cached_blob(r, k, lease).await? {
                other = Some((c, info));
                break;
            }
        }
        if let Some((c, info)) = &other {
            if !opts.force_compression && reusable(*c, opts) {
                tracing::debug!(snapshot = r.id(), digest = %info.digest, compression = %c, "reusing layer blob");
                return Ok(info.clone());
            }
        }
        let _permit = self
            .jobs
            .acquire()
            .await
            .map_err(|_| Error::Interrupted("job limiter closed".into()))?;
        let blob = match other {
            // Converted from the other compression, without walking the tree.
            Some((_, info)) => {
                let src = Descriptor::new(info.media_type.clone(), info.digest.clone(), info.size);
                let store = self.ctx.content.with_lease(lease);
                strata_differ::convert_layer(store, &src, &compare_options(key, opts, lease, task))
                    .await
            }
            None => {
                let lower = match r.parent() {
                    Some(p) => p.mounts().await?,
                    None => Vec::new(),
                };
                let upper = r.mounts().await?;
                let copts = compare_options(key, opts, lease, task);
                self.ctx.differ.compare(&lower, &upper, &copts).await
            }
        };
        let info = blob_info(blob?);
        r.set_blob(key, info.clone()).await?;
        Ok(info)
    }

    /// The blob of a base image's layer: its own, as it came (BuildKit reuses a blob
    /// of another compression unless `force-compression`), or converted to the
    /// compression asked for — fetched from its provider into the store first, and
    /// the conversion recorded on the base blob for later exports. Base layers are
    /// never rewritten for `source-date-epoch`.
    async fn base_layer_blob(
        &self,
        r: &ImmutableRef,
        layer: &BlobLayer,
        key: BlobKey,
        opts: &ImageOptions,
        lease: &str,
        task: &ProgressTask,
    ) -> Result<BlobInfo> {
        let compression = layer.compression().ok_or_else(|| Error::InvalidContent {
            digest: layer.descriptor.digest.to_string(),
            reason: format!(
                "the media type {:?} of this layer from {} is not a layer strata can read",
                layer.descriptor.media_type,
                layer.provider.name()
            ),
        })?;
        let own = BlobKey {
            compression,
            source_date_epoch: None,
            estargz: EstargzVariant::default(),
        };
        let wanted = BlobKey {
            source_date_epoch: None,
            ..key
        };
        // The directory layers' rule: reused as it is unless force-compression asks
        // for another compression or the media types cannot express it.
        if compression == key.compression
            || (!opts.force_compression && reusable(compression, opts))
        {
            return r.blob(own).ok_or_else(|| Error::InvalidContent {
                digest: layer.descriptor.digest.to_string(),
                reason: "a base layer without its blob info".into(),
            });
        }
        if let Some(info) = self.cached_blob(r, wanted, lease).await? {
            tracing::debug!(layer = %layer.descriptor.digest, digest = %info.digest, "reusing a converted base layer");
            return Ok(info);
        }
        let _permit = self
            .jobs
            .acquire()
            .await
            .map_err(|_| Error::Interrupted("job limiter closed".into()))?;
        let store = self.ctx.content.with_lease(lease);
        self.hold(lease, &layer.descriptor.digest).await?;
        layer.fetch_into(&store).await?;
        let src = Descriptor::new(
            layer.descriptor.media_type.clone(),
            layer.descriptor.digest.clone(),
            layer.descriptor.size,
        );
        let copts = compare_options(wanted, opts, lease, task);
        let info = blob_info(strata_differ::convert_layer(store, &src, &copts).await?);
        // eStargz appends its TOC to the tar, so its diffID is a new one; the source's
        // tar was checked against its `containerd.io/uncompressed` label (the base's
        // diffID, set when it was fetched) while it was converted.
        if wanted.compression != Compression::Estargz && info.diff_id != layer.diff_id {
            return Err(strata_cache::RefError::DiffIdMismatch {
                layer: layer.descriptor.digest.clone(),
                expected: layer.diff_id.clone(),
                actual: info.diff_id,
            }
            .into());
        }
        r.set_blob(wanted, info.clone()).await?;
        Ok(info)
    }

    /// The blob recorded on `r` for `key`, if the store still has it; it is added to
    /// the lease before the store is asked, so it cannot be collected in between.
    async fn cached_blob(
        &self,
        r: &ImmutableRef,
        key: BlobKey,
        lease: &str,
    ) -> Result<Option<BlobInfo>> {
        let Some(info) = r.blob(key) else {
            return Ok(None);
        };
        // Lease first, then look: a GC running between a successful look-up and the
        // lease would otherwise remove the blob we are about to reference.
        self.hold(lease, &info.digest).await?;
        match self.ctx.content.info(&info.digest).await {
            Ok(_) => Ok(Some(info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The cache key of a blob of `compression` for an export with `opts`: for eStargz,
/// with the chunk size and prefetch list that change its bytes.
pub(super) fn blob_key(
    compression: Compression,
    source_date_epoch: Option<i64>,
    opts: &ImageOptions,
) -> BlobKey {
    let estargz = match compression {
        Compression::Estargz => EstargzVariant::new(
            opts.estargz_chunk_size,
            opts.estargz_prioritized_files.as_deref(),
        ),
        _ => EstargzVariant::default(),
    };
    BlobKey {
        compression,
        source_date_epoch,
        estargz,
    }
}

/// Whether a blob of `compression` can go into the image as it is, though another
/// compression was asked for: BuildKit's default, unless the media types cannot
/// express it (zstd or zstd:chunked with Docker media types).
fn reusable(compression: Compression, opts: &ImageOptions) -> bool {
    opts.oci_media_types || !compression.is_zstd()
}

/// How the differ writes (or converts) a layer blob for `key` under `lease`, reporting
/// its bytes on `task`.
fn compare_options(
    key: BlobKey,
    opts: &ImageOptions,
    lease: &str,
    task: &ProgressTask,
) -> CompareOptions {
    let t = task.clone();
    let progress_fn: ProgressFn = Arc::new(move |n| t.update(n, None));
    CompareOptions {
        compression: key.compression,
        level: opts.compression_level,
        estargz_chunk_size: opts.estargz_chunk_size,
        estargz_prioritized_files: opts.estargz_prioritized_files.clone(),
        source_date_epoch: key.source_date_epoch,
        threads: None,
        media_type: None,
        // The differ names the ingest, and aborts it on errors and drops.
        reference: None,
        lease: Some(lease.to_string()),
        labels: BTreeMap::new(),
        progress: Some(progress_fn),
    }
}

/// What a ref records about the layer blob computed for it.
fn blob_info(blob: LayerBlob) -> BlobInfo {
    BlobInfo {
        diff_id: blob.diff_id,
        digest: blob.descriptor.digest,
        media_type: blob.descriptor.media_type,
        size: blob.descriptor.size,
        annotations: blob.descriptor.annotations,
    }
}
