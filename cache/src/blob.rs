//! [`BlobKey`] and [`BlobInfo`]: the layer blobs computed for a snapshot, kept in its
//! labels (one `strata.io/blob.<compression>[.epoch-<seconds>]` label per key, its value
//! the JSON of the info) so a later export, even by another process, reuses them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_oci::{Compression, Digest};
use strata_snapshotter::Labels;

/// Prefix of the labels holding a snapshot's computed blobs, one per [`BlobKey`].
pub(crate) const LABEL_BLOB_PREFIX: &str = "strata.io/blob.";

/// Which variant of a layer blob: its compression, and the `source_date_epoch` its
/// mtimes were clamped to (a clamped layer is a different blob).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey {
    /// The blob's compression.
    pub compression: Compression,
    /// The epoch (seconds) mtimes were clamped to, if any.
    pub source_date_epoch: Option<i64>,
}

impl BlobKey {
    /// The snapshot label recording the blob of this key.
    pub(crate) fn label(&self) -> String {
        match self.source_date_epoch {
            None => format!("{LABEL_BLOB_PREFIX}{}", self.compression),
            Some(e) => format!("{LABEL_BLOB_PREFIX}{}.epoch-{e}", self.compression),
        }
    }
}

/// The layer blob computed for a snapshot (its diff against its parent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// Digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// Digest of the (compressed) blob in the content store.
    pub digest: Digest,
    /// The blob's media type (OCI form).
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// Annotations the blob's descriptor carries in a manifest (an eStargz blob's TOC
    /// digest and uncompressed size); empty for most blobs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The blob infos recorded in a snapshot's `labels`; labels that do not parse are
/// skipped (a newer strata's keys, or a damaged value: the blob is computed again).
pub(crate) fn parse_blob_labels(labels: &Labels) -> BTreeMap<BlobKey, BlobInfo> {
    let mut out = BTreeMap::new();
    for (k, v) in labels.range(LABEL_BLOB_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(LABEL_BLOB_PREFIX) else {
            break;
        };
        let (comp, epoch) = match rest.split_once(".epoch-") {
            Some((c, e)) => match e.parse::<i64>() {
                Ok(e) => (c, Some(e)),
                Err(_) => continue,
            },
            None => (rest, None),
        };
        let (Some(compression), Ok(info)) = (
            Compression::parse(comp),
            serde_json::from_str::<BlobInfo>(v),
        ) else {
            continue;
        };
        out.insert(
            BlobKey {
                compression,
                source_date_epoch: epoch,
            },
            info,
        );
    }
    out
}
