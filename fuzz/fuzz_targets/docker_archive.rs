//! What `docker save` writes, from the outside: the tar indexed, `manifest.json`
//! (and an OCI layout inside, as newer dockers write) read, the image chosen, its
//! config and layers described (`open_image`), then read for the host's platform
//! (`read_image`: the config verified, its diff_ids checked against the layers).
//!
//! Input: a mode byte (bit 0: ask for the image `fuzz:latest`, else the only one),
//! then the archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_cache::{open_image, read_image, ImageLocation};
use strata_registry::RegistryOptions;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temporary directory");
    let file = tmp.path().join("image.tar");
    std::fs::write(&file, archive).expect("archive");
    let name = (mode & 1 != 0).then(|| "fuzz:latest".to_string());
    let location = ImageLocation::DockerArchive { file, name };
    common::runtime().block_on(async {
        let Ok(root) = open_image(&location, None, None, &RegistryOptions::default()).await else {
            return;
        };
        let _ = read_image(&root, None).await;
    });
});
