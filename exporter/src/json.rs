//! Canonical JSON for everything that is hashed (configs, manifests, indexes).
//!
//! Written by hand because serde_json's key order depends on a crate feature
//! (`preserve_order`) that any crate in the build can switch on; here object keys are
//! always sorted explicitly, so the bytes (and digests) never depend on how the value
//! was built or which features are enabled.

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` to compact JSON with every object's keys sorted (by bytes).
pub(crate) fn to_canonical_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(v, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"z":[{"y":2,"x":"s"}],"c":null},"A":true}"#)
                .unwrap();
        let out = String::from_utf8(to_canonical_vec(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"A":true,"a":{"c":null,"z":[{"x":"s","y":2}]},"b":1}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let v = serde_json::json!({"k\"ey": "line\nbreak"});
        let out = String::from_utf8(to_canonical_vec(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"k\"ey":"line\nbreak"}"#);
    }
}
