//! Validating in-toto statements with PyPI's `in-toto-attestation` (the reference
//! implementation's Python bindings): each statement is read into its protobuf
//! (`in_toto_attestation.v1.statement`) and validated; an SLSA v1 provenance
//! predicate must also read into `predicates.provenance.v1`'s `Provenance` message
//! (no unknown fields, RFC 3339 times).

use std::path::Path;
use std::process::Command;

/// The validator script: argv[1:] are statement files; prints `ok PATH` for each.
const VALIDATE: &str = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
for path in sys.argv[1:]:
    with open(path) as f:
        doc = json.load(f)
    Statement.copy_from_pb(json_format.ParseDict(doc, statement_pb2.Statement())).validate()
    if doc["predicateType"] == "https://slsa.dev/provenance/v1":
        json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    print("ok", path)
"#;

/// The Python that has `in_toto_attestation`: `STRATA_PYTHON` (what
/// `scripts/test.sh` sets after installing it into a virtualenv), else `python3`.
pub fn in_toto_python() -> String {
    let python = std::env::var("STRATA_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let found = Command::new(&python)
        .args(["-c", "import in_toto_attestation"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{python} has no in_toto_attestation: run scripts/test.sh (which installs it into a \
         virtualenv and sets STRATA_PYTHON) or `pip install in-toto-attestation`"
    );
    python
}

/// Validates every statement file in `paths` with `in-toto-attestation`; panics
/// naming the file and the validator's complaint.
pub fn validate_statements(paths: &[&Path]) {
    assert!(!paths.is_empty(), "no statement to validate");
    let out = Command::new(in_toto_python())
        .args(["-c", VALIDATE])
        .args(paths)
        .output()
        .expect("run the in-toto validator");
    assert!(
        out.status.success(),
        "in-toto-attestation refused a statement:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), paths.len(), "{stdout}");
}
