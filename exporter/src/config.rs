//! Image configs: the empty config used when none is given, validation, and patching
//! (`rootfs`, `history`, `created`) that keeps every other field as the user wrote it.
//!
//! Configs are handled as `serde_json` maps, never round-tripped through a typed
//! struct, so fields no Rust type knows about survive.

use serde_json::{json, Map, Value};
use strata_oci::{Digest, Platform};

use crate::error::{Error, Result};
use crate::history::HistoryEntry;
use strata_content::{format_epoch, parse_rfc3339};

/// The default `PATH` of a Unix image (BuildKit's `DefaultPathEnvUnix`).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of an image nobody described: `platform`, `WorkingDir` "/", a default
/// `PATH`, `rootfs.type` layers.
pub(crate) fn empty_config(platform: &Platform) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("architecture".into(), json!(platform.architecture));
    m.insert("os".into(), json!(platform.os));
    if let Some(v) = &platform.os_version {
        m.insert("os.version".into(), json!(v));
    }
    if !platform.os_features.is_empty() {
        m.insert("os.features".into(), json!(platform.os_features));
    }
    if let Some(v) = &platform.variant {
        m.insert("variant".into(), json!(v));
    }
    m.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
    m.insert(
        "config".into(),
        json!({"Env": [format!("PATH={DEFAULT_PATH}")], "WorkingDir": "/"}),
    );
    m
}

