//! `--attest`: buildx's attestation requests, read with the exporter's parser
//! ([`AttestRequest::parse`]) and applied by the exporter
//! ([`Source::add_attestations`]) — first to the plan's platforms, before the store is
//! opened, so a bad statement file writes nothing.

use std::collections::BTreeMap;

use strata_exporter::{AttestRequest, ExportRequest, PlatformSource, Source};

use crate::error::CliError;
use crate::output::csv_fields;
use crate::plan::Plan;

/// Parses one `--attest` value (`type=provenance[,mode=min|max]`, `type=sbom`,
/// `type=file,path=FILE[,platform=P]`; CSV as `--output`).
pub fn parse_attest(value: &str) -> Result<AttestRequest, CliError> {
    let bad = |reason: String| CliError::usage(format!("invalid --attest {value:?}: {reason}"));
    let mut fields = BTreeMap::new();
    for field in csv_fields(value).map_err(bad)? {
        let Some((key, v)) = field.split_once('=') else {
            return Err(bad(format!("field {field:?} is not key=value")));
        };
        if fields.insert(key.to_string(), v.to_string()).is_some() {
            return Err(bad(format!("field {key:?} given twice")));
        }
    }
    AttestRequest::parse(&fields).map_err(|e| bad(e.to_string()))
}

/// Whether any request is for provenance (which lists where the layers came from).
pub fn wants_provenance(requests: &[AttestRequest]) -> bool {
    requests
        .iter()
        .any(|r| matches!(r, AttestRequest::Provenance { .. }))
}

/// The plan's platforms with `requests` applied (statement files read and checked
/// against the platforms): what [`attach`] later moves onto the real sources.
pub async fn check(
    plan: &Plan,
    requests: &[AttestRequest],
    export: &ExportRequest,
) -> Result<Source, CliError> {
    let mut source = Source {
        images: plan
            .platforms
            .iter()
            .map(|p| PlatformSource {
                platform: p.platform.clone(),
                config: p.config.clone(),
                ..PlatformSource::default()
            })
            .collect(),
    };
    source
        .add_attestations(requests, export)
        .await
        .map_err(|e| CliError::failed(format!("--attest: {e}")))?;
    Ok(source)
}

/// Moves the checked attestations and generators onto `images` (the same platforms,
/// in plan order).
pub fn attach(checked: Source, images: &mut [PlatformSource]) {
    for (image, checked) in images.iter_mut().zip(checked.images) {
        image.attestations = checked.attestations;
        image.generators = checked.generators;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attest_values_are_csv_fields() {
        assert!(matches!(
            parse_attest("type=file,\"path=a,b.json\"").unwrap(),
            AttestRequest::File { path, platform: None } if path.to_str() == Some("a,b.json")
        ));
        for bad in [
            "type=provenance,mode",
            "type=file,path=a,path=b",
            "type=bogus",
        ] {
            let err = parse_attest(bad).unwrap_err();
            assert!(err.to_string().contains("--attest"), "{err}");
        }
    }
}
