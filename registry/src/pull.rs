//! Reading from a repository: manifests by tag or digest, small blobs whole, any
//! blob as a stream — and [`RegistryClient`] as a [`BlobProvider`].

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::Deserialize;
use strata_content::{BlobProvider, DistributionSource};
use strata_oci::{media_types, Descriptor, Digest, MAX_MANIFEST_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::reference::ManifestRef;

/// The manifest and index media types asked for.
const MANIFEST_TYPES: &[&str] = &[
    media_types::OCI_MANIFEST,
    media_types::OCI_INDEX,
    media_types::DOCKER_MANIFEST,
    media_types::DOCKER_MANIFEST_LIST,
];

/// The fields of a manifest or index that say what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// The media type of manifest `bytes`: its `mediaType` field, else (an OCI manifest
/// may omit it) an index when it lists `manifests`, a manifest when it has a `config`.
fn manifest_media_type(bytes: &[u8]) -> Result<String, String> {
    let shape: Shape =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object: {e}"))?;
    let media_type = match shape.media_type {
        Some(t) => t,
        None if shape.manifests.is_some() => media_types::OCI_INDEX.to_string(),
        None if shape.config.is_some() => media_types::OCI_MANIFEST.to_string(),
        None => return Err("neither a manifest nor an index (no mediaType)".into()),
    };
    if MANIFEST_TYPES.contains(&media_type.as_str()) {
        Ok(media_type)
    } else {
        Err(format!("unsupported media type {media_type:?}"))
    }
}

impl RegistryClient {
    /// Fetches the manifest or index `reference` names. More than
    /// [`MAX_MANIFEST_SIZE`] bytes is `TooLarge` (oci-client reads the body whole
    /// before the check can be made); the descriptor's digest is the sha256 of the
    /// bytes (checked against a digest reference) and its media type their
    /// `mediaType`, else their shape (oci-client does not expose the Content-Type).
    pub async fn fetch_manifest(
        &self,
        reference: &ManifestRef,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let subject = format!("manifest {reference}");
        let target = self.image(reference).to_oci();
        let (bytes, _) = self
            .retrying("fetching", &subject, || {
                self.client
                    .pull_manifest_raw(&target, &self.auth, MANIFEST_TYPES)
            })
            .await?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                subject,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let digest = Digest::sha256_of(&bytes);
        if let ManifestRef::Digest(expected) = reference {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    subject,
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let media_type =
            manifest_media_type(&bytes).map_err(|reason| RegistryError::InvalidManifest {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                reference: reference.to_string(),
                reason,
            })?;
        let desc = Descriptor::new(media_type, digest, bytes.len() as u64);
        Ok((desc, bytes.to_vec()))
    }

    /// Opens the blob `desc` as a stream of its bytes (the request is retried, the
    /// stream is not). `NotFound` naming the digest when the repository lacks it.
    /// The bytes are not verified here: [`strata_content::fetch_blob`] does that.
    pub async fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, RegistryError> {
        let subject = format!("blob {}", desc.digest);
        let layer = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: desc.size as i64,
            ..Default::default()
        };
        let sized = self
            .retrying("fetching", &subject, || {
                self.client.pull_blob_stream(&self.base, &layer)
            })
            .await?;
        // A failure mid-stream names the blob and where it came from.
        let from = format!("{subject} from {}/{}", self.registry, self.repository);
        Ok(Box::new(StreamReader::new(sized.stream.map_err(
            move |e| std::io::Error::new(e.kind(), format!("{from}: {e}")),
        ))))
    }

    /// Reads the blob `desc` whole (a config): at most `limit` bytes, verified
    /// against its size and digest.
    pub async fn fetch_blob_bytes(
        &self,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let subject = format!("blob {}", desc.digest);
        if desc.size > limit {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                subject,
                limit,
            });
        }
        let reader = self.open_blob(desc).await?;
        let mut bytes = Vec::with_capacity(desc.size as usize);
        reader
            .take(desc.size + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| RegistryError::Request {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                action: format!("reading {subject}"),
                source: Box::new(oci_client::errors::OciDistributionError::IoError(e)),
            })?;
        let actual = Digest::sha256_of(&bytes);
        if bytes.len() as u64 != desc.size || actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                subject: format!(
                    "{subject} ({} bytes expected, {} served)",
                    desc.size,
                    bytes.len()
                ),
                expected: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }
}

#[async_trait]
impl BlobProvider for RegistryClient {
    fn name(&self) -> String {
        format!("registry {}/{}", self.registry, self.repository)
    }

    async fn open(
        &self,
        desc: &Descriptor,
    ) -> strata_content::Result<Box<dyn AsyncRead + Send + Unpin>> {
        // Manifests and indexes live under /manifests/, not /blobs/.
        let opened = if media_types::is_manifest(&desc.media_type)
            || media_types::is_index(&desc.media_type)
        {
            self.fetch_manifest(&ManifestRef::Digest(desc.digest.clone()))
                .await
                .map(|(_, bytes)| {
                    Box::new(std::io::Cursor::new(bytes)) as Box<dyn AsyncRead + Send + Unpin>
                })
        } else {
            self.open_blob(desc).await
        };
        opened.map_err(|e| match e {
            RegistryError::NotFound { .. } => strata_content::Error::NotFound(e.to_string()),
            e => strata_content::Error::io(
                format!("fetching blob {} from {}", desc.digest, self.name()),
                std::io::Error::other(e),
            ),
        })
    }

    fn distribution_source(&self) -> Option<DistributionSource> {
        Some(DistributionSource {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_the_field_or_the_shape() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        assert_eq!(
            manifest_media_type(docker).unwrap(),
            media_types::DOCKER_MANIFEST
        );
        let oci_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(oci_index).unwrap(),
            media_types::OCI_INDEX
        );
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(manifest_media_type(oci).unwrap(), media_types::OCI_MANIFEST);
        let schema1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(manifest_media_type(schema1).is_err());
        assert!(manifest_media_type(b"[1]").is_err());
        assert!(manifest_media_type(b"{}").is_err());
    }
}
