//! An OCI image from the outside, as a layout directory or an `oci-archive` tar: opened
//! (`open_image`: `index.json`, the ref-name selection, the archive's index) and read
//! for one platform (`read_image`: index → manifest → config, each verified against its
//! descriptor, the size limits, the layer and diff_id checks).
//!
//! Input: a mode byte, then the image. Mode bit 0 clear: a layout directory whose
//! `index.json` is the first part and whose blobs are the other parts (separated by
//! the line `--blob--`, each stored under its own sha256); set: the whole rest is the
//! `oci-archive` tar. Bit 1 asks for the tag `latest`, bit 2 for the platform
//! `linux/arm64` (else the host's).
#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;
use strata_cache::{open_image, read_image, ImageLocation};
use strata_oci::{layout, Digest, Platform};
use strata_registry::RegistryOptions;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temporary directory");
    let tag = (mode & 2 != 0).then(|| "latest".to_string());
    let location = if mode & 1 == 0 {
        let dir = tmp.path().join("layout");
        let parts = common::split(rest, b"\n--blob--\n");
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout directories");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        fs::write(dir.join(layout::INDEX_FILE), parts[0]).expect("index.json");
        for blob in &parts[1..] {
            fs::write(dir.join(layout::blob_path(&Digest::sha256_of(blob))), blob).expect("blob");
        }
        ImageLocation::OciLayout { dir, tag }
    } else {
        let file = tmp.path().join("image.tar");
        fs::write(&file, rest).expect("archive");
        ImageLocation::OciArchive { file, tag }
    };
    let platform = (mode & 4 != 0).then(|| Platform::parse("linux/arm64").expect("platform"));
    common::runtime().block_on(async {
        let Ok(root) = open_image(&location, None, None, &RegistryOptions::default()).await else {
            return;
        };
        let _ = read_image(&root, platform.as_ref()).await;
    });
});
