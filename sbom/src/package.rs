//! [`Package`]: one installed package as its database describes it, its
//! [`PackageKind`], the image's [`OsRelease`], and package URLs.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use strata_oci::Digest;

/// The package manager whose database lists a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackageKind {
    /// dpkg (`var/lib/dpkg/status`, `var/lib/dpkg/status.d/*`).
    Deb,
    /// apk (`lib/apk/db/installed`).
    Apk,
    /// rpm (`rpmdb.sqlite` in `usr/lib/sysimage/rpm` or `var/lib/rpm`).
    Rpm,
}

impl PackageKind {
    /// The package URL type: `deb`, `apk` or `rpm`.
    pub fn purl_type(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Rpm => "rpm",
        }
    }
}

/// One installed package, and the layer that introduced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Which database lists it.
    pub kind: PackageKind,
    /// The package name (dpkg `Package`, apk `P:`, rpm `NAME`); never arch-qualified.
    pub name: String,
    /// The version: dpkg's full version (epoch included, `1:2.3-4`), apk's `V:`, rpm's
    /// `VERSION-RELEASE` (its epoch is [`Package::epoch`]).
    pub version: String,
    /// The rpm epoch, when the header has one.
    pub epoch: Option<u32>,
    /// The architecture (`amd64`, `x86_64`, `noarch`, `all`, …), when the database says.
    pub arch: Option<String>,
    /// The license as the package says it (apk `L:`, rpm `LICENSE`, the `License:` names
    /// of a machine-readable Debian copyright file joined by `AND`); not necessarily a
    /// valid SPDX expression.
    pub license: Option<String>,
    /// The source package (dpkg `Source` without its version, apk origin `o:`, rpm
    /// `SOURCERPM`).
    pub source: Option<String>,
    /// Who supplies it (dpkg `Maintainer`, apk `m:`, rpm `VENDOR`).
    pub supplier: Option<String>,
    /// The diffID of the lowest layer from which the package, at this version, is
    /// present in every layer up to the top.
    pub layer: Digest,
}

/// The fields of `os-release(5)` the SBOM uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `fedora`, …).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `3.19.1`, `39`, …).
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parses an `os-release` file (shell-style `KEY=value` lines, values optionally
    /// quoted). Unknown keys and malformed lines are ignored.
    pub fn parse(text: &str) -> OsRelease {
        let mut release = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            let slot = match key.trim() {
                "ID" => &mut release.id,
                "VERSION_ID" => &mut release.version_id,
                "PRETTY_NAME" => &mut release.pretty_name,
                _ => continue,
            };
            if !value.is_empty() {
                *slot = Some(value);
            }
        }
        release
    }

    /// `ID-VERSION_ID` (`debian-12`), the purl `distro` qualifier.
    pub fn distro(&self) -> Option<String> {
        match (&self.id, &self.version_id) {
            (Some(id), Some(version)) => Some(format!("{id}-{version}")),
            _ => None,
        }
    }
}

