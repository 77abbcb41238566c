//! Exporter options with BuildKit's names and meanings, parsed and checked without a
//! store: [`OutputOptions::parse`] is a pure function of the output kind and the
//! option map, so a CLI or frontend can validate `-o` before it opens anything.

mod annotations;
mod checks;
mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use strata_oci::Compression;

use crate::error::{Error, Result};

pub use annotations::Annotations;
use checks::{check_compression, check_destination};
pub(crate) use records::check_records;
pub use records::RecordOptions;

/// Option: push the image to its names' registries (`image` exporter).
pub(crate) const OPTION_PUSH: &str = "push";
/// Option: push by digest only, without a tag.
pub(crate) const OPTION_PUSH_BY_DIGEST: &str = "push-by-digest";
/// Option: talk plain HTTP to the registry.
pub(crate) const OPTION_REGISTRY_INSECURE: &str = "registry.insecure";
/// Option: record the image under its names (`image` exporter, default true).
pub(crate) const OPTION_STORE: &str = "store";
/// Option: unpack the image into the unpack target's snapshotter (`image` exporter).
pub(crate) const OPTION_UNPACK: &str = "unpack";
/// Option: also name the image `PREFIX@<digest>` (`image` exporter).
pub(crate) const OPTION_DANGLING_NAME_PREFIX: &str = "dangling-name-prefix";
/// Option: use the dangling name only when no `name` is given. BuildKit spells it
/// this way (`exptypes.OptKeyDanglingEmptyOnly`), so strata does too.
pub(crate) const OPTION_DANGLING_EMPTY_ONLY: &str = "danging-name-empty-only";
/// Option: also record `NAME@<digest>` for every name (`image` exporter).
pub(crate) const OPTION_NAME_CANONICAL: &str = "name-canonical";
/// Option: attestation manifests as OCI artifacts.
pub(crate) const OPTION_OCI_ARTIFACT: &str = "oci-artifact";
/// Option: attach inline-only attestations even to a single-platform image.
pub(crate) const OPTION_ATTESTATION_INLINE: &str = "attestation-inline";
/// Option: rewrite layer timestamps to `source-date-epoch` (every exporter).
pub(crate) const OPTION_REWRITE_TIMESTAMP: &str = "rewrite-timestamp";

/// Which exporter a set of options is for (BuildKit's `type=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// The content store plus an image record per name (`type=image`).
    Image,
    /// An OCI image layout, tar or directory (`type=oci`).
    Oci,
    /// A docker-archive tar (`type=docker`).
    Docker,
    /// Pushed to a registry, committed to the store on the way (`type=registry`).
    Registry,
}

impl OutputKind {
    /// Every kind, in the order `image`, `oci`, `docker`, `registry`.
    pub const ALL: [OutputKind; 4] = [
        OutputKind::Image,
        OutputKind::Oci,
        OutputKind::Docker,
        OutputKind::Registry,
    ];

