//! The conformance suite every writable [`Snapshotter`] backend must pass (enabled by
//! the `conformance` feature), in the spirit of arrow-rs `object_store`'s integration
//! tests: one set of checks, run against each backend, including future ones in other
//! crates.
//!
//! [`run`] takes a function opening the backend at a root directory; it is called once
//! per check with a fresh temporary root, and again with the same root to check that a
//! reopened snapshotter sees the same snapshots. Files are written and read through
//! the snapshots' mounts (with [`TempMount`]), so the checks see what a user sees.
//! Failures panic with a message naming the check, like test assertions.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use strata_snapshotter::{NativeSnapshotter, Snapshotter};
//!
//! strata_snapshotter::conformance::run(|root| async move {
//!     Ok(Arc::new(NativeSnapshotter::open(root)?) as Arc<dyn Snapshotter>)
//! })
//! .await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::mount::{Mount, MountLayout, TempMount};
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter};

/// Runs every check against the backend `open` opens at a root directory.
pub async fn run<F, Fut>(open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Snapshotter>>>,
{
    let checks: [(&str, Check); 10] = [
        ("chain", |s| Box::pin(chain(s))),
        ("view", |s| Box::pin(views(s))),
        ("commit", |s| Box::pin(commit(s))),
        ("remove", |s| Box::pin(remove(s))),
        ("labels", |s| Box::pin(labels(s))),
        ("walk", |s| Box::pin(walk(s))),
        ("usage", |s| Box::pin(usage(s))),
        ("bad_input", |s| Box::pin(bad_input(s))),
        ("concurrency", |s| Box::pin(concurrency(s))),
        ("reopen", |s| Box::pin(reopen_prepare(s))),
    ];
    for (name, check) in checks {
        let root = tempfile::tempdir().expect("creating a temporary root");
        let s = open(root.path().to_path_buf())
            .await
            .unwrap_or_else(|e| panic!("[{name}] opening the snapshotter: {e}"));
        eprintln!("conformance: {name}");
        check(s.clone()).await;
        if name == "reopen" {
            drop(s);
            let s = open(root.path().to_path_buf())
                .await
                .unwrap_or_else(|e| panic!("[reopen] reopening the snapshotter: {e}"));
            reopen_check(s).await;
        }
    }
}

type Check = fn(Arc<dyn Snapshotter>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a tree holds: path → "file:<contents>", "link:<target>", "dir", "fifo".
fn read_tree(root: &Path) -> BTreeMap<String, String> {
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

fn tree_of(mounts: &[Mount]) -> BTreeMap<String, String> {
    let m = TempMount::mount(mounts).unwrap_or_else(|e| panic!("mounting {mounts:?}: {e}"));
    read_tree(m.path())
}

fn write_files(mounts: &[Mount], files: &[(&str, &str)], delete: &[&str]) {
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

fn mounts_read_only(mounts: &[Mount]) -> bool {
    match MountLayout::from_mounts(mounts) {
        Ok(MountLayout::Directory { read_only, .. }) => read_only,
        Ok(MountLayout::Overlay { upper, .. }) => upper.is_none(),
        Err(_) => false,
    }
}

fn expect_err<T: std::fmt::Debug>(
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
async fn layer(
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

async fn build_chain(s: &dyn Snapshotter) {
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

fn expected_top() -> BTreeMap<String, String> {
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

/// A chain of three layers: each layer's files visible at the top, deletions and
/// changes respected, lower layers unchanged, special files preserved.
async fn chain(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    // Layer A also holds a symlink, a hardlink pair, a fifo and precise metadata,
    // which must survive into the top of the chain.
    let mounts = s
        .prepare("A-active", None, Labels::new())
        .await
        .expect("[chain] prepare A");
    let xattr_ok;
    {
        let m = TempMount::mount(&mounts).expect("[chain] mount A");
        let p = m.path();
        fs::write(p.join("base.txt"), "base").expect("write");
        fs::write(p.join("del.txt"), "doomed").expect("write");
        fs::create_dir(p.join("dir")).expect("mkdir");
        fs::write(p.join("dir/x"), "x1").expect("write");
        std::os::unix::fs::symlink("base.txt", p.join("link")).expect("symlink");
        fs::write(p.join("hl1"), "linked").expect("write");
        fs::hard_link(p.join("hl1"), p.join("hl2")).expect("hardlink");
        nix::unistd::mkfifo(
            &p.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        fs::set_permissions(p.join("base.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::lchown(p.join("base.txt"), Some(1234), Some(5678)).expect("chown");
        }
        xattr_ok = xattr::set(p.join("base.txt"), "user.strata", b"kept").is_ok();
        let atime = nix::sys::time::TimeSpec::new(1_500_000_000, 5);
        let mtime = nix::sys::time::TimeSpec::new(1_600_000_000, 123_456_789);
        nix::sys::stat::utimensat(
            None,
            &p.join("base.txt"),
            &atime,
            &mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
    s.commit("A", "A-active", labels_of(&[("layer", "A")]))
        .await
        .expect("[chain] commit A");
    layer(
        s,
        "B",
        Some("A"),
        &[("b.txt", "b"), ("dir/x", "x2")],
        &["del.txt"],
    )
    .await;
    layer(s, "C", Some("B"), &[("c.txt", "c"), ("dir/y", "y")], &[]).await;

    for (name, parent) in [("A", None), ("B", Some("A")), ("C", Some("B"))] {
        let info = s.stat(name).await.expect("[chain] stat");
        assert_eq!(info.kind, Kind::Committed, "[chain] kind of {name}");
        assert_eq!(info.parent.as_deref(), parent, "[chain] parent of {name}");
        assert_eq!(info.labels, labels_of(&[("layer", name)]), "[chain] labels");
    }

    let top = s
        .view("C-view", Some("C"), Labels::new())
        .await
        .expect("[chain] view C");
    let m = TempMount::mount(&top).expect("[chain] mount the view of C");
    let mut expected = expected_top();
    for (k, v) in [
        ("link", "link:base.txt"),
        ("hl1", "file:linked"),
        ("hl2", "file:linked"),
        ("fifo", "other"),
    ] {
        expected.insert(k.into(), v.into());
    }
    assert_eq!(read_tree(m.path()), expected, "[chain] tree at the top");
    let base = fs::symlink_metadata(m.path().join("base.txt")).expect("lstat");
    assert_eq!(base.mode() & 0o7777, 0o640, "[chain] mode kept");
    assert_eq!(
        (base.mtime(), base.mtime_nsec()),
        (1_600_000_000, 123_456_789),
        "[chain] mtime kept to the nanosecond"
    );
    if nix::unistd::geteuid().is_root() {
        assert_eq!((base.uid(), base.gid()), (1234, 5678), "[chain] owner kept");
    }
    if xattr_ok {
        assert_eq!(
            xattr::get(m.path().join("base.txt"), "user.strata").expect("getxattr"),
            Some(b"kept".to_vec()),
            "[chain] xattr kept"
        );
    }
    let h1 = fs::symlink_metadata(m.path().join("hl1")).expect("lstat");
    let h2 = fs::symlink_metadata(m.path().join("hl2")).expect("lstat");
    assert_eq!(h1.ino(), h2.ino(), "[chain] hardlinks stay one inode");
    assert_eq!(h1.nlink(), 2, "[chain] hardlink count");
    let fifo = fs::symlink_metadata(m.path().join("fifo")).expect("lstat");
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()),
        "[chain] fifo kept"
    );
    drop(m);

    // The lower layers did not change when their children changed files.
    let a = s
        .view("A-view", Some("A"), Labels::new())
        .await
        .expect("[chain] view A");
    let tree_a = tree_of(&a);
    assert_eq!(
        tree_a.get("del.txt").map(String::as_str),
        Some("file:doomed")
    );
    assert_eq!(tree_a.get("dir/x").map(String::as_str), Some("file:x1"));
    assert!(!tree_a.contains_key("b.txt"), "[chain] A has no b.txt");
}

/// Views of committed snapshots are read-only, show the full tree, and are kind View
/// with the committed snapshot as parent.
async fn views(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    build_chain(s).await;
    for (key, parent) in [("v-A", "A"), ("v-B", "B"), ("v-C", "C")] {
        let mounts = s
            .view(key, Some(parent), labels_of(&[("purpose", "read")]))
            .await
            .expect("[view] view");
        assert!(
            mounts_read_only(&mounts),
            "[view] mounts of {key} are read-only: {mounts:?}"
        );
        assert_eq!(
            s.mounts(key).await.expect("[view] mounts"),
            mounts,
            "[view] mounts() repeats view()'s mounts"
        );
        let info = s.stat(key).await.expect("[view] stat");
        assert_eq!(info.kind, Kind::View);
        assert_eq!(info.parent.as_deref(), Some(parent));
        assert_eq!(info.labels, labels_of(&[("purpose", "read")]));
    }
    assert_eq!(
        tree_of(&s.mounts("v-C").await.expect("mounts")),
        expected_top()
    );
    let b = tree_of(&s.mounts("v-B").await.expect("mounts"));
    assert_eq!(b.get("dir/x").map(String::as_str), Some("file:x2"));
    assert!(!b.contains_key("c.txt") && !b.contains_key("del.txt"));
    // Writing through a read-only overlay fails; a bind view says ro in its options.
    let top = s.mounts("v-C").await.expect("mounts");
    if let Ok(MountLayout::Overlay { .. }) = MountLayout::from_mounts(&top) {
        let m = TempMount::mount(&top).expect("mount");
        assert!(
            fs::write(m.path().join("new.txt"), "x").is_err(),
            "[view] an overlay view refuses writes"
        );
    }
    // A view without a parent is an empty tree.
    let empty = s.view("v-empty", None, Labels::new()).await.expect("view");
    assert!(mounts_read_only(&empty));
    assert!(
        tree_of(&empty).is_empty(),
        "[view] a view of nothing is empty"
    );
    // Views cannot be parents or be committed.
    expect_err(
        "[view] prepare on a view",
        s.prepare("on-view", Some("v-C"), Labels::new()).await,
        "v-C",
        |e| matches!(e, Error::FailedPrecondition { .. }),
    );
    expect_err(
        "[view] commit of a view",
        s.commit("from-view", "v-C", Labels::new()).await,
        "v-C",
        |e| matches!(e, Error::FailedPrecondition { .. }),
    );
}

/// Commit turns an active snapshot into an immutable one: the key is gone, the name is
/// committed, it has no mounts, and it can't be committed again.
async fn commit(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    let mounts = s
        .prepare("k", None, labels_of(&[("at", "prepare")]))
        .await
        .expect("[commit] prepare");
    assert!(
        !mounts_read_only(&mounts),
        "[commit] active mounts are writable"
    );
    assert_eq!(s.stat("k").await.expect("stat").kind, Kind::Active);
    write_files(&mounts, &[("f", "1")], &[]);
    s.commit("K", "k", labels_of(&[("at", "commit")]))
        .await
        .expect("[commit] commit");
    expect_err(
        "[commit] stat of the old key",
        s.stat("k").await,
        "k",
        |e| e.is_not_found(),
    );
    let info = s.stat("K").await.expect("[commit] stat K");
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.parent, None);
    assert_eq!(info.labels, labels_of(&[("at", "commit")]));
    expect_err(
        "[commit] mounts of committed",
        s.mounts("K").await,
        "K",
        |e| matches!(e, Error::FailedPrecondition { .. }),
    );
    expect_err(
        "[commit] committing the key twice",
        s.commit("K2", "k", Labels::new()).await,
        "k",
        Error::is_not_found,
    );
    expect_err(
        "[commit] committing a committed snapshot",
        s.commit("K3", "K", Labels::new()).await,
        "K",
        |e| matches!(e, Error::FailedPrecondition { .. }),
    );
    s.prepare("k2", Some("K"), Labels::new())
        .await
        .expect("[commit] prepare k2");
    expect_err(
        "[commit] committing onto a taken name",
        s.commit("K", "k2", Labels::new()).await,
        "K",
        |e| matches!(e, Error::AlreadyExists(_)),
    );
    assert_eq!(
        s.stat("k2").await.expect("stat k2").kind,
        Kind::Active,
        "[commit] a failed commit leaves the active snapshot"
    );
    // Changing the child does not change the committed snapshot.
    write_files(
        &s.mounts("k2").await.expect("mounts"),
        &[("f", "2"), ("g", "new")],
        &[],
    );
    let v = s.view("vK", Some("K"), Labels::new()).await.expect("view");
    let tree = tree_of(&v);
    assert_eq!(tree.get("f").map(String::as_str), Some("file:1"));
    assert!(!tree.contains_key("g"));
}

/// Remove refuses snapshots with children (including views), and removing a key makes
/// it reusable with a fresh tree.
async fn remove(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    build_chain(s).await;
    s.view("vB", Some("B"), Labels::new()).await.expect("view");
    let pa = s
        .prepare("pa", Some("A"), Labels::new())
        .await
        .expect("prep");
    write_files(&pa, &[("pa.txt", "pa")], &[]);
    // A has an active child, B a view and a committed child.
    for key in ["A", "B"] {
        expect_err(
            "[remove] removing a parent",
            s.remove(key).await,
            key,
            |e| matches!(e, Error::FailedPrecondition { .. }),
        );
    }
    assert!(
        s.stat("B").await.is_ok(),
        "[remove] a refused remove keeps it"
    );
    for key in ["vB", "C", "B", "pa", "A"] {
        s.remove(key)
            .await
            .unwrap_or_else(|e| panic!("[remove] removing {key}: {e}"));
        expect_err("[remove] stat after remove", s.stat(key).await, key, |e| {
            e.is_not_found()
        });
    }
    expect_err(
        "[remove] removing twice",
        s.remove("A").await,
        "A",
        Error::is_not_found,
    );
    assert!(s.walk(&Filter::All).await.expect("walk").is_empty());
    let pa = s.prepare("pa", None, Labels::new()).await.expect("prepare");
    assert!(
        tree_of(&pa).is_empty(),
        "[remove] a reused key starts from a fresh tree"
    );
}

/// Labels: set at prepare/commit, updated per key with field paths, replaced whole.
async fn labels(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    s.prepare("lab", None, labels_of(&[("a", "1"), ("b", "2")]))
        .await
        .expect("prepare");
    let info = s.stat("lab").await.expect("stat");
    assert_eq!(info.labels, labels_of(&[("a", "1"), ("b", "2")]));
    let mut next = info.clone();
    next.labels = labels_of(&[("a", "10"), ("c", "3"), ("ignored", "x")]);
    let got = s
        .update(next, &["labels.a".into(), "labels.c".into()])
        .await
        .expect("[labels] update by key");
    assert_eq!(
        got.labels,
        labels_of(&[("a", "10"), ("b", "2"), ("c", "3")])
    );
    assert!(got.updated_at >= got.created_at);
    let mut next = got.clone();
    next.labels.remove("b");
    let got = s
        .update(next, &["labels.b".into()])
        .await
        .expect("[labels] remove one");
    assert_eq!(got.labels, labels_of(&[("a", "10"), ("c", "3")]));
    let mut next = got.clone();
    next.labels = labels_of(&[("z", "1")]);
    let got = s.update(next, &[]).await.expect("[labels] replace");
    assert_eq!(got.labels, labels_of(&[("z", "1")]));
    let mut next = got.clone();
    next.labels = labels_of(&[("y", "2")]);
    let got = s
        .update(next, &["labels".into()])
        .await
        .expect("[labels] replace by path");
    assert_eq!(got.labels, labels_of(&[("y", "2")]));
    assert_eq!(s.stat("lab").await.expect("stat").labels, got.labels);
    for bad in ["name", "labels.", "parent", "kind"] {
        expect_err(
            "[labels] bad field path",
            s.update(got.clone(), &[bad.to_string()]).await,
            "lab",
            |e| matches!(e, Error::InvalidArgument(_)),
        );
    }
    let mut missing = got.clone();
    missing.name = "nope".into();
    expect_err(
        "[labels] update of a missing snapshot",
        s.update(missing, &[]).await,
        "nope",
        Error::is_not_found,
    );
}

/// Walk returns what the filters select, sorted by name.
async fn walk(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    let zeta = s
        .prepare("zeta", None, Labels::new())
        .await
        .expect("prepare");
    write_files(&zeta, &[("z", "z")], &[]);
    s.commit("zeta-c", "zeta", labels_of(&[("team", "x")]))
        .await
        .expect("commit");
    s.prepare("alpha", Some("zeta-c"), labels_of(&[("team", "y")]))
        .await
        .expect("prepare");
    s.commit("alpha-c", "alpha", labels_of(&[("team", "y")]))
        .await
        .expect("commit");
    s.prepare("mid", Some("alpha-c"), Labels::new())
        .await
        .expect("prepare");
    s.view("beta", Some("zeta-c"), labels_of(&[("team", "x")]))
        .await
        .expect("view");
    let names = |v: Vec<Info>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (Filter::All, vec!["alpha-c", "beta", "mid", "zeta-c"]),
        (Filter::Kind(Kind::Committed), vec!["alpha-c", "zeta-c"]),
        (Filter::Kind(Kind::Active), vec!["mid"]),
        (Filter::Kind(Kind::View), vec!["beta"]),
        (Filter::Parent("zeta-c".into()), vec!["alpha-c", "beta"]),
        (
            Filter::HasLabel("team".into()),
            vec!["alpha-c", "beta", "zeta-c"],
        ),
        (
            Filter::LabelEquals("team".into(), "x".into()),
            vec!["beta", "zeta-c"],
        ),
        (
            Filter::And(vec![
                Filter::Kind(Kind::Committed),
                Filter::LabelEquals("team".into(), "x".into()),
            ]),
            vec!["zeta-c"],
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(
            names(s.walk(&filter).await.expect("walk")),
            want,
            "[walk] {filter:?}"
        );
    }
}

/// Usage counts the snapshot's own bytes and inodes, hardlinks once.
async fn usage(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    let m = s.prepare("u", None, Labels::new()).await.expect("prepare");
    let empty = s.usage("u").await.expect("[usage] usage");
    assert_eq!(empty.inodes, 1, "[usage] an empty snapshot is its root dir");
    let big = "x".repeat(256 * 1024);
    write_files(&m, &[("big", &big)], &[]);
    let one = s.usage("u").await.expect("[usage] usage");
    assert_eq!(one.inodes, 2, "[usage] root and one file");
    assert!(
        one.size >= empty.size + 256 * 1024,
        "[usage] size counts the file: {one:?} vs {empty:?}"
    );
    {
        let t = TempMount::mount(&m).expect("mount");
        fs::hard_link(t.path().join("big"), t.path().join("big2")).expect("hardlink");
    }
    assert_eq!(
        s.usage("u").await.expect("[usage] usage"),
        one,
        "[usage] a hardlink is counted once"
    );
    write_files(&m, &[("d/small", "s")], &[]);
    assert_eq!(s.usage("u").await.expect("usage").inodes, 4);
    s.commit("U", "u", Labels::new()).await.expect("commit");
    assert_eq!(
        s.usage("U").await.expect("[usage] of committed").inodes,
        4,
        "[usage] committing keeps the data"
    );
    expect_err(
        "[usage] unknown",
        s.usage("nope").await,
        "nope",
        Error::is_not_found,
    );
}

/// Unknown keys, missing or uncommitted parents, taken keys and empty keys give typed
/// errors naming what is at fault, and leave nothing behind.
async fn bad_input(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    let missing = "no-such-parent";
    expect_err(
        "[bad_input] prepare on a missing parent",
        s.prepare("x", Some(missing), Labels::new()).await,
        missing,
        Error::is_not_found,
    );
    expect_err(
        "[bad_input] view of a missing parent",
        s.view("y", Some(missing), Labels::new()).await,
        missing,
        Error::is_not_found,
    );
    s.prepare("act", None, Labels::new())
        .await
        .expect("prepare");
    expect_err(
        "[bad_input] prepare on an active parent",
        s.prepare("x", Some("act"), Labels::new()).await,
        "act",
        |e| matches!(e, Error::FailedPrecondition { .. }),
    );
    expect_err(
        "[bad_input] prepare of a taken key",
        s.prepare("act", None, Labels::new()).await,
        "act",
        |e| matches!(e, Error::AlreadyExists(_)),
    );
    expect_err(
        "[bad_input] view with a taken key",
        s.view("act", None, Labels::new()).await,
        "act",
        |e| matches!(e, Error::AlreadyExists(_)),
    );
    expect_err(
        "[bad_input] empty key",
        s.prepare("", None, Labels::new()).await,
        "empty",
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    expect_err(
        "[bad_input] commit of an unknown key",
        s.commit("n", "unknown-key", Labels::new()).await,
        "unknown-key",
        Error::is_not_found,
    );
    for (what, res) in [
        ("stat", s.stat("unknown-key").await.map(|_| ())),
        ("mounts", s.mounts("unknown-key").await.map(|_| ())),
        ("usage", s.usage("unknown-key").await.map(|_| ())),
        ("remove", s.remove("unknown-key").await),
    ] {
        expect_err(
            &format!("[bad_input] {what} of an unknown key"),
            res,
            "unknown-key",
            Error::is_not_found,
        );
    }
    let names: Vec<String> = s
        .walk(&Filter::All)
        .await
        .expect("walk")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["act"], "[bad_input] failed calls leave nothing");
}

/// Before reopening: a chain, an active snapshot with a file, a view.
async fn reopen_prepare(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    build_chain(s).await;
    let act = s
        .prepare("act", Some("C"), labels_of(&[("keep", "me")]))
        .await
        .expect("prepare");
    write_files(&act, &[("act.txt", "in progress")], &[]);
    s.view("vC", Some("C"), Labels::new()).await.expect("view");
}

/// After reopening: the same snapshots, trees and labels; work continues.
async fn reopen_check(s: Arc<dyn Snapshotter>) {
    let s = s.as_ref();
    let all = s.walk(&Filter::All).await.expect("[reopen] walk");
    let summary: Vec<(String, Kind, Option<String>)> = all
        .iter()
        .map(|i| (i.name.clone(), i.kind, i.parent.clone()))
        .collect();
    let want = |n: &str, k, p: Option<&str>| (n.to_string(), k, p.map(str::to_string));
    assert_eq!(
        summary,
        vec![
            want("A", Kind::Committed, None),
            want("B", Kind::Committed, Some("A")),
            want("C", Kind::Committed, Some("B")),
            want("act", Kind::Active, Some("C")),
            want("vC", Kind::View, Some("C")),
        ],
        "[reopen] snapshots"
    );
    assert_eq!(
        s.stat("act").await.expect("stat").labels,
        labels_of(&[("keep", "me")])
    );
    assert_eq!(
        tree_of(&s.mounts("vC").await.expect("[reopen] mounts")),
        expected_top()
    );
    let act = tree_of(&s.mounts("act").await.expect("[reopen] mounts"));
    assert_eq!(
        act.get("act.txt").map(String::as_str),
        Some("file:in progress")
    );
    s.commit("D", "act", Labels::new())
        .await
        .expect("[reopen] commit after reopen");
    layer(s, "E", Some("D"), &[("e.txt", "e")], &[]).await;
    let mut want_top = expected_top();
    want_top.insert("act.txt".into(), "file:in progress".into());
    want_top.insert("e.txt".into(), "file:e".into());
    let v = s.view("vE", Some("E"), Labels::new()).await.expect("view");
    assert_eq!(
        tree_of(&v),
        want_top,
        "[reopen] new layers stack on old ones"
    );
    assert_eq!(
        tree_of(&s.mounts("vC").await.expect("mounts")),
        expected_top(),
        "[reopen] new snapshots do not reuse old directories"
    );
}

/// Concurrent calls: racing prepares of one key give exactly one snapshot; racing
/// prepares of distinct keys on one parent all succeed with separate trees.
async fn concurrency(s: Arc<dyn Snapshotter>) {
    layer(s.as_ref(), "P", None, &[("p", "p")], &[]).await;
    let same =
        futures::future::join_all((0..6).map(|_| s.prepare("same", Some("P"), Labels::new())))
            .await;
    let ok = same.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "[concurrency] one of the racing prepares wins");
    for r in same.into_iter().filter(|r| r.is_err()) {
        expect_err("[concurrency] losing prepare", r, "same", |e| {
            matches!(e, Error::AlreadyExists(_))
        });
    }
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let mounts =
        futures::future::join_all(keys.iter().map(|k| s.prepare(k, Some("P"), Labels::new())))
            .await;
    for (k, m) in keys.iter().zip(mounts) {
        let m = m.unwrap_or_else(|e| panic!("[concurrency] prepare {k}: {e}"));
        write_files(&m, &[("own", k)], &[]);
    }
    for k in &keys {
        let tree = tree_of(&s.mounts(k).await.expect("mounts"));
        assert_eq!(
            tree.get("own"),
            Some(&format!("file:{k}")),
            "[concurrency] {k}"
        );
        assert_eq!(tree.get("p").map(String::as_str), Some("file:p"));
    }
}
