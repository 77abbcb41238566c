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
/// On an index's entry: what the manifest is to the image (BuildKit's
/// `attestation-manifest`, [`ATTESTATION_MANIFEST`], for the in-toto attestations of
/// another entry).
pub const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The [`DOCKER_REFERENCE_TYPE`] of an attestation manifest: not a runnable image.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// On an attestation manifest's index entry: the digest of the image manifest (an
/// entry of the same index) its statements are about.
pub const DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// On an attestation manifest's layer: the `predicateType` of the in-toto statement
/// the layer holds.
pub const IN_TOTO_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// On an eStargz layer's descriptor: the digest of its table of contents
/// (`stargz.index.json`), which a lazy-pulling snapshotter verifies the TOC against.
pub const ESTARGZ_TOC_DIGEST: &str = "containerd.io/snapshot/stargz/toc.digest";
/// On an eStargz layer's descriptor: the size of its decompressed stream (tar, TOC
/// entry and all), for containers/storage's Stargz Store.
pub const ESTARGZ_UNCOMPRESSED_SIZE: &str = "io.containers.estargz.uncompressed-size";
/// On a zstd:chunked layer's descriptor: the digest of its zstd-compressed table of
/// contents (containers/storage `minimal.ManifestChecksumKey`).
pub const ZSTD_CHUNKED_MANIFEST_CHECKSUM: &str =
    "io.github.containers.zstd-chunked.manifest-checksum";
/// On a zstd:chunked layer's descriptor: where its compressed table of contents is,
/// `<offset>:<length>:<uncompressed length>:<type>` (type 1, CRFS).
pub const ZSTD_CHUNKED_MANIFEST_POSITION: &str =
    "io.github.containers.zstd-chunked.manifest-position";
/// On a zstd:chunked layer's descriptor: where its compressed tar-split is,
/// `<offset>:<length>:<uncompressed length>`.
pub const ZSTD_CHUNKED_TARSPLIT_POSITION: &str =
    "io.github.containers.zstd-chunked.tarsplit-position";
