//! `-o/--output` in buildx's syntax: one CSV record of `key=value` fields, one of them
//! `type=oci|docker|image|registry`.
//!
//! buildx reads the value with Go's `encoding/csv`; the parser here follows the same
//! rules (fields separated by commas, a field may be wrapped in double quotes, `""`
//! inside quotes is one quote, a quote inside an unquoted field is an error). It is
//! written by hand because the whole grammar is one record of a few fields; a CSV
//! crate would bring multi-record machinery for nothing.

use std::collections::BTreeMap;

use strata_exporter::OutputKind;

/// A parsed `--output`: the exporter and its options (BuildKit's names), `type` removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The exporter.
    pub kind: OutputKind,
    /// Every other `key=value`, as given.
    pub options: BTreeMap<String, String>,
}

/// Splits one CSV record with Go `encoding/csv` rules.
pub fn csv_fields(input: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => {
                        return Err(format!(
                            "bare \" in field {field:?}: quote the whole field (\"key=value\")"
                        ))
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// Parses an `--output` value. Errors say what is wrong with which field; option
/// values are checked by the exporter's own parser (`OutputOptions::parse`).
pub fn parse_output(value: &str) -> Result<OutputSpec, String> {
    if value.trim().is_empty() {
        return Err("empty output: expected type=oci|docker|image|registry[,key=value…]".into());
    }
    let mut kind = None;
    let mut options = BTreeMap::new();
    for field in csv_fields(value)? {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let Some((key, val)) = field.split_once('=') else {
            return Err(format!("field {field:?} is not key=value"));
        };
        let key = key.trim().to_lowercase_unless_annotation();
        if key == "type" {
            if kind.is_some() {
                return Err("type is given twice".into());
            }
            kind = Some(OutputKind::from_name(val).ok_or_else(|| {
                format!("unknown type {val:?}: expected oci, docker, image or registry")
            })?);
        } else if options.insert(key.clone(), val.to_string()).is_some() {
            return Err(format!("option {key:?} is given twice"));
        }
    }
    let kind = kind.ok_or("missing type=oci|docker|image|registry")?;
    Ok(OutputSpec { kind, options })
}

trait KeyCase {
    fn to_lowercase_unless_annotation(&self) -> String;
}

impl KeyCase for str {
    /// buildx lowercases option keys, except annotation keys whose names are the
    /// user's own.
    fn to_lowercase_unless_annotation(&self) -> String {
        if self.starts_with("annotation") {
            match self.split_once(['.', '[']) {
                Some((kind, _)) => {
                    format!("{}{}", kind.to_lowercase(), &self[kind.len()..])
                }
                None => self.to_lowercase(),
            }
        } else {
            self.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_syntax_with_quotes() {
        let spec = parse_output(
            r#"type=oci,dest=/tmp/a b.tar,name=x:1,"annotation.org.opencontainers.image.title=a,b","annotation.q=say ""hi""""#,
        )
        .unwrap();
        assert_eq!(spec.kind, OutputKind::Oci);
        assert_eq!(spec.options["dest"], "/tmp/a b.tar");
        assert_eq!(spec.options["name"], "x:1");
        assert_eq!(
            spec.options["annotation.org.opencontainers.image.title"],
            "a,b"
        );
        assert_eq!(spec.options["annotation.q"], r#"say "hi""#);
    }

    #[test]
    fn quoted_name_list_keeps_commas() {
        let spec = parse_output(r#"type=image,"name=a:1,b:2",Tar=false"#).unwrap();
        assert_eq!(spec.kind, OutputKind::Image);
        assert_eq!(spec.options["name"], "a:1,b:2");
        assert_eq!(spec.options["tar"], "false");
    }

    #[test]
    fn refuses_bad_records() {
        for (input, needle) in [
            ("", "empty"),
            ("dest=/tmp/x", "missing type"),
            ("type=tarball", "unknown type"),
            ("type=oci,dest", "not key=value"),
            ("type=oci,type=docker", "twice"),
            ("type=oci,name=a,name=b", "twice"),
            (r#"type=oci,"dest=x"#, "unterminated"),
            (r#"type=oci,de"st=x"#, "bare"),
            (r#"type=oci,"dest=x"y"#, "after a closing quote"),
        ] {
            let err = parse_output(input).unwrap_err();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }
}
