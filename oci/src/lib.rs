//! # strata-oci
//!
//! The one place for the OCI image spec in strata: [`Digest`]s (and a streaming
//! [`Digester`]), [`Descriptor`]s and [`Platform`]s, [`media_types`] and what kind of
//! document each names, layer [`Compression`]s, canonical JSON for everything that is
//! hashed ([`to_canonical_vec`]), reading manifests and indexes ([`ImageNode`]) and
//! walking an image's graph ([`walk_image`]),
//! containerd's GC [`labels`], the [`annotations`] strata writes, and the naming of an
//! OCI image [`layout`]. Every other crate takes these from here.
//!
//! strata keeps its own descriptor type rather than `oci_spec::image::Descriptor`
//! because the latter stores annotations in a `HashMap`, whose iteration order would
//! leak into the bytes of manifests we hash.
//!
//! ```
//! use strata_oci::{layout, media_types, to_canonical_vec, Compression, Descriptor, Digest,
//!     ImageNode};
//!
//! let config = br#"{"architecture":"amd64","os":"linux"}"#;
//! let config = Descriptor::new(media_types::OCI_CONFIG, Digest::sha256_of(config), config.len() as u64);
//! let layer_type = Compression::Zstd.layer_media_type(true).unwrap();
//! let layer = Descriptor::new(layer_type, Digest::sha256_of(b"tar"), 3);
//! let manifest = to_canonical_vec(&serde_json::json!({
//!     "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
//!     "config": config, "layers": [layer],
//! })).unwrap();
//! let desc = Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(&manifest), manifest.len() as u64);
//! let node = ImageNode::parse(&desc, &manifest).unwrap();
//! assert_eq!(node.children(), vec![&config, &layer]);
//! assert_eq!(layout::blob_path(&desc.digest), format!("blobs/sha256/{}", desc.digest.hex()));
//! ```

#![deny(missing_docs)]

pub mod annotations;
mod compression;
mod config;
mod descriptor;
mod digest;
mod image;
mod json;
pub mod labels;
pub mod layout;
pub mod media_types;
mod walk;

pub use compression::Compression;
pub use config::{config_diff_ids, config_platform, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};
pub use descriptor::{Descriptor, Platform};
pub use digest::{chain_id, Digest, Digester, InvalidDigest};
pub use image::{ImageNode, Index, InvalidManifest, Manifest};
pub use json::to_canonical_vec;
pub use walk::{walk_image, BlobRole, GraphNode, ImageGraph, WalkError, MAX_INDEX_DEPTH};
