//! What the checks share: writing and reading trees through mounts, a standard chain
//! of three layers, and the error assertion.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::mount::{Mount, MountLayout, TempMount};
use crate::snapshotter::{Labels, Snapshotter};

pub(super) fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a tree holds: path → "file:<contents>", "link:<target>", "dir", "fifo".
pub(super) fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("reading a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("entry under root")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&p).expect("lstat");
            let ft = meta.file_type();
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                visit(root, &p, out);
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.insert(rel, format!("link:{}", t.display()));
            } else if ft.is_file() {
                let c = fs::read_to_string(&p).expect("reading a file");
                out.insert(rel, format!("file:{c}"));
            } else {
                out.insert(rel, "other".into());
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

pub(super) fn tree_of(mounts: &[Mount]) -> BTreeMap<String, String> {
    let m = TempMount::mount(mounts).unwrap_or_else(|e| panic!("mounting {mounts:?}: {e}"));
    read_tree(m.path())
}

pub(super) fn write_files(mounts: &[Mount], files: &[(&str, &str)], delete: &[&str]) {
    let m = TempMount::mount(mounts).unwrap_or_else(|e| panic!("mounting {mounts:?}: {e}"));
    for (rel, contents) in files {
        let p = m.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("creating parent dirs");
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }
    for rel in delete {
        let p = m.path().join(rel);
        fs::remove_file(&p).unwrap_or_else(|e| panic!("deleting {}: {e}", p.display()));
    }
}

pub(super) fn mounts_read_only(mounts: &[Mount]) -> bool {
    match MountLayout::from_mounts(mounts) {
        Ok(MountLayout::Directory { read_only, .. }) => read_only,
        Ok(MountLayout::Overlay { upper, .. }) => upper.is_none(),
        Err(_) => false,
    }
}

pub(super) fn expect_err<T: std::fmt::Debug>(
    what: &str,
    res: Result<T>,
    names: &str,
    ok: impl Fn(&Error) -> bool,
) {
    match res {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => {
            assert!(ok(&e), "{what}: unexpected error variant {e:?}");
            assert!(
                e.to_string().contains(names),
                "{what}: error {e} does not name {names:?}"
            );
        }
    }
}

/// Commits a snapshot `name` on `parent` holding `files` and missing `delete`.
pub(super) async fn layer(
    s: &dyn Snapshotter,
    name: &str,
    parent: Option<&str>,
    files: &[(&str, &str)],
    delete: &[&str],
) {
    let key = format!("{name}-active");
    let mounts = s
        .prepare(&key, parent, Labels::new())
        .await
        .unwrap_or_else(|e| panic!("preparing {key}: {e}"));
    write_files(&mounts, files, delete);
    s.commit(name, &key, labels_of(&[("layer", name)]))
        .await
        .unwrap_or_else(|e| panic!("committing {key} as {name}: {e}"));
}

pub(super) async fn build_chain(s: &dyn Snapshotter) {
    layer(
        s,
        "A",
        None,
        &[("base.txt", "base"), ("del.txt", "doomed"), ("dir/x", "x1")],
        &[],
    )
    .await;
    layer(
        s,
        "B",
        Some("A"),
        &[("b.txt", "b"), ("dir/x", "x2")],
        &["del.txt"],
    )
    .await;
    layer(s, "C", Some("B"), &[("c.txt", "c"), ("dir/y", "y")], &[]).await;
}

pub(super) fn expected_top() -> BTreeMap<String, String> {
    [
        ("b.txt", "file:b"),
        ("base.txt", "file:base"),
        ("c.txt", "file:c"),
        ("dir", "dir"),
        ("dir/x", "file:x2"),
        ("dir/y", "file:y"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
