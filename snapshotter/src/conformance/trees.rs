//! Checks of the trees snapshots hold: a chain of layers, and views of it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use super::support::{
    build_chain, expect_err, expected_top, labels_of, layer, mounts_read_only, read_tree, tree_of,
};
use crate::error::Error;
use crate::mount::{MountLayout, TempMount};
use crate::snapshotter::{Kind, Labels, Snapshotter};

/// A chain of three layers: each layer's files visible at the top, deletions and
/// changes respected, lower layers unchanged, special files preserved.
pub(super) async fn chain(s: Arc<dyn Snapshotter>) {
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
pub(super) async fn views(s: Arc<dyn Snapshotter>) {
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