    /// The kind's name as `type=` spells it.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Image => "image",
            OutputKind::Oci => "oci",
            OutputKind::Docker => "docker",
            OutputKind::Registry => "registry",
        }
    }

    /// The kind named `name` (`image`, `oci`, `docker`, `registry`), if any.
    pub fn from_name(name: &str) -> Option<OutputKind> {
        OutputKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// True for the kinds that write files (`oci`, `docker`): they take `tar` and
    /// `dest`.
    pub fn writes_files(self) -> bool {
        matches!(self, OutputKind::Oci | OutputKind::Docker)
    }

    /// True for the kinds that can push (`image` with `push=true`, `registry`
    /// always): they take `push`, `push-by-digest` and `registry.insecure`.
    pub fn can_push(self) -> bool {
        matches!(self, OutputKind::Image | OutputKind::Registry)
    }

    /// The default of `oci-mediatypes`: Docker schema2 for `docker`, OCI otherwise.
    fn default_oci_media_types(self) -> bool {
        self != OutputKind::Docker
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
    /// eStargz payload chunk size in bytes (`estargz-chunk-size`, BuildKit's option;
    /// `None`: 4 MiB). Only with `compression=estargz`.
    pub estargz_chunk_size: Option<u64>,
    /// eStargz prefetch landmarks (`estargz-prioritized-files=PATH:PATH…`, paths from
    /// the layer root separated by `:`; empty: `.no.prefetch.landmark` in every layer).
    /// `None`: no landmarks, as BuildKit. Only with `compression=estargz`; see
    /// `strata_differ::CompareOptions::estargz_prioritized_files`.
    pub estargz_prioritized_files: Option<Vec<String>>,
    /// Convert blobs that exist in another compression (`force-compression`).
    pub force_compression: bool,
    /// Clamp times to this epoch (`source-date-epoch`).
    pub source_date_epoch: Option<i64>,
    /// Annotations (`annotation*`).
    pub annotations: Annotations,
    /// `rewrite-timestamp`: accepted for BuildKit compatibility. strata already
    /// clamps the times inside every layer it diffs to `source-date-epoch` as it writes
    /// the layer (BuildKit does it in a second pass over the finished blobs), so the
    /// option changes nothing; as in BuildKit, a base image's layers (exported by
    /// their blobs) are never rewritten.
    pub rewrite_timestamp: bool,
    /// `oci-artifact`: attestation manifests in the OCI artifact form (`artifactType`
    /// `application/vnd.docker.attestation.manifest.v1+json`, the empty config,
    /// `subject` = the image manifest) rather than the legacy form (an image config
    /// with `unknown` os and architecture). Default false; needs OCI media types.
    pub oci_artifact: bool,
    /// `attestation-inline` (BuildKit's `ForceInlineAttestations`): inline-only
    /// attestations are attached, and make the root an index, even when nothing else
    /// would. Default true for the `image` and `registry` outputs, false for `oci`
    /// and `docker`, as in BuildKit.
    pub attestation_inline: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            names: Vec::new(),
            oci_media_types: true,
            compression: Compression::Gzip,
            compression_level: None,
            estargz_chunk_size: None,
            estargz_prioritized_files: None,
            force_compression: false,
            source_date_epoch: None,
            annotations: Annotations::default(),
            rewrite_timestamp: false,
            oci_artifact: false,
            attestation_inline: true,
        }
    }
}

/// Where an `oci` or `docker` output goes (`tar`, `dest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Write a tar (`tar`, default true) rather than a directory.
    pub tar: bool,
    /// The path of the tar or directory (`dest`); `None` streams the tar to the
    /// exporter's writer.
    pub dest: Option<PathBuf>,
}

impl Default for Destination {
    fn default() -> Self {
        Destination {
            tar: true,
            dest: None,
        }
    }
}

/// What a push asks for (`push-by-digest`, `registry.insecure`); the exporter adds
/// its own [`PushOptions`](crate::PushOptions) (credentials, concurrency, retries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushRequest {
    /// Push by digest only, without a tag (`push-by-digest`).
    pub by_digest: bool,
    /// Plain HTTP (`registry.insecure`); `None` keeps the exporter's setting.
    pub insecure: Option<bool>,
}

/// Every option of one output, parsed and checked.
///
/// ```
/// use std::collections::BTreeMap;
/// use strata_exporter::{OutputKind, OutputOptions};
///
/// let options: BTreeMap<String, String> =
///     [("dest", "/tmp/image.tar"), ("name", "example:latest"), ("tar", "True")]
///         .map(|(k, v)| (k.to_string(), v.to_string()))
///         .into();
/// let parsed = OutputOptions::parse(OutputKind::Oci, &options).unwrap();
/// assert_eq!(parsed.image.names, ["example:latest"]);
/// assert!(parsed.destination.unwrap().tar);
/// assert!(OutputOptions::parse(OutputKind::Image, &options).is_err()); // no dest there
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputOptions {
    /// The exporter the options are for.
    pub kind: OutputKind,
    /// How to build the image.
    pub image: ImageOptions,
    /// Where the files go (`oci` and `docker` only).
    pub destination: Option<Destination>,
    /// The push to make: always for `registry`, with `push=true` for `image`.
    pub push: Option<PushRequest>,
    /// Image records and unpacking (`image` only).
    pub records: Option<RecordOptions>,
}

