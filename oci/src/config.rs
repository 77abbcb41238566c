//! What strata reads of an image config — its platform and its `rootfs.diff_ids` —
//! and the size limits of the JSON documents it reads. Configs are otherwise kept as
//! JSON, so fields no type here knows survive.

use serde_json::{Map, Value};

use crate::{Digest, Platform};

/// The largest manifest or index strata reads (registries refuse larger ones).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The largest image config strata reads.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// The platform an image config declares (`os`, `architecture`, `variant`,
/// `os.version`); empty strings where it declares none.
pub fn config_platform(config: &Map<String, Value>) -> Platform {
    let field = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
    Platform {
        architecture: field("architecture").unwrap_or_default(),
        os: field("os").unwrap_or_default(),
        os_version: field("os.version"),
        os_features: Vec::new(),
        variant: field("variant"),
    }
}

/// The config's `rootfs.diff_ids`, base layer first; the error says what is wrong
/// (missing, not an array, an entry that is not a digest).
pub fn config_diff_ids(config: &Map<String, Value>) -> Result<Vec<Digest>, String> {
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .ok_or_else(|| "no rootfs.diff_ids".to_string())?;
    let Value::Array(ids) = ids else {
        return Err(format!("rootfs.diff_ids is not an array: {ids}"));
    };
    ids.iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| format!("diff_id {v} is not a digest"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platform_and_diff_ids_of_a_config() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let config = json!({"os": "linux", "architecture": "arm64", "variant": "v8",
                            "rootfs": {"type": "layers", "diff_ids": [digest]}});
        let config = config.as_object().unwrap();
        assert_eq!(config_platform(config).to_string(), "linux/arm64/v8");
        assert_eq!(config_diff_ids(config).unwrap()[0].to_string(), digest);
        let bad = json!({"rootfs": {"diff_ids": ["nope"]}});
        let err = config_diff_ids(bad.as_object().unwrap()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        assert!(config_diff_ids(&Map::new()).is_err());
    }
}
