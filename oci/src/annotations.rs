//! Annotation keys strata reads or writes.

/// On an OCI layout's `index.json` entry: the reference the entry is known by
/// (`skopeo … oci:DIR:REF`, `umoci … --image DIR:REF`). The `layout` module says
/// what strata puts in it.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// On an OCI layout's `index.json` entry: the full image name (containerd's
/// `ctr images import` names the image by it).
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// On a manifest built on a base image: the base image's reference (as crane and ko
/// set it).
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// On a manifest built on a base image: the digest of the base image's manifest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
