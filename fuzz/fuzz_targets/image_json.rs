//! Manifests, indexes and image configs from the outside: `ImageNode::parse` under
//! each manifest and index media type (with a canonical-JSON round trip of what it
//! accepts), the checks strata applies to a config (`config_platform`,
//! `config_diff_ids`, the exporter's `parse_config`), the exporter's `merge_config` of
//! a base config and a patch, and `Platform::parse` / `Digest::parse` on the text.
//!
//! Input: a JSON document; for the merge, the base and the patch are separated by the
//! line `--patch--`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use strata_oci::{
    config_diff_ids, config_platform, media_types, to_canonical_vec, Descriptor, Digest, ImageNode,
    Platform,
};

#[path = "common.rs"]
mod common;

const MANIFEST_TYPES: [&str; 4] = [
    media_types::OCI_MANIFEST,
    media_types::OCI_INDEX,
    media_types::DOCKER_MANIFEST,
    media_types::DOCKER_MANIFEST_LIST,
];

fuzz_target!(|data: &[u8]| {
    for media_type in MANIFEST_TYPES {
        let desc = Descriptor::new(media_type, Digest::sha256_of(data), data.len() as u64);
        let Ok(node) = ImageNode::parse(&desc, data) else {
            continue;
        };
        let _ = node.children();
        // What strata accepted, written canonically, reads back the same.
        let canonical = match &node {
            ImageNode::Manifest(m) => to_canonical_vec(m),
            ImageNode::Index(i) => to_canonical_vec(i),
        }
        .expect("an accepted document serializes");
        let again = Descriptor::new(
            media_type,
            Digest::sha256_of(&canonical),
            canonical.len() as u64,
        );
        assert_eq!(
            ImageNode::parse(&again, &canonical).ok().as_ref(),
            Some(&node),
            "canonical JSON of an accepted document parses back to it"
        );
    }

    if let Ok(config) = serde_json::from_slice::<Map<String, Value>>(data) {
        let _ = config_platform(&config);
        let _ = config_diff_ids(&config);
    }
    let _ = strata_exporter::parse_config(data, "fuzz");

    let parts = common::split(data, b"\n--patch--\n");
    let patch = parts.get(1).copied();
    if let Ok(merged) = strata_exporter::merge_config(parts[0], patch, "fuzz") {
        assert!(
            serde_json::from_slice::<Map<String, Value>>(&merged).is_ok(),
            "a merged config is a JSON object"
        );
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(p) = Platform::parse(text) {
            assert_eq!(
                Platform::parse(&p.to_string()),
                Some(p),
                "platform text round trip"
            );
        }
        if let Ok(d) = Digest::parse(text) {
            assert_eq!(
                Digest::parse(d.as_str()).ok(),
                Some(d),
                "digest text round trip"
            );
        }
    }
});
