//! Image names as package URLs, as BuildKit's `util/purl.RefToPURL` writes them for
//! the `self` subjects of its statements.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use strata_oci::Platform;
use strata_registry::ImageReference;

use crate::error::{Error, Result};

/// The purl of image `name` on `platform`, as BuildKit builds it
/// (`pkg:docker/NAMESPACE/NAME@TAG?platform=OS%2FARCH[%2FVARIANT]`): the name in
/// Docker's familiar form (`docker.io/library/` dropped), the tag as the version
/// (`latest` when none is given), a digest in the `digest` qualifier.
///
/// ```
/// use strata_exporter::image_purl;
/// use strata_oci::Platform;
///
/// let amd64 = Platform::parse("linux/amd64").unwrap();
/// assert_eq!(image_purl("alpine", &amd64).unwrap(), "pkg:docker/alpine@latest?platform=linux%2Famd64");
/// assert_eq!(
///     image_purl("localhost:5000/team/app:1.0", &amd64).unwrap(),
///     "pkg:docker/localhost:5000/team/app@1.0?platform=linux%2Famd64"
/// );
/// ```
pub fn image_purl(name: &str, platform: &Platform) -> Result<String> {
    let image = ImageReference::parse(name).map_err(|e| Error::InvalidOption {
        key: "name".into(),
        value: name.to_string(),
        reason: e.to_string(),
    })?;
    let mut path = if image.registry == "docker.io" {
        image
            .repository
            .strip_prefix("library/")
            .filter(|r| !r.contains('/'))
            .unwrap_or(&image.repository)
            .to_string()
    } else {
        format!("{}/{}", image.registry, image.repository)
    };
    if let Some(tag) = &image.tag {
        path = format!("{path}@{}", escape(tag));
    }
    let mut qualifiers = Vec::new();
    if let Some(digest) = &image.digest {
        qualifiers.push(format!("digest={}", escape(&digest.to_string())));
    }
    qualifiers.push(format!("platform={}", escape(&normalized(platform))));
    Ok(format!("pkg:docker/{path}?{}", qualifiers.join("&")))
}

/// `os/arch[/variant]` as containerd's `platforms.Normalize` then `Format` give it
/// (arm64's `v8` variant dropped).
fn normalized(platform: &Platform) -> String {
    let mut p = platform.clone();
    if p.architecture == "arm64" && matches!(p.variant.as_deref(), Some("8" | "v8" | "v8.0")) {
        p.variant = None;
    }
    p.to_string()
}

/// The characters a URI leaves as they are (RFC 3986 "unreserved"); everything
/// else is percent-encoded in purls and `file://` URIs.
pub(crate) const URI_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Go's `url.QueryEscape` (but for spaces, which no purl part here holds):
/// everything but unreserved characters percent-encoded.
fn escape(text: &str) -> String {
    utf8_percent_encode(text, URI_ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_buildkit_writes_them() {
        let arm = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            image_purl("docker.io/library/debian:12", &arm).unwrap(),
            "pkg:docker/debian@12?platform=linux%2Farm%2Fv7"
        );
        assert_eq!(
            image_purl("user/app", &Platform::parse("linux/arm64/v8").unwrap()).unwrap(),
            "pkg:docker/user/app@latest?platform=linux%2Farm64"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            image_purl(&format!("r.example/app@{digest}"), &arm).unwrap(),
            format!(
                "pkg:docker/r.example/app?digest=sha256%3A{}&platform=linux%2Farm%2Fv7",
                "a".repeat(64)
            )
        );
        assert!(image_purl("Bad Name", &arm).is_err());
    }
}
