//! History normalization: making the image history agree with the layers, as
//! BuildKit's `normalizeLayersAndHistory` does.

use serde_json::{Map, Value};

use strata_content::format_rfc3339;

/// Comment put on history entries synthesized from refs.
pub(crate) const SYNTHESIZED_COMMENT: &str = "strata.exporter.image.v0";

/// One history entry, kept as JSON so fields we do not know survive untouched.
pub(crate) type HistoryEntry = Map<String, Value>;

/// What the exporter knows about one layer of the chain (base first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerMeta {
    /// The ref's description (history `created_by`).
    pub description: String,
    /// The ref's creation time, RFC 3339.
    pub created: String,
    /// True when the layer's blob is the empty tar (it is dropped from the manifest).
    pub empty: bool,
    /// The layer's own history entry (a base image's layer), used as it is when the
    /// config's history does not cover the layer.
    pub history: Option<HistoryEntry>,
}

impl LayerMeta {
    /// Meta for a layer created at `created`.
    pub(crate) fn new(
        description: impl Into<String>,
        created: std::time::SystemTime,
        empty: bool,
    ) -> Self {
        LayerMeta {
            description: description.into(),
            created: format_rfc3339(created),
            empty,
            history: None,
        }
    }
}

/// The outcome of [`normalize`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Normalized {
    /// The history to put in the config.
    pub history: Vec<HistoryEntry>,
    /// Indexes (into the layers given) of the layers the manifest keeps, in order.
    pub kept_layers: Vec<usize>,
    /// Problems found and repaired (logged as warnings).
    pub warnings: Vec<String>,
}

