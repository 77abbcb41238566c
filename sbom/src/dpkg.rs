//! The dpkg database: `var/lib/dpkg/status` and distroless's `var/lib/dpkg/status.d/*`
//! (RFC 822-style stanzas, one per package), and the `License:` names of a package's
//! machine-readable (DEP-5) `usr/share/doc/<package>/copyright`.
//!
//! Which packages count: those whose `Status` state (its third word) is neither
//! `not-installed` nor `config-files`. `dpkg-query -W` lists every state but
//! `not-installed`; a `config-files` package was removed and only its configuration
//! files are left, so it is not in the image's software (Trivy and syft drop it too).
//! A `status.d` stanza without `Status` is installed (distroless writes none).

use crate::package::{Package, PackageKind};

/// One stanza's fields, in order; continuation lines are joined with `\n`.
fn stanzas(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut all = Vec::new();
    let mut current: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

fn field<'a>(stanza: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .filter(|v| !v.is_empty())
}

/// Where a stanza comes from: the status file, or one file of `status.d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusSource {
    /// `var/lib/dpkg/status`: a stanza without `Status` is not installed.
    StatusFile,
    /// `var/lib/dpkg/status.d/*`: a stanza without `Status` is installed.
    StatusDir,
}

fn is_installed(status: Option<&str>, source: StatusSource) -> bool {
    match status {
        None => source == StatusSource::StatusDir,
        Some(status) => !matches!(
            status.split_whitespace().nth(2),
            None | Some("not-installed") | Some("config-files")
        ),
    }
}

/// The installed packages of a dpkg status file (or one `status.d` file); `layer` is
/// filled in by the caller.
pub(crate) fn parse_status(
    text: &str,
    source: StatusSource,
    layer: &strata_oci::Digest,
) -> Vec<Package> {
    let mut packages = Vec::new();
    for stanza in stanzas(text) {
        let (Some(name), Some(version)) = (field(&stanza, "Package"), field(&stanza, "Version"))
        else {
            continue;
        };
        if !is_installed(field(&stanza, "Status"), source) {
            continue;
        }
        let source_package = field(&stanza, "Source")
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string);
        packages.push(Package {
            kind: PackageKind::Deb,
            name: name.to_string(),
            version: version.to_string(),
            epoch: None,
            arch: field(&stanza, "Architecture").map(str::to_string),
            license: None,
            source: source_package,
            supplier: field(&stanza, "Maintainer").map(str::to_string),
            layer: layer.clone(),
        });
    }
    packages
}

/// The path of a package's copyright file inside the image.
pub(crate) fn copyright_path(package: &str) -> String {
    format!("usr/share/doc/{package}/copyright")
}

/// The package a `usr/share/doc/<package>/copyright` path belongs to.
pub(crate) fn copyright_package(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("usr/share/doc/")?;
    let package = rest.strip_suffix("/copyright")?;
    (!package.is_empty() && !package.contains('/')).then_some(package)
}

/// The license of a machine-readable (DEP-5) copyright file: the distinct `License:`
/// short names of its `Files` paragraphs, in order, joined by ` AND ` (a name with
/// `or`/`and` in it is parenthesized). `None` for a file in another format.
pub(crate) fn copyright_license(text: &str) -> Option<String> {
    let paragraphs = stanzas(text);
    let header = paragraphs.first()?;
    if !field(header, "Format").is_some_and(|f| f.contains("copyright-format")) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for paragraph in &paragraphs {
        if field(paragraph, "Files").is_none() {
            continue;
        }
        let Some(name) = field(paragraph, "License").and_then(|l| l.lines().next()) else {
            continue;
        };
        let name = name.trim();
        let name = if name.contains(' ') {
            format!("({name})")
        } else {
            name.to_string()
        };
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    (!names.is_empty()).then(|| names.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12988
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: old-thing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: gone
Status: purge ok not-installed
Architecture: all

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 3:4.5-6

Package: gcc-12-base
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
";

    #[test]
    fn installed_states_are_kept_and_fields_read() {
        let layer = strata_oci::Digest::sha256_of(b"l");
        let packages = parse_status(STATUS, StatusSource::StatusFile, &layer);
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "half", "gcc-12-base"]);
        let libc = &packages[0];
        assert_eq!(libc.version, "2.36-9+deb12u4");
        assert_eq!(libc.arch.as_deref(), Some("amd64"));
        assert_eq!(libc.source.as_deref(), Some("glibc"));
        assert_eq!(
            libc.supplier.as_deref(),
            Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")
        );
        assert_eq!(packages[2].source.as_deref(), Some("gcc-12"));
    }

    #[test]
    fn status_d_stanzas_without_status_are_installed() {
        let layer = strata_oci::Digest::sha256_of(b"l");
        let text = "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n";
        assert_eq!(parse_status(text, StatusSource::StatusDir, &layer).len(), 1);
        assert!(parse_status(text, StatusSource::StatusFile, &layer).is_empty());
    }

    #[test]
    fn dep5_license_names_and_other_formats() {
        let dep5 = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zlib

Files: *
Copyright: 1995-2013 Jean-loup Gailly and Mark Adler
License: Zlib

Files: contrib/*
Copyright: someone
License: GPL-2+ or Artistic

Files: debian/*
License: Zlib

License: Zlib
 This software is provided 'as-is', without any express or implied
";
        assert_eq!(
            copyright_license(dep5).as_deref(),
            Some("Zlib AND (GPL-2+ or Artistic)")
        );
        assert_eq!(
            copyright_license("This is the Debian prepackaged version of bash.\n"),
            None
        );
        assert_eq!(
            copyright_package("usr/share/doc/zlib1g/copyright"),
            Some("zlib1g")
        );
        assert_eq!(copyright_package("usr/share/doc/a/b/copyright"), None);
    }
}
