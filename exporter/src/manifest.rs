//! Manifests and indexes (OCI or Docker schema2) and the GC labels that tie them to
//! what they reference.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use strata_oci::labels::gc_ref_label;
use strata_oci::{media_types, Descriptor, Digest};

/// Media types of one flavour (OCI or Docker schema2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MediaTypes {
    /// True for OCI, false for Docker schema2.
    pub oci: bool,
}

impl MediaTypes {
    /// The manifest media type.
    pub(crate) fn manifest(self) -> &'static str {
        if self.oci {
            media_types::OCI_MANIFEST
        } else {
            media_types::DOCKER_MANIFEST
        }
    }

    /// The index / manifest list media type.
    pub(crate) fn index(self) -> &'static str {
        if self.oci {
            media_types::OCI_INDEX
        } else {
            media_types::DOCKER_MANIFEST_LIST
        }
    }

    /// The config media type.
    pub(crate) fn config(self) -> &'static str {
        if self.oci {
            media_types::OCI_CONFIG
        } else {
            media_types::DOCKER_CONFIG
        }
    }
}

/// The manifest JSON of `config` and `layers`.
pub(crate) fn manifest_json(
    types: MediaTypes,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": types.manifest(),
        "config": config,
        "layers": layers,
    });
    if !annotations.is_empty() {
        m["annotations"] = json!(annotations);
    }
    m
}

/// The GC labels of a manifest: `.0` = config, `.N` = layer N (1-based).
pub(crate) fn manifest_labels(config: &Digest, layers: &[Descriptor]) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(gc_ref_label(0), config.to_string());
    for (i, layer) in layers.iter().enumerate() {
        l.insert(gc_ref_label(i + 1), layer.digest.to_string());
    }
    l
}

/// The index / manifest list JSON of `manifests` (descriptors with platforms).
pub(crate) fn index_json(
    types: MediaTypes,
    manifests: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": types.index(),
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        m["annotations"] = json!(annotations);
    }
    m
}

/// The GC labels of an index: `.i` = manifest i.
pub(crate) fn index_labels(manifests: &[Descriptor]) -> BTreeMap<String, String> {
    manifests
        .iter()
        .enumerate()
        .map(|(i, m)| (gc_ref_label(i), m.digest.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_number_config_then_layers() {
        let c = Digest::sha256_of(b"c");
        let l1 = Descriptor::new(media_types::OCI_LAYER_GZIP, Digest::sha256_of(b"1"), 1);
        let l2 = Descriptor::new(media_types::OCI_LAYER_GZIP, Digest::sha256_of(b"2"), 1);
        let labels = manifest_labels(&c, &[l1.clone(), l2.clone()]);
        assert_eq!(labels["containerd.io/gc.ref.content.0"], c.to_string());
        assert_eq!(
            labels["containerd.io/gc.ref.content.1"],
            l1.digest.to_string()
        );
        assert_eq!(
            labels["containerd.io/gc.ref.content.2"],
            l2.digest.to_string()
        );
        let il = index_labels(&[l1.clone(), l2.clone()]);
        assert_eq!(il["containerd.io/gc.ref.content.0"], l1.digest.to_string());
        assert_eq!(il["containerd.io/gc.ref.content.1"], l2.digest.to_string());
    }
}
