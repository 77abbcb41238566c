//! Bad input: typed errors, no panic, nothing partial committed.

mod common;

use std::fs;
use std::sync::Arc;

use common::*;
use strata_content::{write_blob, ContentStore, Filter, LocalStore};
use strata_differ::{Applier, CompareOptions, Comparer, Error, Refusal, WalkingDiffer};
use strata_oci::{media_types, Compression, Descriptor, Digest};
use strata_snapshotter::Mount;

async fn nothing_committed(store: &Arc<dyn ContentStore>) {
    assert!(store.walk(&Filter::All).await.unwrap().is_empty());
    assert!(store.list_statuses().await.unwrap().is_empty());
}

#[test]
fn a_whiteout_name_in_the_tree_is_refused_and_nothing_is_committed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("etc")).unwrap();
    fs::write(tmp.path().join("etc/.wh.passwd"), b"").unwrap();
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let err = rt
        .block_on(differ.compare(
            &[],
            &[Mount::bind(tmp.path(), true)],
            &CompareOptions::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReservedName { path } if path.ends_with("etc/.wh.passwd")),
        "{err:?}"
    );
    rt.block_on(nothing_committed(&store));
}

#[test]
fn unsupported_mounts_are_typed_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let weird = [Mount {
        mount_type: "nfs".into(),
        source: "server:/x".into(),
        options: vec![],
    }];
    let err = rt
        .block_on(differ.compare(&[], &weird, &CompareOptions::default()))
        .unwrap_err();
    assert!(matches!(err, Error::Snapshot(_)), "{err:?}");
    rt.block_on(nothing_committed(&store));
}

/// A one-entry tar whose name is written raw (the `tar` crate refuses to build `..`).
fn raw_tar(name: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(4);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(b"evil");
    out.resize(512 * 4, 0);
    out
}

async fn put(store: &Arc<dyn ContentStore>, bytes: &[u8], media_type: &str) -> Descriptor {
    let desc = Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64);
    write_blob(&**store, "test", bytes, &desc, Default::default())
        .await
        .unwrap();
    desc
}

#[test]
fn layers_escaping_the_root_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    for name in [&b"../evil"[..], b"/tmp/evil", b"a/../../evil"] {
        let desc = rt.block_on(put(&store, &raw_tar(name), media_types::OCI_LAYER));
        let err = rt
            .block_on(differ.apply(&desc, &[Mount::bind(&root, false)]))
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::RefusedEntry { layer, entry, refusal: Refusal::ParentComponent | Refusal::AbsoluteName }
                    if *layer == desc.digest.to_string() && entry.as_bytes() == name
            ),
            "{err:?}"
        );
    }
    assert!(!tmp.path().join("evil").exists());
}

/// A real gzip layer of a small tree.
fn gzip_layer(rt: &tokio::runtime::Runtime, store: &Arc<dyn ContentStore>) -> Descriptor {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), vec![3u8; 50_000]).unwrap();
    fs::write(tmp.path().join("g"), b"g").unwrap();
    let differ = WalkingDiffer::new(store.clone());
    rt.block_on(differ.compare(
        &[],
        &[Mount::bind(tmp.path(), true)],
        &CompareOptions::default(),
    ))
    .unwrap()
    .descriptor
}

#[test]
fn corrupt_and_truncated_layers_are_typed_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = memory_store();
    let good = gzip_layer(&rt, &store);
    let bytes = rt
        .block_on(strata_content::read_blob(&*store, &good, 1 << 30))
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let differ = WalkingDiffer::new(store.clone());
    let truncated = rt.block_on(put(
        &store,
        &bytes[..bytes.len() / 2],
        media_types::OCI_LAYER_GZIP,
    ));
    let garbage = rt.block_on(put(&store, &[0x5au8; 4096], media_types::OCI_LAYER_GZIP));
    for desc in [truncated, garbage] {
        let err = rt
            .block_on(differ.apply(&desc, &[Mount::bind(target.path(), false)]))
            .unwrap_err();
        match &err {
            Error::CorruptLayer { digest, .. } => assert_eq!(digest, &desc.digest.to_string()),
            other => panic!("expected CorruptLayer for {}, got {other:?}", desc.digest),
        }
    }
    let mut odd = good.clone();
    odd.media_type = "application/x-not-a-layer".into();
    let err = rt
        .block_on(differ.apply(&odd, &[Mount::bind(target.path(), false)]))
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType(_)), "{err:?}");
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ContentStore> = Arc::new(rt.block_on(LocalStore::open(dir.path())).unwrap());
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), vec![1u8; 10_000]).unwrap();
    let differ = WalkingDiffer::new(store.clone());
    let opts = CompareOptions {
        compression: Compression::Uncompressed,
        ..CompareOptions::default()
    };
    let blob = rt
        .block_on(differ.compare(&[], &[Mount::bind(src.path(), true)], &opts))
        .unwrap();
    // Flip one byte of file data on disk, behind the store's back.
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(blob.descriptor.digest.hex());
    let mut bytes = fs::read(&path).unwrap();
    bytes[600] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = rt
        .block_on(differ.apply(&blob.descriptor, &[Mount::bind(target.path(), false)]))
        .unwrap_err();
    assert!(
        err.to_string().contains(blob.descriptor.digest.hex()),
        "the error names the blob: {err}"
    );
    assert!(
        !matches!(err, Error::RefusedEntry { .. } | Error::Io { .. }),
        "{err:?}"
    );
}