impl OutputOptions {
    /// Parses BuildKit-style options for an output of `kind`, without touching any
    /// store. Unknown options, values that cannot be used and combinations the output
    /// cannot write are errors naming the option.
    pub fn parse(kind: OutputKind, options: &BTreeMap<String, String>) -> Result<OutputOptions> {
        let mut image = ImageOptions {
            oci_media_types: kind.default_oci_media_types(),
            attestation_inline: kind.can_push(),
            ..ImageOptions::default()
        };
        let mut destination = kind.writes_files().then(Destination::default);
        let mut pushes = kind == OutputKind::Registry;
        let mut push_request = PushRequest::default();
        let mut records = (kind == OutputKind::Image).then(RecordOptions::default);
        for (key, value) in options {
            let invalid = |reason: String| Error::InvalidOption {
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            match (key.as_str(), destination.as_mut(), records.as_mut()) {
                ("name", _, _) => {
                    image.names = value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                ("oci-mediatypes", _, _) => image.oci_media_types = parse_bool(key, value)?,
                ("compression", _, _) => {
                    image.compression = Compression::parse(value).ok_or_else(|| {
                        invalid("expected uncompressed, gzip, zstd, estargz or zstd:chunked".into())
                    })?;
                }
                ("compression-level", _, _) => {
                    image.compression_level = Some(
                        value
                            .parse::<i32>()
                            .map_err(|e| invalid(format!("not an integer: {e}")))?,
                    );
                }
                ("estargz-chunk-size", _, _) => {
                    image.estargz_chunk_size = Some(
                        value
                            .parse::<u64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| invalid("expected a positive number of bytes".into()))?,
                    );
                }
                ("estargz-prioritized-files", _, _) => {
                    image.estargz_prioritized_files = Some(
                        value
                            .split(':')
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .collect(),
                    );
                }
                ("force-compression", _, _) => image.force_compression = parse_bool(key, value)?,
                (OPTION_OCI_ARTIFACT, _, _) => image.oci_artifact = parse_bool(key, value)?,
                (OPTION_ATTESTATION_INLINE, _, _) => {
                    image.attestation_inline = parse_bool(key, value)?
                }
                ("source-date-epoch", _, _) => {
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
                ("tar", Some(d), _) => d.tar = parse_bool(key, value)?,
                ("dest", Some(d), _) => {
                    if value.is_empty() {
                        return Err(invalid("empty path".into()));
                    }
                    d.dest = Some(PathBuf::from(value));
                }
                (OPTION_PUSH, _, _) if kind.can_push() => {
                    let wanted = parse_bool(key, value)?;
                    if kind == OutputKind::Registry && !wanted {
                        return Err(invalid("the registry exporter always pushes".into()));
                    }
                    pushes |= wanted;
                }
                (OPTION_PUSH_BY_DIGEST, _, _) if kind.can_push() => {
                    push_request.by_digest = parse_bool(key, value)?;
                }
                (OPTION_REGISTRY_INSECURE, _, _) if kind.can_push() => {
                    push_request.insecure = Some(parse_bool(key, value)?);
                }
                (OPTION_REWRITE_TIMESTAMP, _, _) => {
                    image.rewrite_timestamp = parse_bool(key, value)?;
                }
                (OPTION_STORE, _, Some(r)) => r.store = parse_bool(key, value)?,
                (OPTION_UNPACK, _, Some(r)) => r.unpack = parse_bool(key, value)?,
                (OPTION_DANGLING_NAME_PREFIX, _, Some(r)) => {
                    // Empty is unset, as in BuildKit.
                    if value.contains(['@', ',']) || value.chars().any(char::is_whitespace) {
                        return Err(invalid(
                            "a repository name, without digest, comma or spaces".into(),
                        ));
                    }
                    r.dangling_name_prefix = (!value.is_empty()).then(|| value.clone());
                }
                (OPTION_DANGLING_EMPTY_ONLY, _, Some(r)) => {
                    r.dangling_name_empty_only = parse_bool(key, value)?;
                }
                (OPTION_NAME_CANONICAL, _, Some(r)) => r.name_canonical = parse_bool(key, value)?,
                (k, _, _) if k.starts_with("annotation") => {
                    image.annotations.parse_option(key, value)?;
                }
                _ => {
                    return Err(Error::UnknownOption {
                        exporter: kind.name().to_string(),
                        key: key.clone(),
                    })
                }
            }
        }
        check_compression(&image)?;
        if let Some(d) = &destination {
            check_destination(kind, d)?;
        }
        let push = pushes.then_some(push_request);
        let dangling = records
            .as_ref()
            .is_some_and(|r| r.dangling_name_prefix.is_some());
        if let Some(r) = &records {
            check_records(r, &image)?;
        }
        if push.is_some() && image.names.is_empty() && !dangling {
            return Err(Error::InvalidOption {
                key: "name".into(),
                value: String::new(),
                reason: "pushing needs name=HOST/REPO[:TAG]".into(),
            });
        }
        Ok(OutputOptions {
            kind,
            image,
            destination,
            push,
            records,
        })
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use strata_oci::Platform;

    /// An exporter option map from `pairs` (for tests).
    pub(crate) fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_buildkit_options() {
        let parsed = OutputOptions::parse(
            OutputKind::Oci,
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
        )
        .unwrap();
        let (img, out) = (parsed.image, parsed.destination.unwrap());
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
            (
                &[("compression", "zstd:chunked"), ("compression-level", "23")],
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
            let err = OutputOptions::parse(OutputKind::Oci, &opts(pairs)).unwrap_err();
            assert!(err.to_string().contains(named), "{err} should name {named}");
        }
        // tar/dest are unknown to the image exporter.
        let err = OutputOptions::parse(OutputKind::Image, &opts(&[("dest", "/x")])).unwrap_err();
        assert!(matches!(err, Error::UnknownOption { ref key, .. } if key == "dest"));
        // zstd cannot be expressed with Docker media types.
        let err = OutputOptions::parse(OutputKind::Docker, &opts(&[("compression", "zstd")]))
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedCompression { .. }));
        let err = OutputOptions::parse(
            OutputKind::Docker,
            &opts(&[("compression", "zstd:chunked")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("compression=zstd:chunked"),
            "{err}"
        );
        // zstd:chunked takes zstd's levels.
        let parsed = OutputOptions::parse(
            OutputKind::Oci,
            &opts(&[("compression", "zstd:chunked"), ("compression-level", "19")]),
        )
        .expect("zstd:chunked at level 19");
        assert_eq!(parsed.image.compression, Compression::ZstdChunked);
        assert_eq!(parsed.image.compression_level, Some(19));
    }

    #[test]
    fn push_options_are_parsed_for_the_kinds_that_push() {
        let parsed = OutputOptions::parse(
            OutputKind::Image,
            &opts(&[
                ("push", "true"),
                ("push-by-digest", "true"),
                ("registry.insecure", "true"),
                ("name", "r/x"),
            ]),
        )
        .unwrap();
        assert_eq!(parsed.image.names, vec!["r/x"]);
        let t = parsed.push.unwrap();
        assert!(t.by_digest && t.insecure == Some(true));
        // Without push=true the image exporter does not push.
        let parsed =
            OutputOptions::parse(OutputKind::Image, &opts(&[("registry.insecure", "true")]))
                .unwrap();
        assert!(parsed.push.is_none());
        // The registry exporter always does, and refuses push=false.
        let parsed = OutputOptions::parse(OutputKind::Registry, &opts(&[("name", "r/x")])).unwrap();
        assert!(parsed
            .push
            .is_some_and(|t| !t.by_digest && t.insecure.is_none()));
        let err = OutputOptions::parse(
            OutputKind::Registry,
            &opts(&[("push", "false"), ("name", "r/x")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("push"), "{err}");
        let err = OutputOptions::parse(OutputKind::Image, &opts(&[("push-by-digest", "maybe")]))
            .unwrap_err();
        assert!(err.to_string().contains("push-by-digest"), "{err}");
        // Pushing needs a name; the file outputs do not push.
        let err = OutputOptions::parse(OutputKind::Registry, &opts(&[])).unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
        let err = OutputOptions::parse(OutputKind::Oci, &opts(&[("push", "true")])).unwrap_err();
        assert!(matches!(err, Error::UnknownOption { ref key, .. } if key == "push"));
    }

    #[test]
    fn destinations_are_checked_without_a_store() {
        let err = OutputOptions::parse(OutputKind::Docker, &opts(&[("tar", "False")])).unwrap_err();
        assert!(err.to_string().contains("only writes tars"), "{err}");
        let err = OutputOptions::parse(OutputKind::Oci, &opts(&[("tar", "F")])).unwrap_err();
        assert!(
            err.to_string().contains("tar=false needs a destination"),
            "{err}"
        );
        let parsed =
            OutputOptions::parse(OutputKind::Oci, &opts(&[("tar", "False"), ("dest", "/d")]))
                .unwrap();
        assert_eq!(
            parsed.destination,
            Some(Destination {
                tar: false,
                dest: Some(PathBuf::from("/d"))
            })
        );
        assert!(OutputOptions::parse(OutputKind::Docker, &opts(&[]))
            .is_ok_and(|p| !p.image.oci_media_types && p.destination.is_some()));
    }
}
