// Shared by the fuzz targets (included with `#[path]`): one runtime per process.
// Not every target uses every helper.
#![allow(dead_code)]

use std::sync::OnceLock;

/// A multi-thread runtime with one worker: the appliers block on `spawn_blocking`.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Splits `data` at every `sep` (the fuzz targets' way to carry several files in one
/// input).
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    parts.push(rest);
    parts
}
