//! [`BlobKey`] and [`BlobInfo`]: the layer blobs computed for a snapshot, kept in its
//! labels (one `strata.io/blob.<compression>[.chunk-<bytes>][.prefetch-<hex>][.epoch-<seconds>]`
//! label per key, its value the JSON of the info) so a later export, even by another
//! process, reuses them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_oci::{Compression, Digest};
use strata_snapshotter::Labels;

/// Prefix of the labels holding a snapshot's computed blobs, one per [`BlobKey`].
pub(crate) const LABEL_BLOB_PREFIX: &str = "strata.io/blob.";

/// Which variant of a layer blob: its compression, the `source_date_epoch` its mtimes
/// were clamped to (a clamped layer is a different blob) and, for eStargz, the options
/// that change its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey {
    /// The blob's compression.
    pub compression: Compression,
    /// The epoch (seconds) mtimes were clamped to, if any.
    pub source_date_epoch: Option<i64>,
    /// eStargz options (the default for every other compression).
    pub estargz: EstargzVariant,
}

/// The eStargz options a blob was written with: another chunk size or prefetch list
/// is another blob. [`EstargzVariant::default`]: BuildKit's defaults (4 MiB chunks, no
/// landmarks), whose key is the plain `estargz` one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EstargzVariant {
    /// The payload chunk size; `None` for the default
    /// ([`strata_differ::DEFAULT_ESTARGZ_CHUNK_SIZE`]).
    chunk_size: Option<u64>,
    /// The first 64 bits of the sha256 of the prioritized-files list (each name and a
    /// NUL); `None`: no landmarks.
    prioritized_files: Option<u64>,
}

impl EstargzVariant {
    /// The variant of `chunk_size` (`None`: the default) and `prioritized_files`
    /// (`None`: no landmarks; see `strata_differ::CompareOptions`).
    pub fn new(chunk_size: Option<u64>, prioritized_files: Option<&[String]>) -> Self {
        EstargzVariant {
            chunk_size: chunk_size.filter(|c| *c != strata_differ::DEFAULT_ESTARGZ_CHUNK_SIZE),
            prioritized_files: prioritized_files.map(|files| {
                let mut list = Vec::new();
                for f in files {
                    list.extend_from_slice(f.as_bytes());
                    list.push(0);
                }
                let digest = strata_oci::Digest::sha256_of(&list);
                u64::from_str_radix(&digest.hex()[..16], 16).unwrap_or_default()
            }),
        }
    }
}

impl BlobKey {
    /// The snapshot label recording the blob of this key.
    pub(crate) fn label(&self) -> String {
        let mut label = format!("{LABEL_BLOB_PREFIX}{}", self.compression);
        if let Some(c) = self.estargz.chunk_size {
            label.push_str(&format!(".chunk-{c}"));
        }
        if let Some(p) = self.estargz.prioritized_files {
            label.push_str(&format!(".prefetch-{p:016x}"));
        }
        if let Some(e) = self.source_date_epoch {
            label.push_str(&format!(".epoch-{e}"));
        }
        label
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

/// The key of a label (past its prefix): `<compression>`, then `.chunk-<bytes>`,
/// `.prefetch-<hex>` and `.epoch-<seconds>` when they apply.
fn parse_key(label: &str) -> Option<BlobKey> {
    let mut parts = label.split('.');
    let mut key = BlobKey {
        compression: Compression::parse(parts.next()?)?,
        source_date_epoch: None,
        estargz: EstargzVariant::default(),
    };
    for part in parts {
        if let Some(c) = part.strip_prefix("chunk-") {
            key.estargz.chunk_size = Some(c.parse().ok()?);
        } else if let Some(p) = part.strip_prefix("prefetch-") {
            key.estargz.prioritized_files = Some(u64::from_str_radix(p, 16).ok()?);
        } else if let Some(e) = part.strip_prefix("epoch-") {
            key.source_date_epoch = Some(e.parse().ok()?);
        } else {
            return None;
        }
    }
    (key.label() == format!("{LABEL_BLOB_PREFIX}{label}")).then_some(key)
}

/// The blob infos recorded in a snapshot's `labels`; labels that do not parse are
/// skipped (a newer strata's keys, or a damaged value: the blob is computed again).
pub(crate) fn parse_blob_labels(labels: &Labels) -> BTreeMap<BlobKey, BlobInfo> {
    let mut out = BTreeMap::new();
    for (k, v) in labels.range(LABEL_BLOB_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(LABEL_BLOB_PREFIX) else {
            break;
        };
        let Some(key) = parse_key(rest) else {
            continue;
        };
        let Ok(info) = serde_json::from_str::<BlobInfo>(v) else {
            continue;
        };
        out.insert(key, info);
    }
    out
}
