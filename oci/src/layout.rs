//! The OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): where a
//! blob lives and how an image is named in `index.json`. The content store's root and
//! the `oci` output are both layouts; both name their entries here.

use serde_json::{json, Value};

use crate::{annotations, media_types, Descriptor, Digest};

/// The name of the file marking a directory as an OCI layout.
pub const LAYOUT_FILE: &str = "oci-layout";
/// The content of [`LAYOUT_FILE`].
pub const LAYOUT_FILE_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The name of the layout's index.
pub const INDEX_FILE: &str = "index.json";

/// A blob's path inside a layout, relative to its root: `blobs/<algorithm>/<hex>`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// What an `index.json` entry's `org.opencontainers.image.ref.name` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefName {
    /// The tag part of the name (`example.com/app:v1` → `v1`; a name without a tag or
    /// with a digest is kept whole), as BuildKit's `oci` exporter writes it.
    Tag,
    /// The whole name, so a store's root can be read as `oci:ROOT:NAME` for any record.
    FullName,
}

/// The `index.json` entry naming `target` as `name`: `target` with the ref-name
/// annotation (per `ref_name`) and containerd's full-name annotation.
pub fn index_entry(target: &Descriptor, name: &str, ref_name: RefName) -> Descriptor {
    let mut entry = target.clone();
    let shown = match ref_name {
        RefName::Tag => tag_of(name),
        RefName::FullName => name,
    };
    entry
        .annotations
        .insert(annotations::REF_NAME.to_string(), shown.to_string());
    entry.annotations.insert(
        annotations::CONTAINERD_IMAGE_NAME.to_string(),
        name.to_string(),
    );
    entry
}

/// The `index.json` document listing `manifests`.
pub fn index(manifests: &[Descriptor]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    })
}

fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) if !name.contains('@') => tag,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        let d = Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(b""), 0);
        let tag = index_entry(&d, "localhost:5000/a/b:v1", RefName::Tag);
        assert_eq!(tag.annotations[annotations::REF_NAME], "v1");
        assert_eq!(
            tag.annotations[annotations::CONTAINERD_IMAGE_NAME],
            "localhost:5000/a/b:v1"
        );
        let untagged = index_entry(&d, "localhost:5000/a/b", RefName::Tag);
        assert_eq!(
            untagged.annotations[annotations::REF_NAME],
            "localhost:5000/a/b"
        );
        let full = index_entry(&d, "a/b:v1", RefName::FullName);
        assert_eq!(full.annotations[annotations::REF_NAME], "a/b:v1");
        assert_eq!(
            blob_path(&d.digest),
            format!("blobs/sha256/{}", d.digest.hex())
        );
    }
}
