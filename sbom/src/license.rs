//! A package's license string as an SPDX `licenseDeclared` value: a valid SPDX
//! expression when the string is one or can be made one (Debian's DEP-5 short names,
//! deprecated or imprecise identifiers, lower-case operators), else a `LicenseRef-`
//! carrying the original text, so a database string never makes the document invalid.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use spdx::{Expression, ParseMode};

/// What an SBOM declares for a package's license.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeclaredLicense {
    /// The package says nothing (`NOASSERTION`).
    NoAssertion,
    /// A valid SPDX license expression.
    Expression(String),
    /// A license outside the SPDX list: its `LicenseRef-` id and the original text
    /// (declared in the document's `hasExtractedLicensingInfos`).
    Reference {
        /// `LicenseRef-…`.
        id: String,
        /// The string the database had.
        text: String,
    },
}

/// Debian DEP-5 short names (and rpm's old Fedora names) that are not SPDX ids as
/// written, with the SPDX expression they stand for.
const RENAMES: &[(&str, &str)] = &[
    ("Expat", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("Apache-2", "Apache-2.0"),
    ("Artistic", "Artistic-1.0"),
    ("Artistic-1", "Artistic-1.0"),
    ("Artistic-2", "Artistic-2.0"),
    ("Perl", "(Artistic-1.0-Perl OR GPL-1.0-or-later)"),
    ("CC0", "CC0-1.0"),
    ("MPL-2", "MPL-2.0"),
    ("ZPL-2.1", "ZPL-2.1"),
    ("ASL-2.0", "Apache-2.0"),
];

/// `GPL-2`, `GPL-2+`, `LGPL-2.1+`, `GPLv3+`, `GFDL-1.3+` → the SPDX `-only` /
/// `-or-later` id.
fn gnu_name(token: &str) -> Option<String> {
    let (base, or_later) = match token.strip_suffix('+') {
        Some(base) => (base, true),
        None => (token, false),
    };
    let family = ["AGPL", "LGPL", "GPL", "GFDL"]
        .into_iter()
        .find(|f| base.starts_with(f))?;
    let version = base[family.len()..].trim_start_matches(['-', 'v']);
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let version = if version.contains('.') {
        version.to_string()
    } else {
        format!("{version}.0")
    };
    spdx::gnu_license_id(&format!("{family}-{version}"), or_later).map(|id| id.name.to_string())
}

/// Rewrites the words of `raw` that are DEP-5 or GNU short names into SPDX ids.
fn rename_tokens(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let renamed = RENAMES
            .iter()
            .find(|(from, _)| from == word)
            .map(|(_, to)| to.to_string())
            .or_else(|| {
                spdx::license_id(word)
                    .is_none()
                    .then(|| gnu_name(word))
                    .flatten()
            });
        out.push_str(renamed.as_deref().unwrap_or(word));
        word.clear();
    };
    for c in raw.chars() {
        if c.is_whitespace() || c == '(' || c == ')' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn strict(expression: &str) -> Option<String> {
    let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
    Expression::parse_mode(&expression, ParseMode::STRICT)
        .ok()
        .map(|_| expression)
}

/// The `licenseDeclared` of a package whose database says `raw`.
pub(crate) fn declared_license(raw: Option<&str>) -> DeclaredLicense {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return DeclaredLicense::NoAssertion;
    };
    // A LicenseRef the package names would have to be declared with a text the
    // database does not have: the whole string becomes one reference instead.
    let references = raw.contains("LicenseRef-") || raw.contains("DocumentRef-");
    if !references {
        if let Some(valid) = strict(raw) {
            return DeclaredLicense::Expression(valid);
        }
        let renamed = rename_tokens(raw);
        let canonical = match Expression::canonicalize(&renamed) {
            Ok(Some(canonical)) => canonical,
            _ => renamed,
        };
        if let Some(valid) = strict(&canonical) {
            return DeclaredLicense::Expression(valid);
        }
    }
    DeclaredLicense::Reference {
        id: reference_id(raw),
        text: raw.to_string(),
    }
}

/// `LicenseRef-<the string's letters, digits, dots and dashes>-<8 hex of its sha256>`:
/// readable, unique per string, and within the id's allowed characters.
fn reference_id(raw: &str) -> String {
    let mut id = String::from("LicenseRef-");
    let mut dash = false;
    for c in raw.chars().take(48) {
        if c.is_ascii_alphanumeric() || c == '.' {
            id.push(c);
            dash = false;
        } else if !dash {
            id.push('-');
            dash = true;
        }
    }
    if !id.ends_with('-') {
        id.push('-');
    }
    for b in &Sha256::digest(raw.as_bytes())[..4] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expression(raw: &str) -> String {
        match declared_license(Some(raw)) {
            DeclaredLicense::Expression(e) => e,
            other => panic!("{raw:?}: expected an expression, got {other:?}"),
        }
    }

    #[test]
    fn valid_expressions_stay_as_they_are() {
        assert_eq!(expression("MIT"), "MIT");
        assert_eq!(
            expression("GPL-2.0-or-later AND  LGPL-2.1-only"),
            "GPL-2.0-or-later AND LGPL-2.1-only"
        );
        assert_eq!(
            expression("Apache-2.0 WITH LLVM-exception"),
            "Apache-2.0 WITH LLVM-exception"
        );
    }

    #[test]
    fn debian_and_old_names_are_translated() {
        assert_eq!(
            expression("Zlib AND (GPL-2+ or Artistic)"),
            "Zlib AND (GPL-2.0-or-later OR Artistic-1.0)"
        );
        assert_eq!(expression("Expat AND BSD-3-clause"), "MIT AND BSD-3-Clause");
        assert_eq!(expression("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(expression("GPL-2.0"), "GPL-2.0-only");
        assert_eq!(expression("GPLv3+"), "GPL-3.0-or-later");
        assert_eq!(
            expression("Perl"),
            "(Artistic-1.0-Perl OR GPL-1.0-or-later)"
        );
    }

    #[test]
    fn anything_else_is_a_reference_to_the_original_text() {
        for raw in [
            "custom",
            "public-domain",
            "GPL-2+ with OpenSSL exception",
            "LicenseRef-foo",
            "MIT AND (",
        ] {
            match declared_license(Some(raw)) {
                DeclaredLicense::Reference { id, text } => {
                    assert_eq!(text, raw);
                    assert!(id.starts_with("LicenseRef-"), "{id}");
                    assert!(
                        id["LicenseRef-".len()..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                        "{id}"
                    );
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        assert_ne!(reference_id("a b"), reference_id("a-b"));
        assert_eq!(declared_license(None), DeclaredLicense::NoAssertion);
        assert_eq!(declared_license(Some("  ")), DeclaredLicense::NoAssertion);
    }
}
