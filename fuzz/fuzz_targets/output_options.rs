//! The options and spec parsers: the CLI's `--output` value (buildx's CSV syntax) and
//! its `--spec` file (JSON, per platform: layers, descriptions, config, base, copies),
//! each exporter's options (`OutputOptions::parse`, for every output kind), and the
//! CLI's base image locations (`ImageLocation::parse`, with a text round trip). The CLI
//! is a binary crate: its `output.rs`, `plan.rs` and `error.rs` are compiled in here.
//!
//! Input: the text of an `--output` value, also parsed as an image location, as
//! `key=value` lines, and written as a spec file next to the directories `a` and `b`
//! and the file `config.json` (which the spec may name).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_cache::ImageLocation;
use strata_exporter::{OutputKind, OutputOptions};

#[allow(dead_code)]
#[path = "../../cli/src/output.rs"]
mod cli_output;
// `plan.rs` names its error type `crate::error::CliError`.
#[allow(dead_code)]
#[path = "../../cli/src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../../cli/src/plan.rs"]
mod plan;

/// The directory the spec file is written to, with what a spec may point at.
fn spec_dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        for layer in ["a", "b"] {
            std::fs::create_dir(dir.path().join(layer)).expect("layer directory");
        }
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"config":{"Cmd":["/bin/sh"]}}"#,
        )
        .expect("config file");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let spec = spec_dir().path().join("spec.json");
    std::fs::write(&spec, data).expect("spec file");
    let _ = plan::from_spec(&spec);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = cli_output::parse_output(text) {
        let _ = OutputOptions::parse(spec.kind, &spec.options);
    }
    // The exporter's parser on its own, for every kind: `key=value` per line.
    let options: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for kind in OutputKind::ALL {
        let _ = OutputOptions::parse(kind, &options);
    }
    if let Ok(location) = ImageLocation::parse(text) {
        let again = ImageLocation::parse(&location.to_string());
        assert_eq!(
            again.ok().as_ref(),
            Some(&location),
            "location text round trip"
        );
    }
});
