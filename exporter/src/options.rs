//! Exporter options with BuildKit's names and meanings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_content::{Compression, Platform};

use crate::error::{Error, Result};

/// Annotations to put on the manifests, the index and their descriptors
/// (`annotation[-<kind>][[platform]].<key>=<value>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// On the index (`annotation-index.<key>`).
    pub index: BTreeMap<String, String>,
    /// On the root descriptor, e.g. in an OCI layout's `index.json`
    /// (`annotation-index-descriptor.<key>`).
    pub index_descriptor: BTreeMap<String, String>,
    /// On manifests (`annotation.<key>`, `annotation-manifest.<key>`); the `None` key
    /// applies to every platform.
    pub manifest: BTreeMap<Option<Platform>, BTreeMap<String, String>>,
    /// On the manifest descriptors in the index (`annotation-manifest-descriptor.<key>`).
    pub manifest_descriptor: BTreeMap<Option<Platform>, BTreeMap<String, String>>,
}

impl Annotations {
    /// The manifest annotations for `platform` (unqualified ones, then qualified ones
    /// overriding them).
    pub fn manifest_for(&self, platform: Option<&Platform>) -> BTreeMap<String, String> {
        merged(&self.manifest, platform)
    }

    /// The manifest-descriptor annotations for `platform`.
    pub fn manifest_descriptor_for(&self, platform: Option<&Platform>) -> BTreeMap<String, String> {
        merged(&self.manifest_descriptor, platform)
    }

    /// Parses one `annotation…` option; `Ok(false)` if `key` is not an annotation.
    fn parse_option(&mut self, key: &str, value: &str) -> Result<bool> {
        let Some(rest) = key.strip_prefix("annotation") else {
            return Ok(false);
        };
        let invalid = |reason: &str| Error::InvalidOption {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        // rest: ["-kind"] ["[platform]"] ".name"
        let (kind, rest) = match rest.strip_prefix('-') {
            Some(r) => {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                (&r[..end], &r[end..])
            }
            None => ("manifest", rest),
        };
        let (platform, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let end = r
                    .find(']')
                    .ok_or_else(|| invalid("unterminated [platform] qualifier"))?;
                let p = Platform::parse(&r[..end])
                    .ok_or_else(|| invalid("the [platform] qualifier is not os/arch[/variant]"))?;
                (Some(p), &r[end + 1..])
            }
            None => (None, rest),
        };
        let name = rest
            .strip_prefix('.')
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("expected annotation[-kind][[platform]].<key>"))?;
        let name = name.to_string();
        let value = value.to_string();
        match kind {
            "manifest" => {
                self.manifest
                    .entry(platform)
                    .or_default()
                    .insert(name, value);
            }
            "manifest-descriptor" => {
                self.manifest_descriptor
                    .entry(platform)
                    .or_default()
                    .insert(name, value);
            }
            "index" | "index-descriptor" if platform.is_some() => {
                return Err(invalid(
                    "index annotations cannot have a platform qualifier",
                ))
            }
            "index" => {
                self.index.insert(name, value);
            }
            "index-descriptor" => {
                self.index_descriptor.insert(name, value);
            }
            _ => return Err(invalid(
                "unknown annotation kind (index, index-descriptor, manifest, manifest-descriptor)",
            )),
        }
        Ok(true)
    }
}

fn merged(
    map: &BTreeMap<Option<Platform>, BTreeMap<String, String>>,
    platform: Option<&Platform>,
) -> BTreeMap<String, String> {
    let mut out = map.get(&None).cloned().unwrap_or_default();
    if let Some(p) = platform {
        if let Some(extra) = map.get(&Some(p.clone())) {
            out.extend(extra.clone());
        }
    }
    out
}

/// How to build the image: the options every exporter shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageOptions {
    /// Image names (`name`, comma-separated).
    pub names: Vec<String>,
    /// OCI media types (`oci-mediatypes`) rather than Docker schema2.
    pub oci_media_types: bool,
    /// Layer compression (`compression`).
    pub compression: Compression,
    /// Compression level (`compression-level`).
    pub compression_level: Option<i32>,
    /// Convert blobs that exist in another compression (`force-compression`).
    pub force_compression: bool,
    /// Clamp times to this epoch (`source-date-epoch`).
    pub source_date_epoch: Option<i64>,
    /// Annotations (`annotation*`).
    pub annotations: Annotations,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            names: Vec::new(),
            oci_media_types: true,
            compression: Compression::Gzip,
            compression_level: None,
            force_compression: false,
            source_date_epoch: None,
            annotations: Annotations::default(),
        }
    }
}

/// Where an OCI or docker output goes (`tar`, `dest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Write a tar (`tar`, default true) rather than a directory.
    pub tar: bool,
    /// The path of the tar or directory (`dest`).
    pub dest: Option<PathBuf>,
}

/// A boolean option, spelled as Go's `strconv.ParseBool` accepts (what BuildKit
/// uses), or empty for true (`oci-mediatypes` alone); anything else is an error
/// naming `key`.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::InvalidOption {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

