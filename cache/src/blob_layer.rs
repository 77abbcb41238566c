//! Blob-backed refs: [`BlobLayer`] (a base image's layer as its manifest and config
//! describe it) and [`Materializer`] (what turns a chain of them into a tree, once,
//! keyed by chainID).

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use strata_content::{fetch_blob, BlobProvider, ContentStore, Labels as ContentLabels};
use strata_differ::{Applier, ApplyOptions};
use strata_oci::{annotations, chain_id, labels, Compression, Descriptor, Digest};
use strata_snapshotter::{unique_suffix, Kind, Labels, Mount, Snapshotter};

use crate::error::RefError;

/// Prefix of the keys of extractions in progress: `extract-<pid>-…-<chainID hex>`.
const EXTRACT_PREFIX: &str = "extract-";

/// True for the key of an extraction whose process is gone.
pub(crate) fn is_dead_extraction(key: &str) -> bool {
    key.strip_prefix(EXTRACT_PREFIX)
        .is_some_and(strata_snapshotter::left_by_dead_process)
}

/// A layer known by its blob: a base image's layer, exported as it came (byte for
/// byte) and extracted only when something needs its tree.
#[derive(Clone)]
pub struct BlobLayer {
    /// The layer's descriptor as the base manifest has it (media type, digest, size,
    /// annotations, urls).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (the base config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// The base config's history entry for this layer, kept as JSON so fields strata
    /// does not know survive.
    pub history: Option<Map<String, Value>>,
    /// Where the blob is fetched from when the content store does not have it.
    pub provider: Arc<dyn BlobProvider>,
}

impl fmt::Debug for BlobLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobLayer")
            .field("digest", &self.descriptor.digest.to_string())
            .field("media_type", &self.descriptor.media_type)
            .field("diff_id", &self.diff_id.to_string())
            .field("provider", &self.provider.name())
            .finish()
    }
}

