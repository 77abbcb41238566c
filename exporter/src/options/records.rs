//! The `image` exporter's record options (BuildKit's `store`, `unpack`,
//! `dangling-name-prefix`, `danging-name-empty-only`, `name-canonical`): parsed in
//! `OutputOptions::parse`, and the names an image is recorded and pushed under.

use strata_oci::Digest;

use super::{ImageOptions, OPTION_UNPACK};
use crate::error::{Error, Result};

/// What the `image` exporter does with the committed image besides pushing it
/// (BuildKit's `store`, `unpack`, `dangling-name-prefix`, `danging-name-empty-only`,
/// `name-canonical`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// Record the image under its names (`store`, default true). False commits no
    /// image record (with `push=true`: the image is only pushed); the blobs written are
    /// left to garbage collection.
    pub store: bool,
    /// After naming, unpack the image (the host platform's, for an index) into the
    /// exporter's [`UnpackTarget`](crate::UnpackTarget), keyed by chainID (`unpack`).
    pub unpack: bool,
    /// Also name the image `PREFIX@<digest>` (`dangling-name-prefix`).
    pub dangling_name_prefix: Option<String>,
    /// Use the dangling name only when no `name` is given (`danging-name-empty-only`).
    pub dangling_name_empty_only: bool,
    /// Besides each `NAME`, record `NAME@<digest>` (`name-canonical`); names that
    /// already hold a digest are recorded once.
    pub name_canonical: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            store: true,
            unpack: false,
            dangling_name_prefix: None,
            dangling_name_empty_only: false,
            name_canonical: false,
        }
    }
}

impl RecordOptions {
    /// The names the image with root `digest` gets, as BuildKit computes them: the
    /// given `names`, then `PREFIX@<digest>` when a dangling prefix is set (unless
    /// `dangling_name_empty_only` and there are names). These are the names pushed.
    pub fn target_names(&self, names: &[String], digest: &Digest) -> Vec<String> {
        let mut out = names.to_vec();
        if let Some(prefix) = &self.dangling_name_prefix {
            if !self.dangling_name_empty_only || names.is_empty() {
                out.push(format!("{prefix}@{digest}"));
            }
        }
        out
    }

    /// The image records to write for the image with root `digest` named `names`
    /// ([`RecordOptions::target_names`]): each name, followed by `NAME@<digest>` with
    /// `name_canonical` when the name holds no digest yet (as BuildKit, the canonical
    /// name keeps a tag: `repo:tag@sha256:…`). A dangling name given alone is never
    /// doubled: it holds a digest already.
    pub fn record_names(&self, names: &[String], digest: &Digest) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.target_names(names, digest) {
            let canonical =
                (self.name_canonical && !name.contains('@')).then(|| format!("{name}@{digest}"));
            out.push(name);
            out.extend(canonical);
        }
        out
    }
}