/// Parses BuildKit-style options for exporter `exporter`. `with_output` accepts `tar`
/// and `dest`; `default_oci` is the default of `oci-mediatypes`. Unknown options are
/// an error naming them.
pub(crate) fn parse(
    exporter: &str,
    options: &BTreeMap<String, String>,
    with_output: bool,
    default_oci: bool,
) -> Result<(ImageOptions, OutputOptions)> {
    let mut image = ImageOptions {
        oci_media_types: default_oci,
        ..ImageOptions::default()
    };
    let mut output = OutputOptions {
        tar: true,
        dest: None,
    };
    for (key, value) in options {
        let invalid = |reason: String| Error::InvalidOption {
            key: key.clone(),
            value: value.clone(),
            reason,
        };
        match key.as_str() {
            "name" => {
                image.names = value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "oci-mediatypes" => image.oci_media_types = parse_bool(key, value)?,
            "compression" => {
                image.compression = Compression::parse(value)
                    .ok_or_else(|| invalid("expected uncompressed, gzip or zstd".into()))?;
            }
            "compression-level" => {
                image.compression_level = Some(
                    value
                        .parse::<i32>()
                        .map_err(|e| invalid(format!("not an integer: {e}")))?,
                );
            }
            "force-compression" => image.force_compression = parse_bool(key, value)?,
            "source-date-epoch" => {
                if !value.is_empty() {
                    let epoch = value
                        .parse::<i64>()
                        .map_err(|e| invalid(format!("not a number of seconds: {e}")))?;
                    if epoch < 0 {
                        return Err(invalid("must not be negative".into()));
                    }
                    image.source_date_epoch = Some(epoch);
                }
            }
            "tar" if with_output => output.tar = parse_bool(key, value)?,
            "dest" if with_output => {
                if value.is_empty() {
                    return Err(invalid("empty path".into()));
                }
                output.dest = Some(PathBuf::from(value));
            }
            k if k.starts_with("annotation") => {
                image.annotations.parse_option(key, value)?;
            }
            _ => {
                return Err(Error::UnknownOption {
                    exporter: exporter.to_string(),
                    key: key.clone(),
                })
            }
        }
    }
    if let Some(level) = image.compression_level {
        let range = match image.compression {
            Compression::Uncompressed => None,
            Compression::Gzip => Some(0..=9),
            Compression::Zstd => Some(1..=22),
        };
        if let Some(r) = range {
            if !r.contains(&level) {
                return Err(Error::InvalidOption {
                    key: "compression-level".into(),
                    value: level.to_string(),
                    reason: format!(
                        "{} levels are {}..={}",
                        image.compression,
                        r.start(),
                        r.end()
                    ),
                });
            }
        }
    }
    if !image.oci_media_types && image.compression == Compression::Zstd {
        return Err(Error::UnsupportedCompression {
            compression: Compression::Zstd,
            media_types: "Docker",
        });
    }
    Ok((image, output))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An exporter option map from `pairs` (for tests).
    pub(crate) fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_buildkit_options() {
        let (img, out) = parse(
            "oci",
            &opts(&[
                ("name", "a:1, b:2"),
                ("oci-mediatypes", "false"),
                ("compression", "uncompressed"),
                ("force-compression", "true"),
                ("source-date-epoch", "1700000000"),
                ("annotation.org.opencontainers.image.title", "t"),
                ("annotation-index.i", "x"),
                ("annotation-manifest[linux/arm64].m", "arm"),
                ("annotation-manifest-descriptor.d", "y"),
                ("annotation-index-descriptor.id", "z"),
                ("tar", "false"),
                ("dest", "/tmp/out"),
            ]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(img.names, vec!["a:1", "b:2"]);
        assert!(!img.oci_media_types && img.force_compression);
        assert_eq!(img.compression, Compression::Uncompressed);
        assert_eq!(img.source_date_epoch, Some(1_700_000_000));
        let arm = Platform::parse("linux/arm64").unwrap();
        let m = img.annotations.manifest_for(Some(&arm));
        assert_eq!(m.get("org.opencontainers.image.title").unwrap(), "t");
        assert_eq!(m.get("m").unwrap(), "arm");
        assert!(!img.annotations.manifest_for(None).contains_key("m"));
        assert_eq!(img.annotations.index.get("i").unwrap(), "x");
        assert_eq!(img.annotations.index_descriptor.get("id").unwrap(), "z");
        assert_eq!(
            img.annotations
                .manifest_descriptor_for(None)
                .get("d")
                .unwrap(),
            "y"
        );
        assert!(!out.tar);
        assert_eq!(out.dest, Some(PathBuf::from("/tmp/out")));
    }

    #[test]
    fn booleans_are_spelled_as_go_parses_them() {
        for v in ["", "1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse_bool("tar", v).unwrap(), "{v:?}");
        }
        for v in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse_bool("tar", v).unwrap(), "{v:?}");
        }
        for v in ["yes", "no", "tru", " true"] {
            match parse_bool("tar", v) {
                Err(Error::InvalidOption { key, value, .. }) => {
                    assert_eq!((key.as_str(), value.as_str()), ("tar", v))
                }
                other => panic!("{v:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn bad_options_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("push", "true")], "push"),
            (&[("compression", "lz4")], "compression"),
            (&[("compression-level", "x")], "compression-level"),
            (
                &[("compression", "gzip"), ("compression-level", "12")],
                "compression-level",
            ),
            (&[("oci-mediatypes", "maybe")], "oci-mediatypes"),
            (&[("source-date-epoch", "yesterday")], "source-date-epoch"),
            (&[("annotation-bogus.k", "v")], "annotation-bogus.k"),
            (
                &[("annotation-index[linux/amd64].k", "v")],
                "annotation-index[linux/amd64].k",
            ),
            (&[("annotation.", "v")], "annotation."),
        ];
        for (pairs, named) in cases {
            let err = parse("oci", &opts(pairs), true, true).unwrap_err();
            assert!(err.to_string().contains(named), "{err} should name {named}");
        }
        // tar/dest are unknown to the image exporter.
        let err = parse("image", &opts(&[("dest", "/x")]), false, true).unwrap_err();
        assert!(matches!(err, Error::UnknownOption { ref key, .. } if key == "dest"));
        // zstd cannot be expressed with Docker media types.
        let err = parse("docker", &opts(&[("compression", "zstd")]), true, false).unwrap_err();
        assert!(matches!(err, Error::UnsupportedCompression { .. }));
    }
}