impl BlobLayer {
    /// Applies the layer onto `mounts` with `applier` (its blob already in the
    /// applier's store) and checks what was applied hashes to its diffID:
    /// [`RefError::Apply`] or [`RefError::DiffIdMismatch`], naming the layer.
    pub(crate) async fn apply_checked(
        &self,
        applier: &dyn Applier,
        mounts: &[Mount],
        options: &ApplyOptions,
    ) -> Result<(), RefError> {
        let actual = applier
            .apply_with(&self.descriptor, mounts, options)
            .await
            .map_err(|source| RefError::Apply {
                layer: self.descriptor.digest.clone(),
                source,
            })?;
        if actual != self.diff_id {
            return Err(RefError::DiffIdMismatch {
                layer: self.descriptor.digest.clone(),
                expected: self.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The blob's compression, from its media type (eStargz: a gzip layer with the
    /// `containerd.io/snapshot/stargz/toc.digest` annotation; zstd:chunked: a zstd layer
    /// with the `io.github.containers.zstd-chunked.manifest-checksum` annotation); `None`
    /// for a media type that is not a layer strata can read.
    pub fn compression(&self) -> Option<Compression> {
        let compression = Compression::from_layer_media_type(&self.descriptor.media_type)?;
        let notes = &self.descriptor.annotations;
        let toc = notes.contains_key(annotations::ESTARGZ_TOC_DIGEST);
        let manifest = notes.contains_key(annotations::ZSTD_CHUNKED_MANIFEST_CHECKSUM);
        Some(match compression {
            Compression::Gzip if toc => Compression::Estargz,
            Compression::Zstd if manifest => Compression::ZstdChunked,
            other => other,
        })
    }

    /// Fetches the blob from its provider into `store` unless the store has it,
    /// verified while it streams, labelled with its diffID (and its distribution
    /// source). Returns `true` when it was fetched. Errors name the layer and the
    /// provider.
    pub async fn fetch_into(&self, store: &Arc<dyn ContentStore>) -> Result<bool, RefError> {
        let mut labels = ContentLabels::new();
        labels.insert(labels::UNCOMPRESSED.to_string(), self.diff_id.to_string());
        fetch_blob(store, self.provider.as_ref(), &self.descriptor, labels)
            .await
            .map_err(|source| RefError::Fetch {
                layer: self.descriptor.digest.clone(),
                provider: self.provider.name(),
                source,
            })
    }

    /// The history entry's `created_by`, empty if none.
    pub(crate) fn created_by(&self) -> String {
        self.history
            .as_ref()
            .and_then(|h| h.get("created_by"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// The history entry's `created` time; the epoch when absent or unreadable.
    pub(crate) fn created(&self) -> std::time::SystemTime {
        self.history
            .as_ref()
            .and_then(|h| h.get("created"))
            .and_then(Value::as_str)
            .and_then(strata_content::parse_rfc3339)
            .and_then(|nanos| i64::try_from(nanos).ok())
            .map_or(std::time::UNIX_EPOCH, strata_content::from_unix_nanos)
    }
}

/// What turns blob-backed refs into trees: blobs are fetched from their provider into
/// `store` (verified), applied by `applier` into `snapshotter`, and committed under
/// their chainID, so each chain is extracted once and reused by every later export,
/// as containerd's unpacker does.
#[derive(Clone)]
pub struct Materializer {
    /// The content store blobs are fetched into (and read from by the applier).
    pub store: Arc<dyn ContentStore>,
    /// Unpacks a layer blob onto a tree.
    pub applier: Arc<dyn Applier>,
    /// Where extracted chains live, one committed snapshot per chainID.
    pub snapshotter: Arc<dyn Snapshotter>,
}

impl fmt::Debug for Materializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Materializer").finish_non_exhaustive()
    }
}

impl Materializer {
    /// Extracts the chain `layers` (bottom first) into the snapshotter, each layer
    /// once, as committed snapshots named by chainID (what `ctr run` and containerd's
    /// unpacker look for); returns the top's chainID, `None` for no layers.
    pub async fn unpack(&self, layers: &[BlobLayer]) -> Result<Option<Digest>, RefError> {
        let mut parent: Option<Digest> = None;
        for layer in layers {
            let id = chain_id(parent.as_ref(), &layer.diff_id);
            let parent_name = parent.as_ref().map(Digest::to_string);
            self.extract(layer, &id, parent_name.as_deref()).await?;
            parent = Some(id);
        }
        Ok(parent)
    }

    /// Extracts `layer` onto the committed snapshot `parent` (the chain below it,
    /// already extracted) as the committed snapshot `chain_id`, unless it exists. The
    /// blob is fetched first; its diffID must be the one the config gives, or nothing
    /// is committed.
    pub(crate) async fn extract(
        &self,
        layer: &BlobLayer,
        chain_id: &Digest,
        parent: Option<&str>,
    ) -> Result<(), RefError> {
        let name = chain_id.to_string();
        match self.snapshotter.stat(&name).await {
            Ok(info) if info.kind == Kind::Committed => return Ok(()),
            Ok(info) => {
                return Err(RefError::Snapshot(
                    strata_snapshotter::Error::FailedPrecondition {
                        key: name,
                        reason: format!("is {:?}, not a committed chain", info.kind),
                    },
                ))
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        layer.fetch_into(&self.store).await?;
        let key = format!("{EXTRACT_PREFIX}{}-{}", unique_suffix(), chain_id.hex());
        let mounts = self
            .snapshotter
            .prepare(&key, parent, Labels::new())
            .await?;
        let applied = layer
            .apply_checked(self.applier.as_ref(), &mounts, &ApplyOptions::default())
            .await;
        let committed = match applied {
            Ok(()) => self
                .snapshotter
                .commit(&name, &key, Labels::new())
                .await
                .map_err(RefError::from),
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(rm) = self.snapshotter.remove(&key).await {
                    tracing::debug!(snapshot = %key, error = %rm, "removing a failed extraction");
                }
                match e {
                    // Another export extracted the same chain meanwhile.
                    RefError::Snapshot(ref s) if s.is_already_exists() => Ok(()),
                    e => Err(e),
                }
            }
        }
    }
}
