//! [`ImageReference`]: an image in a registry, parsed from `docker://HOST/REPO:TAG`,
//! `docker://HOST/REPO@sha256:…` or a bare `[HOST/]REPO[:TAG|@DIGEST]` (Docker Hub
//! names normalised as docker does: `debian` is `docker.io/library/debian:latest`).

use std::fmt;

use oci_client::Reference;
use strata_oci::Digest;

use crate::error::RegistryError;

/// The transport prefix skopeo and BuildKit use for registry images.
const DOCKER_TRANSPORT: &str = "docker://";

/// A tag or a digest: what names a manifest in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRef {
    /// A tag (`latest`, `1.2`).
    Tag(String),
    /// A manifest digest.
    Digest(Digest),
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// An image in a registry: registry, repository and a tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository (`library/debian`).
    pub repository: String,
    /// The tag, if one was given (`latest` when neither tag nor digest was).
    pub tag: Option<String>,
    /// The digest, if one was given.
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// Parses `docker://HOST/REPO[:TAG|@DIGEST]` or a bare `[HOST/]REPO[:TAG|@DIGEST]`.
    /// Errors name the text.
    pub fn parse(text: &str) -> Result<ImageReference, RegistryError> {
        let bad = |reason: String| RegistryError::InvalidReference {
            text: text.to_string(),
            reason,
        };
        let name = text.strip_prefix(DOCKER_TRANSPORT).unwrap_or(text);
        if let Some((transport, _)) = name.split_once("://") {
            return Err(bad(format!(
                "transport {transport}:// is not a registry (use docker://)"
            )));
        }
        let parsed = Reference::try_from(name).map_err(|e| bad(e.to_string()))?;
        // oci_client files `Host/repo` under docker.io with its capitals, where docker
        // takes `Host` for a registry; a repository name is lowercase either way.
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(format!(
                "repository {:?} must be lowercase",
                parsed.repository()
            )));
        }
        let digest = parsed
            .digest()
            .map(|d| Digest::parse(d).map_err(|e| bad(e.to_string())))
            .transpose()?;
        let tag = match (parsed.tag(), &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageReference {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest,
        })
    }

    /// What names the manifest: the digest when there is one, else the tag.
    pub fn manifest_ref(&self) -> ManifestRef {
        match (&self.digest, &self.tag) {
            (Some(d), _) => ManifestRef::Digest(d.clone()),
            (None, Some(t)) => ManifestRef::Tag(t.clone()),
            (None, None) => ManifestRef::Tag("latest".to_string()),
        }
    }

    /// The same repository with `manifest` as the tag or digest.
    pub fn with_manifest(&self, manifest: &ManifestRef) -> ImageReference {
        let (tag, digest) = match manifest {
            ManifestRef::Tag(t) => (Some(t.clone()), None),
            ManifestRef::Digest(d) => (None, Some(d.clone())),
        };
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag,
            digest,
        }
    }

    /// The `oci_client` form of this reference.
    pub(crate) fn to_oci(&self) -> Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => {
                Reference::with_tag_and_digest(registry, repository, t.clone(), d.to_string())
            }
            (_, Some(d)) => Reference::with_digest(registry, repository, d.to_string()),
            (Some(t), None) => Reference::with_tag(registry, repository, t.clone()),
            (None, None) => Reference::with_tag(registry, repository, "latest".to_string()),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageReference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageReference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Crashes of the docker_config and output_options fuzz targets (their text round
    /// trip): oci_client read `HociAdira/g:tag` as docker.io's `HociAdira/g`, whose
    /// printed form `docker.io/HociAdira/g:tag` it then refused.
    #[test]
    fn a_repository_with_capitals_is_refused() {
        for text in [
            "HociAdira/g:tag",
            "localhostH5000/x",
            "docker.io/Library/debian",
        ] {
            assert!(
                matches!(
                    ImageReference::parse(text),
                    Err(RegistryError::InvalidReference { .. })
                ),
                "{text}"
            );
        }
        let ok = ImageReference::parse("registry.example:5000/a/b:1").unwrap();
        assert_eq!(ImageReference::parse(&ok.to_string()).unwrap(), ok);
    }

    #[test]
    fn parses_transport_bare_and_hub_names() {
        let r = ImageReference::parse("docker://127.0.0.1:5000/base:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "base")
        );
        assert_eq!(r.manifest_ref(), ManifestRef::Tag("1".into()));
        assert_eq!(r.to_string(), "127.0.0.1:5000/base:1");

        let r = ImageReference::parse(&format!("docker://reg.example/a/b@{DIGEST}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(
            r.manifest_ref(),
            ManifestRef::Digest(Digest::parse(DIGEST).unwrap())
        );
        assert_eq!(r.to_oci().digest(), Some(DIGEST));

        let r = ImageReference::parse("debian").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/debian:latest");
        let r = ImageReference::parse("localhost:5000/app:v2").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("v2"));
    }

    #[test]
    fn bad_text_is_named() {
        for text in [
            "docker://",
            "oci:/tmp/layout",
            "Upper/Case:1",
            "docker://reg/a@sha256:short",
            "oci-archive:///x.tar",
        ] {
            match ImageReference::parse(text) {
                Err(e @ RegistryError::InvalidReference { .. }) => {
                    assert!(e.to_string().contains(text), "{e}")
                }
                other => panic!("{text:?}: expected an invalid reference, got {other:?}"),
            }
        }
    }
}
