//! Exact change detection: a rewrite that keeps a file's size and mtime (nanoseconds
//! included) is in the layer with `with_exact_content(true)`, and missing by
//! containerd's rule (the default); a hardlinked tree costs no reads and gives the same
//! layer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use strata_differ::{Applier, CompareOptions, Comparer, LayerBlob, WalkingDiffer};
use strata_oci::Compression;
use strata_snapshotter::Mount;

const MTIME: (i64, i64) = (1_700_000_000, 987_654_321);

/// A lower tree: a small file, a file larger than one comparison block, a directory.
fn lower_tree(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/config"), b"port=80\n").unwrap();
    fs::write(root.join("big"), vec![b'x'; 1 << 20]).unwrap();
    for p in ["etc/config", "big", "etc"] {
        set_mtime(&root.join(p), MTIME.0, MTIME.1);
    }
}

/// Rewrites `path` with `data` (same length as before) and puts its mtime back, as
/// `touch -r` after an edit does.
fn rewrite_keeping_mtime(path: &Path, data: &[u8]) {
    assert_eq!(fs::metadata(path).unwrap().len(), data.len() as u64);
    fs::write(path, data).unwrap();
    set_mtime(path, MTIME.0, MTIME.1);
}

fn compare(differ: &WalkingDiffer, lower: &Path, upper: &Path) -> LayerBlob {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = CompareOptions {
        compression: Compression::Uncompressed,
        ..CompareOptions::default()
    };
    rt.block_on(differ.compare(
        &[Mount::bind(lower, true)],
        &[Mount::bind(upper, true)],
        &opts,
    ))
    .unwrap()
}

/// The paths of the entries of an uncompressed layer.
fn layer_paths(store: &dyn strata_content::ContentStore, blob: &LayerBlob) -> Vec<PathBuf> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = rt
        .block_on(strata_content::read_blob(store, &blob.descriptor, 1 << 30))
        .unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().into_owned())
        .collect()
}

/// Applies `blob` onto a copy of `lower` and returns the copy.
fn apply_onto_copy(
    differ: &WalkingDiffer,
    blob: &LayerBlob,
    lower: &Path,
    target: &Path,
) -> PathBuf {
    copy_tree(lower, target);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(differ.apply(&blob.descriptor, &[Mount::bind(target, false)]))
        .unwrap();
    target.to_path_buf()
}

#[test]
fn a_rewrite_keeping_size_and_mtime_is_in_the_layer_only_with_exact_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    lower_tree(&lower);
    copy_tree(&lower, &upper);
    rewrite_keeping_mtime(&upper.join("etc/config"), b"port=81\n");
    let mut big = vec![b'x'; 1 << 20];
    big[(1 << 20) - 1] = b'y';
    rewrite_keeping_mtime(&upper.join("big"), &big);

    let store = memory_store();
    // containerd's rule (the default): equal size and mtime → unchanged; the rewrites
    // are missing from the layer.
    let by_metadata = WalkingDiffer::new(store.clone());
    let blob = compare(&by_metadata, &lower, &upper);
    assert_eq!(layer_paths(&*store, &blob), Vec::<PathBuf>::new());
    let off = apply_onto_copy(&by_metadata, &blob, &lower, &tmp.path().join("off"));
    assert_eq!(fs::read(off.join("etc/config")).unwrap(), b"port=80\n");

    let exact = WalkingDiffer::new(store.clone()).with_exact_content(true);
    let blob = compare(&exact, &lower, &upper);
    assert_eq!(
        layer_paths(&*store, &blob),
        vec![
            PathBuf::from("big"),
            PathBuf::from("etc/"),
            PathBuf::from("etc/config")
        ]
    );
    let on = apply_onto_copy(&exact, &blob, &lower, &tmp.path().join("on"));
    assert_same_tree(&upper, &on);
    assert_eq!(fs::read(on.join("etc/config")).unwrap(), b"port=81\n");
}

#[test]
fn a_hardlinked_tree_gives_the_layer_of_its_one_rewritten_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    lower_tree(&lower);
    // `cp -al`: directories copied, every file a hardlink to lower's.
    let status = std::process::Command::new("cp")
        .arg("-al")
        .arg(format!("{}/.", lower.display()))
        .arg(&upper)
        .status()
        .unwrap();
    assert!(status.success());
    // Break one link with a rewrite that keeps size and mtime.
    fs::remove_file(upper.join("etc/config")).unwrap();
    fs::write(upper.join("etc/config"), b"port=81\n").unwrap();
    set_mtime(&upper.join("etc/config"), MTIME.0, MTIME.1);
    set_mtime(&upper.join("etc"), MTIME.0, MTIME.1);

    let store = memory_store();
    let exact = WalkingDiffer::new(store.clone()).with_exact_content(true);
    let blob = compare(&exact, &lower, &upper);
    // `big` is hardlinked to lower's (nlink 2 in upper, unchanged): not in the layer.
    assert_eq!(
        layer_paths(&*store, &blob),
        vec![PathBuf::from("etc/"), PathBuf::from("etc/config")]
    );
}
