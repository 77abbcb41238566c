//! What a caller asks to attest (buildx's `--attest` fields); `Source::add_attestations`
//! turns the requests into statements and generators on the platforms.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_oci::Platform;

use super::provenance::ProvenanceMode;
use crate::error::{Error, Result};

/// One `--attest` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestRequest {
    /// `type=provenance[,mode=min|max]`: SLSA v1 provenance made by strata
    /// ([`ProvenanceGenerator`](crate::ProvenanceGenerator)) for every platform.
    Provenance {
        /// How much the predicate says (buildx's `mode`, default `min`).
        mode: ProvenanceMode,
    },
    /// `type=sbom`: an SPDX SBOM read from every platform's layers
    /// ([`SbomGenerator`](crate::SbomGenerator)).
    Sbom,
    /// `type=file,path=STATEMENT.json[,platform=OS/ARCH[/VARIANT]]`: a caller's
    /// in-toto v1 statement, for one platform or (without `platform`) every one.
    File {
        /// The statement file.
        path: PathBuf,
        /// The platform it is about; `None` for every platform.
        platform: Option<Platform>,
    },
}

impl AttestRequest {
    /// Reads one request from its fields (`type=…` and the type's own keys, as
    /// buildx's `--attest` CSV gives them). Unknown types and keys, bad modes and
    /// platforms are [`Error::InvalidAttest`] naming the field.
    ///
    /// ```
    /// use strata_exporter::{AttestRequest, ProvenanceMode};
    /// let fields = [("type", "provenance"), ("mode", "max")]
    ///     .map(|(k, v)| (k.to_string(), v.to_string()))
    ///     .into();
    /// assert_eq!(
    ///     AttestRequest::parse(&fields).unwrap(),
    ///     AttestRequest::Provenance { mode: ProvenanceMode::Max }
    /// );
    /// ```
    pub fn parse(fields: &BTreeMap<String, String>) -> Result<AttestRequest> {
        let invalid = |field: &str, reason: String| Error::InvalidAttest {
            field: field.to_string(),
            reason,
        };
        let kind = fields
            .get("type")
            .ok_or_else(|| invalid("type", "missing: type=provenance|sbom|file".into()))?;
        let unknown = |allowed: &[&str]| {
            fields
                .keys()
                .find(|k| k.as_str() != "type" && !allowed.contains(&k.as_str()))
                .map(|k| invalid(k, format!("unknown field for type={kind}")))
        };
        match kind.as_str() {
            "provenance" => {
                if let Some(e) = unknown(&["mode"]) {
                    return Err(e);
                }
                let mode = match fields.get("mode").map(String::as_str) {
                    None | Some("min") => ProvenanceMode::Min,
                    // BuildKit takes `full` for `max`.
                    Some("max" | "full") => ProvenanceMode::Max,
                    Some(other) => {
                        return Err(invalid("mode", format!("{other:?}: expected min or max")))
                    }
                };
                Ok(AttestRequest::Provenance { mode })
            }
            "sbom" => match unknown(&[]) {
                // BuildKit's `generator=IMAGE` runs a scanner image; strata reads the
                // layers itself, so it takes no fields.
                Some(e) => Err(e),
                None => Ok(AttestRequest::Sbom),
            },
            "file" => {
                if let Some(e) = unknown(&["path", "platform"]) {
                    return Err(e);
                }
                let path = fields
                    .get("path")
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| invalid("path", "type=file needs path=STATEMENT.json".into()))?;
                let platform = fields
                    .get("platform")
                    .map(|p| {
                        Platform::parse(p).ok_or_else(|| {
                            invalid("platform", format!("{p:?}: expected os/arch[/variant]"))
                        })
                    })
                    .transpose()?;
                Ok(AttestRequest::File {
                    path: PathBuf::from(path),
                    platform,
                })
            }
            other => Err(invalid(
                "type",
                format!("{other:?}: expected provenance, sbom or file"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_are_read_from_buildx_fields() {
        assert_eq!(
            AttestRequest::parse(&fields(&[("type", "provenance")])).unwrap(),
            AttestRequest::Provenance {
                mode: ProvenanceMode::Min
            }
        );
        assert_eq!(
            AttestRequest::parse(&fields(&[
                ("type", "file"),
                ("path", "s.json"),
                ("platform", "linux/arm64")
            ]))
            .unwrap(),
            AttestRequest::File {
                path: "s.json".into(),
                platform: Platform::parse("linux/arm64")
            }
        );
        for (pairs, field) in [
            (&[("type", "provenance"), ("mode", "most")][..], "mode"),
            (&[("type", "provenance"), ("colour", "red")][..], "colour"),
            (&[("type", "file")][..], "path"),
            (
                &[("type", "file"), ("path", "a"), ("platform", "linux")][..],
                "platform",
            ),
            (&[("type", "vex")][..], "type"),
            (&[("mode", "max")][..], "type"),
        ] {
            match AttestRequest::parse(&fields(pairs)) {
                Err(Error::InvalidAttest { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{pairs:?} gave {other:?}"),
            }
        }
    }
}
