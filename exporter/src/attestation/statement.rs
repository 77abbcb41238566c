//! In-toto v1 statements: made from an [`Attestation`] once its image's manifest is
//! known (BuildKit's `attestation.MakeInTotoStatements`), and read from a caller's
//! statement file.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use strata_oci::{Digest, Platform};

use tokio::io::AsyncReadExt;

use super::{
    image_purl, Attestation, AttestationSubject, IN_TOTO_STATEMENT_V1, MAX_STATEMENT_SIZE,
};
use crate::error::{Error, Result};

/// The statement of `attestation` about the image whose manifest is `manifest` on
/// `platform`, named `names`: `Image` subjects become one subject per name (its purl)
/// with the manifest's digest, or one digest-only subject when there is no name (an
/// in-toto v1 statement needs a subject).
pub(crate) fn make_statement(
    attestation: &Attestation,
    names: &[String],
    platform: &Platform,
    manifest: &Digest,
) -> Result<Value> {
    let image_digest = digest_set(manifest);
    let wanted = match attestation.subjects.as_slice() {
        [] => &[AttestationSubject::Image][..],
        subjects => subjects,
    };
    let mut subjects = Vec::new();
    for subject in wanted {
        match subject {
            AttestationSubject::Image if names.is_empty() => {
                subjects.push(json!({ "digest": image_digest }));
            }
            AttestationSubject::Image => {
                for name in names {
                    subjects.push(json!({
                        "name": image_purl(name, platform)?,
                        "digest": image_digest,
                    }));
                }
            }
            AttestationSubject::Raw { name, digest } => {
                subjects.push(json!({ "name": name, "digest": digest }));
            }
        }
    }
    Ok(json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": subjects,
        "predicateType": attestation.predicate_type,
        "predicate": attestation.predicate,
    }))
}

/// `{"sha256": HEX}` of `digest`.
fn digest_set(digest: &Digest) -> BTreeMap<String, String> {
    let algorithm = digest
        .to_string()
        .split_once(':')
        .map_or_else(|| "sha256".to_string(), |(a, _)| a.to_string());
    [(algorithm, digest.hex().to_string())].into()
}

/// Reads the in-toto v1 statement in `bytes` (from the file `path`, which errors
/// name): `_type` must be [`IN_TOTO_STATEMENT_V1`], `predicateType` a non-empty
/// string, `predicate` an object; its subjects, if any, must each have a digest set,
/// and become [`AttestationSubject::Raw`]; none means the image itself.
pub(crate) fn parse_statement(path: &Path, bytes: &[u8]) -> Result<Attestation> {
    let bad = |reason: String| Error::StatementFile {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(statement) = value else {
        return Err(bad("not a JSON object".into()));
    };
    match statement.get("_type") {
        Some(Value::String(t)) if t == IN_TOTO_STATEMENT_V1 => {}
        Some(other) => {
            return Err(bad(format!(
                "_type is {other}, not an in-toto v1 statement ({IN_TOTO_STATEMENT_V1:?})"
            )))
        }
        None => {
            return Err(bad(format!(
                "no _type: not an in-toto v1 statement ({IN_TOTO_STATEMENT_V1:?})"
            )))
        }
    }
    let predicate_type = match statement.get("predicateType") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err(bad("predicateType must be a non-empty string".into())),
    };
    let predicate = match statement.get("predicate") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => return Err(bad("predicate must be a JSON object".into())),
    };
    let subjects = match statement.get("subject") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(subjects)) => subjects
            .iter()
            .enumerate()
            .map(|(i, s)| raw_subject(s).map_err(|reason| bad(format!("subject {i}: {reason}"))))
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(bad("subject must be an array".into())),
    };
    Ok(Attestation {
        predicate_type,
        predicate,
        subjects,
        inline_only: false,
    })
}

/// One `subject` entry of a statement file: a name (optional) and a digest set.
fn raw_subject(subject: &Value) -> std::result::Result<AttestationSubject, String> {
    let Value::Object(fields) = subject else {
        return Err("not a JSON object".into());
    };
    let name = match fields.get("name") {
        None => String::new(),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err("name must be a string".into()),
    };
    let digest = match fields.get("digest") {
        Some(Value::Object(set)) if !set.is_empty() => string_map(set)?,
        _ => return Err("digest must be a non-empty object of algorithm → hex".into()),
    };
    Ok(AttestationSubject::Raw { name, digest })
}

fn string_map(set: &Map<String, Value>) -> std::result::Result<BTreeMap<String, String>, String> {
    set.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("digest {k:?} must be a string")),
        })
        .collect()
}

/// The statement of the file `path` ([`AttestRequest::File`]): a regular file of at
/// most [`MAX_STATEMENT_SIZE`] bytes holding an in-toto v1 statement.
///
/// [`AttestRequest::File`]: super::AttestRequest::File
pub(crate) async fn read_statement_file(path: &std::path::Path) -> Result<Attestation> {
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
    parse_statement(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    #[test]
    fn image_subjects_are_the_names_with_the_manifest_digest() {
        let manifest = Digest::sha256_of(b"m");
        let att = Attestation::new("https://example.com/p", json!({"k": 1}));
        let names = ["r.example/a:1".to_string(), "b".to_string()];
        let st = make_statement(&att, &names, &amd64(), &manifest).unwrap();
        assert_eq!(st["_type"], IN_TOTO_STATEMENT_V1);
        assert_eq!(st["predicateType"], "https://example.com/p");
        let subjects = st["subject"].as_array().unwrap();
        assert_eq!(subjects.len(), 2);
        assert_eq!(
            subjects[0]["name"],
            "pkg:docker/r.example/a@1?platform=linux%2Famd64"
        );
        assert_eq!(subjects[1]["digest"]["sha256"], manifest.hex());
        let st = make_statement(&att, &[], &amd64(), &manifest).unwrap();
        assert_eq!(
            st["subject"],
            json!([{"digest": {"sha256": manifest.hex()}}])
        );
    }

    #[test]
    fn statement_files_must_be_in_toto_v1() {
        let path = Path::new("/tmp/s.json");
        let ok =
            br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"t","predicate":{"a":1},
                      "subject":[{"name":"x","digest":{"sha256":"ab"}}]}"#;
        let att = parse_statement(path, ok).unwrap();
        assert_eq!(att.predicate_type, "t");
        assert_eq!(
            att.subjects,
            [AttestationSubject::Raw {
                name: "x".into(),
                digest: [("sha256".to_string(), "ab".to_string())].into()
            }]
        );
        for (bytes, says) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"t","predicate":{}}"#, "_type"),
            (br#"{"predicateType":"t","predicate":{}}"#, "no _type"),
            (br#"{"_type":"https://in-toto.io/Statement/v1","predicate":{}}"#, "predicateType"),
            (br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"t","predicate":{},"subject":[{"name":"x"}]}"#, "subject 0"),
        ] {
            let err = parse_statement(path, bytes).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("/tmp/s.json") && msg.contains(says), "{msg}");
        }
    }
}
