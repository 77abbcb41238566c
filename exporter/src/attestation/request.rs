//! What a caller asks to attest (buildx's `--attest` fields), and how the requests
//! become statements and generators on a [`Source`]'s platforms.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use strata_oci::Platform;
use tokio::io::AsyncReadExt;

use super::provenance::{ProvenanceGenerator, ProvenanceMode};
use super::sbom::SbomGenerator;
use super::statement::parse_statement;
use super::MAX_STATEMENT_SIZE;
use crate::error::{Error, Result};
use crate::options::OutputKind;
use crate::source::Source;

/// One `--attest` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestRequest {
    /// `type=provenance[,mode=min|max]`: SLSA v1 provenance made by strata
    /// ([`ProvenanceGenerator`]) for every platform.
    Provenance {
        /// How much the predicate says (buildx's `mode`, default `min`).
        mode: ProvenanceMode,
    },
    /// `type=sbom`: an SPDX SBOM read from every platform's layers
    /// ([`SbomGenerator`]).
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

/// The export being attested, as provenance records it: its output and options
/// (`externalParameters`) and when it started.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The output (`type=`).
    pub output: OutputKind,
    /// The output's options, as given (BuildKit's names; `source-date-epoch` makes
    /// the provenance reproducible).
    pub options: BTreeMap<String, String>,
    /// When the export started (`runDetails.metadata.startedOn`).
    pub started_on: SystemTime,
}

impl Source {
    /// Applies `requests` to the platforms: statement files are read (at most
    /// [`MAX_STATEMENT_SIZE`] bytes), checked and added to the platform they name (or
    /// every platform); provenance adds one shared [`ProvenanceGenerator`] to every
    /// platform, and an SBOM one shared [`SbomGenerator`]. A statement file that
    /// cannot be read, is not an in-toto v1 statement, or names a platform the source
    /// lacks is [`Error::StatementFile`] naming it.
    pub async fn add_attestations(
        &mut self,
        requests: &[AttestRequest],
        export: &ExportRequest,
    ) -> Result<()> {
        if self.images.is_empty() {
            self.images.push(Default::default());
        }
        for request in requests {
            match request {
                AttestRequest::Provenance { mode } => {
                    let generator = Arc::new(ProvenanceGenerator::new(*mode, export.clone()));
                    for image in &mut self.images {
                        image.generators.push(generator.clone());
                    }
                }
                AttestRequest::Sbom => {
                    let generator = Arc::new(SbomGenerator::new());
                    for image in &mut self.images {
                        image.generators.push(generator.clone());
                    }
                }
                AttestRequest::File { path, platform } => {
                    let attestation = parse_statement(path, &read_statement(path).await?)?;
                    let platforms: Vec<Platform> =
                        self.images.iter().map(|i| i.effective_platform()).collect();
                    let mut added = false;
                    for (image, p) in self.images.iter_mut().zip(&platforms) {
                        if platform.as_ref().is_none_or(|want| want == p) {
                            image.attestations.push(attestation.clone());
                            added = true;
                        }
                    }
                    if !added {
                        let has: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
                        return Err(Error::StatementFile {
                            path: path.clone(),
                            reason: format!(
                                "platform {} is not one the export has ({})",
                                platform.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                                has.join(", ")
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The bytes of the statement file `path`: a regular file of at most
/// [`MAX_STATEMENT_SIZE`] bytes.
async fn read_statement(path: &std::path::Path) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::StatementFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().await.map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATEMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_STATEMENT_SIZE {
        return Err(bad(format!("larger than {MAX_STATEMENT_SIZE} bytes")));
    }
    Ok(bytes)
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
