//! Media type strings, OCI and Docker schema2, and what kind of document each names.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The OCI empty descriptor's media type: the config of an artifact manifest, whose
/// bytes are `{}` ([`OCI_EMPTY_JSON`]).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The bytes of the OCI empty descriptor's blob.
pub const OCI_EMPTY_JSON: &[u8] = b"{}";
/// An in-toto statement (an attestation manifest's layer).
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The `artifactType` of an attestation manifest in the OCI artifact form (BuildKit's
/// `oci-artifact=true`).
pub const DOCKER_ATTESTATION_MANIFEST: &str = "application/vnd.docker.attestation.manifest.v1+json";

/// Whether `media_type` is an image index (OCI) or manifest list (Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is an image manifest (OCI or Docker schema2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` is a layer, compressed or not, OCI (including
/// non-distributable) or Docker.
pub fn is_layer(media_type: &str) -> bool {
    crate::Compression::from_layer_media_type(media_type).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(is_manifest(OCI_MANIFEST) && is_manifest(DOCKER_MANIFEST));
        assert!(!is_index(OCI_MANIFEST) && !is_manifest(OCI_INDEX));
        assert!(is_layer(OCI_LAYER_ZSTD) && is_layer(DOCKER_LAYER_GZIP) && !is_layer(OCI_CONFIG));
    }
}
