//! The layer blobs of an export: every link of every chain computed concurrently
//! (bounded by the job limit, each shared ref once), cached blobs reused, blobs of
//! another compression reused or converted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use strata_cache::{BlobInfo, BlobKey, ImmutableRef};
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
        ] {
            if c == key.compression {
                continue;
            }
            let k = BlobKey {
                compression: c,
                source_date_epoch: key.source_date_epoch,
            };
            if let Some(info) = self.cached_blob(r, k, lease).await? {
                other = Some((c, info));
                break;
            }
        }
        let copts = |task: &ProgressTask| {
            let t = task.clone();
            let progress_fn: ProgressFn = Arc::new(move |n| t.update(n, None));
            CompareOptions {
                compression: key.compression,
                level: opts.compression_level,
                source_date_epoch: key.source_date_epoch,
                threads: None,
                media_type: None,
                // The differ names the ingest, and aborts it on errors and drops.
                reference: None,
                lease: Some(lease.to_string()),
                labels: BTreeMap::new(),
                progress: Some(progress_fn),
            }
        };
        if let Some((c, info)) = &other {
            if !opts.force_compression && (opts.oci_media_types || *c != Compression::Zstd) {
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
                strata_differ::convert_layer(store, &src, &copts(task)).await
            }
            None => {
                let lower = match r.parent() {
                    Some(p) => p.mounts().await?,
                    None => Vec::new(),
                };
                let upper = r.mounts().await?;
                self.ctx.differ.compare(&lower, &upper, &copts(task)).await
            }
        };
        let info = blob_info(blob?);
        r.set_blob(key, info.clone()).await?;
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

/// What a ref records about the layer blob computed for it.
fn blob_info(blob: LayerBlob) -> BlobInfo {
    BlobInfo {
        diff_id: blob.diff_id,
        digest: blob.descriptor.digest,
        media_type: blob.descriptor.media_type,
        size: blob.descriptor.size,
    }
}
