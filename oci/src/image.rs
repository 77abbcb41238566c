//! Reading manifests and indexes: the typed documents and the children each names,
//! which is what a push, an inspection or any other walk of an image graph follows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{media_types, Descriptor, Digest};

/// An image manifest (OCI or Docker schema2), as read: the fields strata follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker), as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// The manifests (or nested indexes) it lists.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The index's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A manifest or index read from its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageNode {
    /// An index or manifest list; every entry is a manifest or an index.
    Index(Index),
    /// A manifest (boxed: a descriptor is much larger than an index's vector).
    Manifest(Box<Manifest>),
}

/// A document that is not the manifest or index its descriptor says it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest {digest}: {reason}")]
pub struct InvalidManifest {
    /// The digest of the document at fault.
    pub digest: Digest,
    /// What is wrong with it.
    pub reason: String,
}

impl ImageNode {
    /// Parses the document `desc` points at (`bytes`, already verified against it) by
    /// its media type. An index entry that is neither a manifest nor an index, a media
    /// type that is neither, or JSON of the wrong shape is an [`InvalidManifest`]
    /// naming `desc`'s digest.
    pub fn parse(desc: &Descriptor, bytes: &[u8]) -> Result<ImageNode, InvalidManifest> {
        let bad = |reason: String| InvalidManifest {
            digest: desc.digest.clone(),
            reason,
        };
        if media_types::is_index(&desc.media_type) {
            let index: Index =
                serde_json::from_slice(bytes).map_err(|e| bad(format!("not an index: {e}")))?;
            if let Some(child) = index.manifests.iter().find(|c| {
                !media_types::is_index(&c.media_type) && !media_types::is_manifest(&c.media_type)
            }) {
                return Err(bad(format!(
                    "entry {} has media type {:?}, not a manifest or index",
                    child.digest, child.media_type
                )));
            }
            Ok(ImageNode::Index(index))
        } else if media_types::is_manifest(&desc.media_type) {
            serde_json::from_slice(bytes)
                .map(|m| ImageNode::Manifest(Box::new(m)))
                .map_err(|e| bad(format!("not a manifest: {e}")))
        } else {
            Err(bad(format!(
                "media type {:?} is not a manifest or index",
                desc.media_type
            )))
        }
    }

    /// The descriptors this node references, in document order (a manifest's config
    /// first, then its layers; an index's entries).
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            ImageNode::Index(i) => i.manifests.iter().collect(),
            ImageNode::Manifest(m) => std::iter::once(&m.config).chain(&m.layers).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    #[test]
    fn parses_by_media_type_and_lists_children() {
        let config = desc(media_types::OCI_CONFIG, b"{}");
        let layer = desc(media_types::OCI_LAYER_GZIP, b"l");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "config": config, "layers": [layer]
        }))
        .unwrap();
        let m = desc(media_types::OCI_MANIFEST, &manifest);
        let node = ImageNode::parse(&m, &manifest).unwrap();
        assert_eq!(node.children(), vec![&config, &layer]);

        let index = serde_json::to_vec(&serde_json::json!({"manifests": [m]})).unwrap();
        let i = desc(media_types::OCI_INDEX, &index);
        assert_eq!(ImageNode::parse(&i, &index).unwrap().children(), vec![&m]);
    }

    #[test]
    fn refuses_what_is_not_a_manifest_naming_it() {
        let layer = desc(media_types::OCI_LAYER, b"x");
        let index = serde_json::to_vec(&serde_json::json!({"manifests": [layer]})).unwrap();
        let i = desc(media_types::OCI_INDEX, &index);
        let err = ImageNode::parse(&i, &index).unwrap_err();
        assert_eq!(err.digest, i.digest);
        assert!(err.reason.contains("not a manifest or index"), "{err}");
        let m = desc(media_types::OCI_MANIFEST, b"[]");
        assert!(ImageNode::parse(&m, b"[]").is_err());
        assert!(ImageNode::parse(&layer, b"x").is_err());
    }
}
