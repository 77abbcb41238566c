//! A layer blob from the outside, applied onto an empty directory by the real applier
//! (`WalkingDiffer::apply`: the store reader verifying digest and size, the gzip or
//! zstd decoder, the tar reader with its PAX and GNU extensions, whiteouts, escapes).
//!
//! Input: one byte choosing the media type (plain tar, gzip, zstd), then the blob.
//! The tree lands in a fresh temporary directory, removed after each run.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use strata_content::{write_blob, ContentStore, Labels, MemoryStore};
use strata_differ::{Applier, WalkingDiffer};
use strata_oci::{Compression, Descriptor, Digest};
use strata_snapshotter::Mount;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, blob)) = data.split_first() else {
        return;
    };
    let compression = match mode % 3 {
        0 => Compression::Uncompressed,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let media_type = compression
        .layer_media_type(true)
        .expect("a layer media type");
    let desc = Descriptor::new(media_type, Digest::sha256_of(blob), blob.len() as u64);
    let root = tempfile::tempdir().expect("temporary directory");
    common::runtime().block_on(async {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        write_blob(&*store, "fuzz", blob, &desc, Labels::new())
            .await
            .expect("blob written to the memory store");
        let differ = WalkingDiffer::new(store);
        // Errors are expected for most inputs; a panic or a crash is the bug.
        let _ = differ
            .apply(&desc, &[Mount::bind(root.path(), false)])
            .await;
    });
    drop(root);
});
