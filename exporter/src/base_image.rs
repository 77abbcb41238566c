//! [`BaseImageRef`]: the base image an export starts from, as its manifest
//! annotations and its provenance name it.

use strata_oci::Digest;

/// The base image an image is built on, as its manifest annotations name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImageRef {
    /// The base's reference (`registry.example/library/debian:12`).
    pub name: String,
    /// The digest of the base's manifest.
    pub digest: Digest,
}