/// True when the entry is marked `empty_layer`.
pub(crate) fn is_empty_layer(h: &HistoryEntry) -> bool {
    h.get("empty_layer")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Makes `history` agree with `layers`:
/// - more non-empty entries than layers: the entries past the last layer are marked
///   `empty_layer` (the bottom entries keep the layers, as BuildKit does), with a warning;
/// - fewer: the remaining layers' own entries are appended (a base image's layers), or
///   entries synthesized from their descriptions and times;
/// - a non-empty entry without `created` gets its layer's creation time;
/// - an empty layer is dropped and its entry marked `empty_layer`;
/// - remaining entries without a time get a neighbour's (see `fill_missing_times`).
pub(crate) fn normalize(mut history: Vec<HistoryEntry>, layers: &[LayerMeta]) -> Normalized {
    let mut warnings = Vec::new();
    let non_empty = history.iter().filter(|h| !is_empty_layer(h)).count();
    if non_empty > layers.len() {
        let msg = format!(
            "image config history has {non_empty} layer entries but there are {} layers; \
             marking the extra entries empty",
            layers.len()
        );
        tracing::warn!("{msg}");
        warnings.push(msg);
        let mut seen = 0;
        for h in history.iter_mut() {
            if is_empty_layer(h) {
                continue;
            }
            if seen >= layers.len() {
                h.insert("empty_layer".into(), Value::Bool(true));
            } else {
                seen += 1;
            }
        }
    } else if layers.len() > non_empty {
        for meta in &layers[non_empty..] {
            if let Some(h) = &meta.history {
                history.push(h.clone());
                continue;
            }
            let mut h = Map::new();
            h.insert("created".into(), Value::String(meta.created.clone()));
            h.insert("created_by".into(), Value::String(meta.description.clone()));
            h.insert("comment".into(), Value::String(SYNTHESIZED_COMMENT.into()));
            history.push(h);
        }
    }
    let mut kept_layers = Vec::new();
    let mut layer = 0;
    for h in history.iter_mut() {
        if is_empty_layer(h) {
            continue;
        }
        let meta = &layers[layer];
        if !h.get("created").is_some_and(|c| c.is_string()) {
            h.insert("created".into(), Value::String(meta.created.clone()));
        }
        if meta.empty {
            h.insert("empty_layer".into(), Value::Bool(true));
        } else {
            kept_layers.push(layer);
        }
        layer += 1;
    }
    fill_missing_times(&mut history);
    Normalized {
        history,
        kept_layers,
        warnings,
    }
}

/// Gives entries without a time (empty-layer entries, typically) the time of the first
/// entry with one that follows a gap, then of the previous entry, as BuildKit does: a
/// metadata-only step after a base image gets the first new layer's time rather than
/// the base image's.
fn fill_missing_times(history: &mut [HistoryEntry]) {
    let time_of = |h: &HistoryEntry| h.get("created").and_then(Value::as_str).map(str::to_string);
    let mut created = None;
    let mut gap = false;
    for h in history.iter() {
        match time_of(h) {
            Some(t) => {
                created = Some(t);
                if gap {
                    break;
                }
            }
            None => gap = true,
        }
    }
    let mut gap = false;
    for h in history.iter_mut() {
        match time_of(h) {
            Some(t) => {
                if gap {
                    created = Some(t);
                }
            }
            None => {
                gap = true;
                if let Some(t) = &created {
                    h.insert("created".into(), Value::String(t.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(desc: &str, created: &str, empty: bool) -> LayerMeta {
        LayerMeta {
            description: desc.into(),
            created: created.into(),
            empty,
            history: None,
        }
    }

    fn entries(v: Value) -> Vec<HistoryEntry> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn table() {
        const T1: &str = "2024-01-01T00:00:00Z";
        const T2: &str = "2024-01-02T00:00:00Z";
        const T3: &str = "2024-01-03T00:00:00Z";
        struct Case {
            name: &'static str,
            history: Value,
            layers: Vec<LayerMeta>,
            want_history: Value,
            want_kept: Vec<usize>,
            want_warnings: usize,
        }
        let cases = vec![
            Case {
                name: "no history: synthesized from refs",
                history: json!([]),
                layers: vec![meta("base", T1, false), meta("add", T2, false)],
                want_history: json!([
                    {"created": T1, "created_by": "base", "comment": SYNTHESIZED_COMMENT},
                    {"created": T2, "created_by": "add", "comment": SYNTHESIZED_COMMENT},
                ]),
                want_kept: vec![0, 1],
                want_warnings: 0,
            },
            Case {
                name: "more history than layers: extra entries marked empty, times filled",
                history: json!([
                    {"created_by": "a", "created": T1},
                    {"created_by": "env", "empty_layer": true},
                    {"created_by": "b", "created": T2},
                    {"created_by": "c", "created": T3},
                ]),
                layers: vec![meta("x", T1, false)],
                want_history: json!([
                    {"created_by": "a", "created": T1},
                    {"created_by": "env", "empty_layer": true, "created": T2},
                    {"created_by": "b", "created": T2, "empty_layer": true},
                    {"created_by": "c", "created": T3, "empty_layer": true},
                ]),
                want_kept: vec![0],
                want_warnings: 1,
            },
            Case {
                name: "fewer history entries than layers: the rest synthesized",
                history: json!([{"created_by": "from base image", "created": T1, "x-unknown": 7}]),
                layers: vec![meta("base", T1, false), meta("run", T3, false)],
                want_history: json!([
                    {"created_by": "from base image", "created": T1, "x-unknown": 7},
                    {"created": T3, "created_by": "run", "comment": SYNTHESIZED_COMMENT},
                ]),
                want_kept: vec![0, 1],
                want_warnings: 0,
            },
            Case {
                name: "empty layer in the middle is dropped and marked",
                history: json!([
                    {"created_by": "a", "created": T1},
                    {"created_by": "noop", "created": T2},
                    {"created_by": "c", "created": T3},
                ]),
                layers: vec![
                    meta("a", T1, false),
                    meta("noop", T2, true),
                    meta("c", T3, false),
                ],
                want_history: json!([
                    {"created_by": "a", "created": T1},
                    {"created_by": "noop", "created": T2, "empty_layer": true},
                    {"created_by": "c", "created": T3},
                ]),
                want_kept: vec![0, 2],
                want_warnings: 0,
            },
            Case {
                name: "missing times come from the refs; empty entries from the next layer",
                history: json!([
                    {"created_by": "a"},
                    {"created_by": "label", "empty_layer": true},
                    {"created_by": "b"},
                ]),
                layers: vec![meta("a", T1, false), meta("b", T2, false)],
                want_history: json!([
                    {"created_by": "a", "created": T1},
                    {"created_by": "label", "empty_layer": true, "created": T2},
                    {"created_by": "b", "created": T2},
                ]),
                want_kept: vec![0, 1],
                want_warnings: 0,
            },
            Case {
                name: "no layers at all",
                history: json!([{"created_by": "env", "empty_layer": true}]),
                layers: vec![],
                want_history: json!([{"created_by": "env", "empty_layer": true}]),
                want_kept: vec![],
                want_warnings: 0,
            },
        ];
        for c in cases {
            let got = normalize(entries(c.history), &c.layers);
            assert_eq!(
                Value::Array(got.history.into_iter().map(Value::Object).collect()),
                c.want_history,
                "{}",
                c.name
            );
            assert_eq!(got.kept_layers, c.want_kept, "{}", c.name);
            assert_eq!(got.warnings.len(), c.want_warnings, "{}", c.name);
        }
    }
}