fn unquote(value: &str) -> String {
    let quoted = value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"'))
            || (value.starts_with('\'') && value.ends_with('\'')));
    let inner = if quoted {
        &value[1..value.len() - 1]
    } else {
        value
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Package {
    /// The package URL (purl spec): `pkg:deb/debian/NAME@VERSION?arch=…&distro=debian-12`,
    /// `pkg:apk/alpine/NAME@VERSION?arch=…`, `pkg:rpm/fedora/NAME@VERSION-RELEASE?arch=…&epoch=1`.
    /// The namespace is the `os-release` `ID` (for dpkg and apk, `debian` and `alpine`
    /// without one; an rpm without one has no namespace); `distro` is `ID-VERSION_ID`
    /// when both are known; a dpkg source package other than the name is `upstream`.
    /// Qualifiers are sorted and every component is percent-encoded.
    pub fn purl(&self, os: Option<&OsRelease>) -> String {
        let id = os.and_then(|os| os.id.as_deref());
        let namespace = match (self.kind, id) {
            (_, Some(id)) => Some(id.to_ascii_lowercase()),
            (PackageKind::Deb, None) => Some("debian".to_string()),
            (PackageKind::Apk, None) => Some("alpine".to_string()),
            (PackageKind::Rpm, None) => None,
        };
        let mut purl = format!("pkg:{}/", self.kind.purl_type());
        if let Some(namespace) = namespace {
            purl.push_str(&percent_encode(&namespace));
            purl.push('/');
        }
        let name = match self.kind {
            // The purl spec lowercases deb and apk names (rpm names are case sensitive).
            PackageKind::Deb | PackageKind::Apk => self.name.to_ascii_lowercase(),
            PackageKind::Rpm => self.name.clone(),
        };
        purl.push_str(&percent_encode(&name));
        purl.push('@');
        purl.push_str(&percent_encode(&self.version));
        // Sorted by key, as the spec's canonical form has them.
        let mut qualifiers: Vec<(&str, String)> = Vec::new();
        if let Some(arch) = &self.arch {
            qualifiers.push(("arch", arch.clone()));
        }
        if let Some(distro) = os.and_then(OsRelease::distro) {
            qualifiers.push(("distro", distro));
        }
        if let Some(epoch) = self.epoch {
            qualifiers.push(("epoch", epoch.to_string()));
        }
        if self.kind == PackageKind::Deb {
            if let Some(source) = self.source.as_ref().filter(|s| **s != self.name) {
                qualifiers.push(("upstream", source.clone()));
            }
        }
        for (i, (key, value)) in qualifiers.iter().enumerate() {
            purl.push(if i == 0 { '?' } else { '&' });
            let _ = write!(purl, "{key}={}", percent_encode(value));
        }
        purl
    }
}

/// What a purl component percent-encodes: everything but the purl spec's unreserved
/// characters (`A-Z a-z 0-9 . - _ ~`) and `:` (which the spec leaves as is in
/// versions).
const PURL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// `s` with what [`PURL_ESCAPED`] names percent-encoded.
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, PURL_ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(kind: PackageKind, name: &str, version: &str, arch: &str) -> Package {
        Package {
            kind,
            name: name.to_string(),
            version: version.to_string(),
            epoch: None,
            arch: Some(arch.to_string()),
            license: None,
            source: None,
            supplier: None,
            layer: Digest::sha256_of(b"layer"),
        }
    }

    #[test]
    fn os_release_is_parsed_with_quotes() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nID=debian\n# comment\nbroken line\n",
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os.distro().as_deref(), Some("debian-12"));
    }

    #[test]
    fn deb_purl_encodes_plus_and_keeps_the_epoch_colon() {
        let os = OsRelease::parse("ID=debian\nVERSION_ID=\"12\"\n");
        let mut p = package(
            PackageKind::Deb,
            "libpam-modules",
            "1:1.5.2-6+deb12u1",
            "amd64",
        );
        p.source = Some("pam".to_string());
        assert_eq!(
            p.purl(Some(&os)),
            "pkg:deb/debian/libpam-modules@1:1.5.2-6%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=pam"
        );
        assert_eq!(
            package(PackageKind::Deb, "bash", "5.2.15-2+b2", "amd64").purl(None),
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64"
        );
    }

    #[test]
    fn apk_and_rpm_purls() {
        let alpine = OsRelease::parse("ID=alpine\nVERSION_ID=3.19.1\n");
        assert_eq!(
            package(PackageKind::Apk, "musl", "1.2.4_git20230717-r4", "x86_64").purl(Some(&alpine)),
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
        );
        let fedora = OsRelease::parse("ID=fedora\nVERSION_ID=39\n");
        let mut p = package(
            PackageKind::Rpm,
            "NetworkManager",
            "1.44.2-1.fc39",
            "x86_64",
        );
        p.epoch = Some(1);
        assert_eq!(
            p.purl(Some(&fedora)),
            "pkg:rpm/fedora/NetworkManager@1.44.2-1.fc39?arch=x86_64&distro=fedora-39&epoch=1"
        );
        assert_eq!(
            p.purl(None),
            "pkg:rpm/NetworkManager@1.44.2-1.fc39?arch=x86_64&epoch=1"
        );
    }
}
