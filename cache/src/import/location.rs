//! [`ImageLocation`]: where a base image is, as the CLI writes it
//! (`docker://HOST/REPO:TAG`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME:TAG]`, `containerd:NAME`, `store:NAME`, or a bare registry
//! reference), parsed the way skopeo's transports parse them.

use std::fmt;
use std::path::PathBuf;

use strata_registry::ImageReference as RegistryReference;

/// Text that is not an image reference; names the text and says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {text:?}: {reason}")]
pub struct InvalidImageLocation {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a registry reference (`[HOST/]REPOSITORY[:TAG][@DIGEST]`), normalized as
/// docker does (`alpine` is `docker.io/library/alpine:latest`).
pub(crate) fn parse_registry_reference(
    text: &str,
) -> Result<RegistryReference, InvalidImageLocation> {
    RegistryReference::parse(text).map_err(|e| match e {
        strata_registry::RegistryError::InvalidReference { text, reason } => {
            InvalidImageLocation { text, reason }
        }
        other => InvalidImageLocation {
            text: text.to_string(),
            reason: other.to_string(),
        },
    })
}

/// Where an image to build on (or pull) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLocation {
    /// An image in a registry (`docker://REF` or a bare reference).
    Registry(strata_registry::ImageReference),
    /// An OCI image layout directory, and the `org.opencontainers.image.ref.name` of
    /// the image in its `index.json` (none: its only image).
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The ref name in `index.json`.
        tag: Option<String>,
    },
    /// A tar of an OCI image layout, and the ref name of the image in it.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// The ref name in its `index.json`.
        tag: Option<String>,
    },
    /// What `docker save` writes, and the `NAME:TAG` of the image in it (none: its
    /// only image).
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// The image's name in the archive's `manifest.json` `RepoTags`.
        name: Option<String>,
    },
    /// An image record of containerd, by name.
    Containerd(String),
    /// An image record of strata's own store, by name.
    Store(String),
}

impl ImageLocation {
    /// Parses the CLI's syntax: `docker://REF`, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME:TAG]`, `containerd:NAME`,
    /// `store:NAME`, else a bare registry reference. As in skopeo, a path ends at its
    /// first `:`.
    pub fn parse(text: &str) -> Result<ImageLocation, InvalidImageLocation> {
        let bad = |reason: &str| InvalidImageLocation {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let path_and_name =
            |rest: &str| -> Result<(PathBuf, Option<String>), InvalidImageLocation> {
                let (path, name) = match rest.split_once(':') {
                    Some((path, name)) => (path, Some(name)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("no path"));
                }
                if name == Some("") {
                    return Err(bad("an empty name after the path"));
                }
                Ok((PathBuf::from(path), name.map(str::to_string)))
            };
        let named = |rest: &str| -> Result<String, InvalidImageLocation> {
            if rest.is_empty() {
                Err(bad("no image name"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = text.strip_prefix("docker://") {
            return Ok(ImageLocation::Registry(parse_registry_reference(rest)?));
        }
        let Some((transport, rest)) = text.split_once(':') else {
            return Ok(ImageLocation::Registry(parse_registry_reference(text)?));
        };
        Ok(match transport {
            "oci" => {
                let (dir, tag) = path_and_name(rest)?;
                ImageLocation::OciLayout { dir, tag }
            }
            "oci-archive" => {
                let (file, tag) = path_and_name(rest)?;
                ImageLocation::OciArchive { file, tag }
            }
            "docker-archive" => {
                let (file, name) = path_and_name(rest)?;
                ImageLocation::DockerArchive { file, name }
            }
            "containerd" => ImageLocation::Containerd(named(rest)?),
            "store" => ImageLocation::Store(named(rest)?),
            "docker" => return Err(bad("a registry reference is written docker://HOST/REPO")),
            _ => ImageLocation::Registry(parse_registry_reference(text)?),
        })
    }

    /// The name the image is known by, for `org.opencontainers.image.base.name`:
    /// the registry reference, the record's name, or the reference as written.
    pub fn base_name(&self) -> String {
        match self {
            ImageLocation::Registry(r) => r.to_string(),
            ImageLocation::Containerd(name) | ImageLocation::Store(name) => name.clone(),
            other => other.to_string(),
        }
    }
}

impl std::str::FromStr for ImageLocation {
    type Err = InvalidImageLocation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageLocation::parse(s)
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with =
            |f: &mut fmt::Formatter<'_>, kind: &str, path: &PathBuf, name: &Option<String>| {
                write!(f, "{kind}:{}", path.display())?;
                match name {
                    Some(name) => write!(f, ":{name}"),
                    None => Ok(()),
                }
            };
        match self {
            ImageLocation::Registry(r) => write!(f, "docker://{r}"),
            ImageLocation::OciLayout { dir, tag } => with(f, "oci", dir, tag),
            ImageLocation::OciArchive { file, tag } => with(f, "oci-archive", file, tag),
            ImageLocation::DockerArchive { file, name } => with(f, "docker-archive", file, name),
            ImageLocation::Containerd(name) => write!(f, "containerd:{name}"),
            ImageLocation::Store(name) => write!(f, "store:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> RegistryReference {
        match ImageLocation::parse(text).unwrap() {
            ImageLocation::Registry(r) => r,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn registry_references_are_normalized_as_docker_does() {
        let r = registry("alpine");
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        let r = registry("docker://localhost:5000/base/debian:12");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "base/debian", Some("12"))
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = registry(&format!("quay.io/org/app@{digest}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.map(|d| d.to_string()), Some(digest));
        assert_eq!(registry("localhost:5000/x").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn transports_split_at_the_first_colon() {
        assert_eq!(
            ImageLocation::parse("oci:/tmp/layout:v1").unwrap(),
            ImageLocation::OciLayout {
                dir: "/tmp/layout".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageLocation::parse("oci-archive:img.tar").unwrap(),
            ImageLocation::OciArchive {
                file: "img.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageLocation::parse("docker-archive:d.tar:example.com/a:1").unwrap(),
            ImageLocation::DockerArchive {
                file: "d.tar".into(),
                name: Some("example.com/a:1".into())
            }
        );
        assert_eq!(
            ImageLocation::parse("containerd:docker.io/library/busybox:1").unwrap(),
            ImageLocation::Containerd("docker.io/library/busybox:1".into())
        );
        let r = ImageLocation::parse("store:base:1").unwrap();
        assert_eq!(r, ImageLocation::Store("base:1".into()));
        assert_eq!(r.to_string(), "store:base:1");
    }

    #[test]
    fn bad_references_name_the_text() {
        for text in [
            "oci:",
            "oci:dir:",
            "store:",
            "Upper/Case",
            "docker:x",
            "a@sha256:zz",
            "a:b c",
        ] {
            let err = ImageLocation::parse(text).unwrap_err();
            assert_eq!(err.text, text);
            assert!(err.to_string().contains(text), "{err}");
        }
    }
}
