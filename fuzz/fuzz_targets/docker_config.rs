//! Registry credentials from the outside: an image reference (`ImageReference::parse`,
//! with a text round trip) and a docker `config.json` (`auths` with base64 `auth` or
//! `username`/`password`, `credHelpers`, `credsStore`) looked up for the reference's
//! registry by `credentials_for`, as a pull or push would.
//!
//! Input: the reference on the first line, the config file after it. `PATH` is an
//! empty directory, so a helper the config names is never found, never run.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_registry::{credentials_for, ImageReference};

/// The scratch directory holding `config.json`, with `PATH` pointed at an empty one.
fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let empty = dir.path().join("empty-path");
        std::fs::create_dir(&empty).expect("empty PATH directory");
        std::env::set_var("PATH", &empty);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let (first, config) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(first) else {
        return;
    };
    let registry = match ImageReference::parse(text) {
        Ok(reference) => {
            let again = ImageReference::parse(&reference.to_string());
            assert_eq!(
                again.ok().as_ref(),
                Some(&reference),
                "reference text round trip"
            );
            reference.registry
        }
        Err(_) => text.to_string(),
    };
    let path = scratch().path().join("config.json");
    std::fs::write(&path, config).expect("config.json");
    let _ = credentials_for(&path, &registry);
});