/// An unpacked image is kept by its image record: `unpack=true` needs `store` and a
/// name to record.
pub(crate) fn check_records(records: &RecordOptions, image: &ImageOptions) -> Result<()> {
    if !records.unpack {
        return Ok(());
    }
    let refuse = |reason: &str| {
        Err(Error::InvalidOption {
            key: OPTION_UNPACK.into(),
            value: "true".into(),
            reason: reason.into(),
        })
    };
    if !records.store {
        return refuse("store=false records no image, so nothing would keep the unpacked snapshot");
    }
    if image.names.is_empty() && records.dangling_name_prefix.is_none() {
        return refuse("unpacking needs name=REF (or dangling-name-prefix) to record the image");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::tests::opts;
    use crate::options::{OutputKind, OutputOptions};

    #[test]
    fn image_record_options_are_buildkits() {
        let parsed = OutputOptions::parse(OutputKind::Image, &opts(&[("name", "r/x:1")])).unwrap();
        assert_eq!(parsed.records, Some(RecordOptions::default()));
        assert!(parsed.records.unwrap().store);
        let parsed = OutputOptions::parse(
            OutputKind::Image,
            &opts(&[
                ("name", "r/x:1"),
                ("store", "true"),
                ("unpack", ""),
                ("dangling-name-prefix", "dangling/img"),
                ("danging-name-empty-only", "true"),
                ("name-canonical", "1"),
                ("rewrite-timestamp", "true"),
            ]),
        )
        .unwrap();
        assert!(parsed.image.rewrite_timestamp);
        assert_eq!(
            parsed.records,
            Some(RecordOptions {
                store: true,
                unpack: true,
                dangling_name_prefix: Some("dangling/img".into()),
                dangling_name_empty_only: true,
                name_canonical: true,
            })
        );
        // store=false with push: only pushed.
        let parsed = OutputOptions::parse(
            OutputKind::Image,
            &opts(&[("name", "r/x"), ("store", "false"), ("push", "true")]),
        )
        .unwrap();
        assert!(parsed.push.is_some() && !parsed.records.unwrap().store);
        // An empty prefix is unset; a dangling prefix is a name to push to.
        let parsed =
            OutputOptions::parse(OutputKind::Image, &opts(&[("dangling-name-prefix", "")]))
                .unwrap();
        assert_eq!(parsed.records.unwrap().dangling_name_prefix, None);
        assert!(OutputOptions::parse(
            OutputKind::Image,
            &opts(&[("dangling-name-prefix", "r/d"), ("push", "true")])
        )
        .is_ok());
        // rewrite-timestamp is every exporter's; the record options are the image's.
        assert!(
            OutputOptions::parse(OutputKind::Oci, &opts(&[("rewrite-timestamp", "1")]))
                .is_ok_and(|p| p.image.rewrite_timestamp && p.records.is_none())
        );
        for key in ["store", "unpack", "name-canonical", "dangling-name-prefix"] {
            for kind in [OutputKind::Oci, OutputKind::Docker, OutputKind::Registry] {
                let mut o = opts(&[(key, "true"), ("name", "r/x")]);
                o.insert("dest".into(), "/tmp/x".into());
                o.retain(|k, _| k != "dest" || kind.writes_files());
                let err = OutputOptions::parse(kind, &o).unwrap_err();
                assert!(
                    matches!(err, Error::UnknownOption { key: ref k, .. } if k == key),
                    "{kind} {key}: {err}"
                );
            }
        }
    }

    #[test]
    fn bad_record_options_are_named() {
        /// Options, the option named in the error, what the reason says.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("store", "maybe")], "store", "true or false"),
            (&[("unpack", "yes")], "unpack", "true or false"),
            (
                &[("name-canonical", "2")],
                "name-canonical",
                "true or false",
            ),
            (
                &[("rewrite-timestamp", "x")],
                "rewrite-timestamp",
                "true or false",
            ),
            (
                &[("dangling-name-prefix", "r/x@sha256:00")],
                "dangling-name-prefix",
                "without digest",
            ),
            (&[("unpack", "true")], "unpack", "needs name=REF"),
            (
                &[("unpack", "true"), ("store", "false"), ("name", "r/x")],
                "unpack",
                "store=false",
            ),
        ];
        for (pairs, key, reason) in cases {
            let err = OutputOptions::parse(OutputKind::Image, &opts(pairs)).unwrap_err();
            match &err {
                Error::InvalidOption {
                    key: k, reason: r, ..
                } => {
                    assert_eq!(k, key, "{err}");
                    assert!(r.contains(reason), "{err} should say {reason}");
                }
                other => panic!("{pairs:?} gave {other:?}"),
            }
        }
        // A dangling name is enough to unpack.
        assert!(OutputOptions::parse(
            OutputKind::Image,
            &opts(&[("unpack", "true"), ("dangling-name-prefix", "d/x")])
        )
        .is_ok());
    }

    #[test]
    fn names_and_records_follow_buildkit() {
        let digest = Digest::sha256_of(b"root");
        let names = vec!["r/x:1".to_string(), format!("r/y@{digest}")];
        let plain = RecordOptions::default();
        assert_eq!(plain.target_names(&names, &digest), names);
        assert_eq!(plain.record_names(&names, &digest), names);
        let canonical = RecordOptions {
            name_canonical: true,
            ..RecordOptions::default()
        };
        assert_eq!(
            canonical.record_names(&names, &digest),
            vec![
                "r/x:1".to_string(),
                format!("r/x:1@{digest}"),
                format!("r/y@{digest}")
            ]
        );
        let dangling = RecordOptions {
            dangling_name_prefix: Some("d/img".into()),
            name_canonical: true,
            ..RecordOptions::default()
        };
        // Alone: the dangling name only (it holds the digest already).
        assert_eq!(
            dangling.record_names(&[], &digest),
            vec![format!("d/img@{digest}")]
        );
        // With names: in addition to them, unless empty-only.
        assert_eq!(
            dangling.target_names(&names[..1], &digest),
            vec!["r/x:1".to_string(), format!("d/img@{digest}")]
        );
        let empty_only = RecordOptions {
            dangling_name_empty_only: true,
            ..dangling.clone()
        };
        assert_eq!(empty_only.target_names(&names[..1], &digest), &names[..1]);
        assert_eq!(
            empty_only.target_names(&[], &digest),
            vec![format!("d/img@{digest}")]
        );
    }
}