/// Parses a user's config, checking the fields the exporter reads (`history`,
/// `created`); `label` names the platform in errors.
pub fn parse_config(bytes: &[u8], label: &str) -> Result<Map<String, Value>> {
    let invalid = |reason: String| Error::InvalidConfig {
        platform: label.to_string(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid(format!(
            "expected a JSON object, got {}",
            json_kind(&value)
        )));
    };
    if let Some(h) = map.get("history") {
        match h {
            Value::Null => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(entry) = item else {
                        return Err(invalid(format!("history[{i}] is not an object")));
                    };
                    check_time(entry.get("created"), &format!("history[{i}].created"))
                        .map_err(invalid)?;
                    if let Some(e) = entry.get("empty_layer") {
                        if !e.is_boolean() && !e.is_null() {
                            return Err(invalid(format!(
                                "history[{i}].empty_layer is not a boolean"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "history is {}, not an array",
                    json_kind(other)
                )))
            }
        }
    }
    check_time(map.get("created"), "created").map_err(invalid)?;
    Ok(map)
}

fn check_time(v: Option<&Value>, field: &str) -> std::result::Result<(), String> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if parse_rfc3339(s).is_some() => Ok(()),
        Some(other) => Err(format!("{field} is not an RFC 3339 time: {other}")),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The config of an image built on a base: the base's `config` (as `base` gives it)
/// with the caller's `patch` over it, as a Dockerfile's instructions change their
/// base's: in the `config` object, `Env` entries replace the base's variable of the
/// same name (new ones are appended), `Labels`, `ExposedPorts` and `Volumes` are
/// merged key by key, every other field the patch sets replaces the base's; outside
/// it, the patch's fields replace the base's, except `rootfs` (the exporter's) and
/// `history` (the patch's entries are appended to the base's). The base's `created`
/// is dropped (the exporter sets the new image's) unless the patch sets one.
/// `label` names the image in errors.
pub fn merge_config(base: &[u8], patch: Option<&[u8]>, label: &str) -> Result<Vec<u8>> {
    let mut merged = parse_config(base, &format!("{label} (base image config)"))?;
    merged.remove("created");
    if let Some(patch) = patch {
        for (key, value) in parse_config(patch, label)? {
            match (key.as_str(), value) {
                ("rootfs", _) => {}
                ("history", Value::Array(entries)) => {
                    let history = merged.entry("history").or_insert_with(|| json!([]));
                    if let Value::Array(h) = history {
                        h.extend(entries);
                    }
                }
                ("config", Value::Object(patch_fields)) => {
                    let fields = merged.entry("config").or_insert_with(|| json!({}));
                    if !fields.is_object() {
                        *fields = json!({});
                    }
                    if let Value::Object(fields) = fields {
                        merge_container_config(fields, patch_fields);
                    }
                }
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
    }
    serde_json::to_vec(&Value::Object(merged)).map_err(|e| Error::InvalidConfig {
        platform: label.to_string(),
        reason: e.to_string(),
    })
}

/// Puts `patch`'s container-config fields over `base`'s (see [`merge_config`]).
fn merge_container_config(base: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match (key.as_str(), value, base.get_mut(&key)) {
            ("Env", Value::Array(vars), Some(Value::Array(env))) => {
                for var in vars {
                    let name = var.as_str().map(|v| v.split('=').next().unwrap_or(v));
                    let same = env.iter().position(|e| {
                        name.is_some() && e.as_str().map(|e| e.split('=').next()) == Some(name)
                    });
                    match same {
                        Some(i) => env[i] = var,
                        None => env.push(var),
                    }
                }
            }
            (
                "Labels" | "ExposedPorts" | "Volumes",
                Value::Object(entries),
                Some(Value::Object(existing)),
            ) => existing.extend(entries),
            (_, value, _) => {
                base.insert(key, value);
            }
        }
    }
}

/// The history entries of a config (empty when it has none).
pub(crate) fn history_of(config: &Map<String, Value>) -> Vec<HistoryEntry> {
    config
        .get("history")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_object().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// Patches `config` for export: `rootfs` = layers with `diff_ids`, `history` (times
/// clamped to `source_date_epoch`, missing ones set to it), and `created` (clamped, or
/// the last history time when absent). Every other field is left as it was.
pub(crate) fn patch_config(
    mut config: Map<String, Value>,
    diff_ids: &[Digest],
    mut history: Vec<HistoryEntry>,
    source_date_epoch: Option<i64>,
) -> Map<String, Value> {
    config.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>()}),
    );
    let epoch = source_date_epoch.map(|e| (e as i128 * 1_000_000_000, format_epoch(e)));
    if let Some((epoch_ns, epoch_text)) = &epoch {
        for h in history.iter_mut() {
            let keep = h
                .get("created")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .is_some_and(|t| t <= *epoch_ns);
            if !keep {
                h.insert("created".into(), json!(epoch_text));
            }
        }
    }
    let last_time = history
        .iter()
        .filter_map(|h| h.get("created").and_then(Value::as_str))
        .next_back()
        .map(str::to_string);
    config.insert(
        "history".into(),
        Value::Array(history.into_iter().map(Value::Object).collect()),
    );
    let created = config
        .get("created")
        .and_then(Value::as_str)
        .map(str::to_string);
    match (created, &epoch) {
        (Some(c), Some((epoch_ns, epoch_text))) => {
            if parse_rfc3339(&c).is_some_and(|t| t > *epoch_ns) {
                config.insert("created".into(), json!(epoch_text));
            }
        }
        (Some(_), None) => {}
        (None, _) => {
            if let Some(t) = last_time {
                config.insert("created".into(), json!(t));
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{normalize, LayerMeta};

    const T1: &str = "2024-01-01T00:00:00Z";
    const T2: &str = "2024-06-01T00:00:00Z";
    const EPOCH: i64 = 1_709_251_200; // 2024-03-01T00:00:00Z
    const EPOCH_TEXT: &str = "2024-03-01T00:00:00Z";

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn run(config: Option<Value>, layers: &[LayerMeta], epoch: Option<i64>) -> Value {
        let cfg = match config {
            Some(v) => parse_config(v.to_string().as_bytes(), "default").unwrap(),
            None => empty_config(&Platform::parse("linux/arm64").unwrap()),
        };
        let n = normalize(history_of(&cfg), layers);
        let diff_ids: Vec<Digest> = n.kept_layers.iter().map(|&i| d(i as u8)).collect();
        Value::Object(patch_config(cfg, &diff_ids, n.history, epoch))
    }

    fn layer(desc: &str, created: &str, empty: bool) -> LayerMeta {
        LayerMeta {
            description: desc.into(),
            created: created.into(),
            empty,
            history: None,
        }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            config: Option<Value>,
            layers: Vec<LayerMeta>,
            epoch: Option<i64>,
            check: fn(&Value),
        }
        let cases = vec![
            Case {
                name: "no config: empty config for the platform",
                config: None,
                layers: vec![layer("base", T1, false)],
                epoch: None,
                check: |v| {
                    assert_eq!(v["architecture"], "arm64");
                    assert_eq!(v["os"], "linux");
                    assert_eq!(v["config"]["WorkingDir"], "/");
                    assert_eq!(v["config"]["Env"][0], format!("PATH={DEFAULT_PATH}"));
                    assert_eq!(v["rootfs"]["type"], "layers");
                    assert_eq!(v["rootfs"]["diff_ids"][0], d(0).as_str());
                    assert_eq!(v["history"][0]["created_by"], "base");
                    assert_eq!(v["created"], T1);
                },
            },
            Case {
                name: "unknown fields survive, known ones are not rewritten",
                config: Some(json!({
                    "architecture": "amd64", "os": "linux",
                    "config": {"Cmd": ["/bin/sh"], "X-Custom": {"deep": [1, 2.5, "s"]}},
                    "org.example.extension": {"a": null},
                    "created": T1,
                })),
                layers: vec![layer("base", T2, false)],
                epoch: None,
                check: |v| {
                    assert_eq!(v["config"]["X-Custom"], json!({"deep": [1, 2.5, "s"]}));
                    assert_eq!(v["org.example.extension"], json!({"a": null}));
                    assert_eq!(v["config"]["Cmd"], json!(["/bin/sh"]));
                    assert_eq!(v["created"], T1, "a given created is kept");
                },
            },
            Case {
                name: "empty layer in the middle: not in diff_ids",
                config: Some(json!({"architecture": "amd64", "os": "linux"})),
                layers: vec![
                    layer("a", T1, false),
                    layer("noop", T1, true),
                    layer("c", T2, false),
                ],
                epoch: None,
                check: |v| {
                    assert_eq!(
                        v["rootfs"]["diff_ids"],
                        json!([d(0).as_str(), d(2).as_str()])
                    );
                    assert_eq!(v["history"][1]["empty_layer"], true);
                    assert_eq!(v["history"].as_array().unwrap().len(), 3);
                    assert_eq!(v["created"], T2, "created is the last history time");
                },
            },
            Case {
                name: "source-date-epoch clamps later times and fills missing ones",
                config: Some(json!({
                    "architecture": "amd64", "os": "linux", "created": T2,
                    "history": [
                        {"created_by": "old", "created": T1},
                        {"created_by": "env", "empty_layer": true},
                        {"created_by": "new", "created": T2},
                    ],
                })),
                layers: vec![layer("a", T1, false), layer("b", T2, false)],
                epoch: Some(EPOCH),
                check: |v| {
                    assert_eq!(v["history"][0]["created"], T1, "earlier times are kept");
                    assert_eq!(v["history"][1]["created"], EPOCH_TEXT);
                    assert_eq!(v["history"][2]["created"], EPOCH_TEXT);
                    assert_eq!(v["created"], EPOCH_TEXT);
                },
            },
            Case {
                name: "source-date-epoch with no created: last (clamped) history time",
                config: None,
                layers: vec![layer("a", T2, false)],
                epoch: Some(EPOCH),
                check: |v| {
                    assert_eq!(v["history"][0]["created"], EPOCH_TEXT);
                    assert_eq!(v["created"], EPOCH_TEXT);
                },
            },
            Case {
                name: "more history than layers",
                config: Some(json!({"architecture": "amd64", "os": "linux", "history": [
                    {"created_by": "a", "created": T1}, {"created_by": "b", "created": T1}]})),
                layers: vec![layer("a", T1, false)],
                epoch: None,
                check: |v| {
                    assert_eq!(v["history"][1]["empty_layer"], true);
                    assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
                },
            },
        ];
        for c in cases {
            let v = run(c.config, &c.layers, c.epoch);
            let res = std::panic::catch_unwind(|| (c.check)(&v));
            assert!(res.is_ok(), "case {:?} failed: {v:#}", c.name);
        }
    }

    #[test]
    fn a_patch_goes_over_the_base_config_as_dockerfile_instructions_do() {
        let base = json!({
            "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "User": "base",
                       "Labels": {"a": "1"}, "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "base"}],
        });
        let patch = json!({
            "config": {"Env": ["A=2", "B=3"], "Cmd": ["app"], "Labels": {"b": "2"},
                       "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "ENV A=2", "empty_layer": true}],
        });
        let merged = merge_config(
            base.to_string().as_bytes(),
            Some(patch.to_string().as_bytes()),
            "default",
        )
        .unwrap();
        let merged: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(
            merged,
            json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Env": ["PATH=/bin", "A=2", "B=3"], "Cmd": ["app"], "User": "base",
                           "Labels": {"a": "1", "b": "2"},
                           "ExposedPorts": {"80/tcp": {}, "8080/tcp": {}}},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
                "history": [{"created_by": "base"}, {"created_by": "ENV A=2", "empty_layer": true}],
            })
        );
        let err = merge_config(b"[1]", None, "linux/arm64").unwrap_err();
        assert!(
            err.to_string().contains("linux/arm64 (base image config)"),
            "{err}"
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        for (bytes, want) in [
            (&b"{not json"[..], "not valid JSON"),
            (b"null", "expected a JSON object, got null"),
            (b"[1]", "got an array"),
            (br#"{"history": 3}"#, "history is a number"),
            (br#"{"history": [1]}"#, "history[0] is not an object"),
            (
                br#"{"created": "yesterday"}"#,
                "created is not an RFC 3339 time",
            ),
            (br#"{"history": [{"created": 5}]}"#, "history[0].created"),
        ] {
            let err = parse_config(bytes, "linux/amd64").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains("linux/amd64"),
                "{msg:?} should contain {want:?}"
            );
        }
    }
}
