//! The overlay fast path and the double walk produce the same layer for the same change
//! (with real overlay mounts; skipped with a printed reason where mounting fails).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use strata_differ::{Applier, CompareOptions, Comparer, WalkingDiffer};
use strata_snapshotter::Mount;

fn lower_tree(root: &Path) {
    for d in ["dir/sub", "gone/deep", "emptied/a", "d2/x", "keepdir"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, data) in [
        ("dir/file", &b"one"[..]),
        ("dir/keep", b"keep"),
        ("dir/sub/other", b"other"),
        ("gone/deep/f", b"f"),
        ("emptied/a/b", b"b"),
        ("emptied/c", b"c"),
        ("f2", b"file two"),
        ("d2/x/y", b"y"),
        ("keepdir/k", b"k"),
    ] {
        fs::write(root.join(f), data).unwrap();
    }
    std::os::unix::fs::symlink("dir/file", root.join("sym")).unwrap();
    for p in [
        "dir/file",
        "dir/keep",
        "dir/sub/other",
        "dir/sub",
        "dir",
        "gone",
        "emptied",
        "f2",
        "keepdir/k",
        "keepdir",
    ] {
        set_mtime(&root.join(p), 1_650_000_000, 0);
    }
}

/// Changes made through the merged mount, as a build step would.
fn change(m: &Path) {
    fs::write(m.join("dir/file"), b"two").unwrap(); // same size, maybe same second
    fs::remove_file(m.join("dir/sub/other")).unwrap();
    fs::remove_dir_all(m.join("gone")).unwrap();
    fs::remove_dir_all(m.join("emptied")).unwrap();
    fs::create_dir(m.join("emptied")).unwrap(); // recreated: an opaque upper dir
    fs::write(m.join("emptied/new"), b"new").unwrap();
    fs::set_permissions(
        m.join("dir/keep"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4750),
    )
    .unwrap();
    xattr::set(m.join("dir"), "user.k", b"v").unwrap();
    fs::create_dir_all(m.join("newdir/x")).unwrap();
    fs::write(m.join("newdir/x/f"), vec![9u8; 70_000]).unwrap();
    fs::remove_file(m.join("f2")).unwrap();
    fs::create_dir(m.join("f2")).unwrap(); // file → dir
    fs::write(m.join("f2/inner"), b"inner").unwrap();
    fs::remove_dir_all(m.join("d2")).unwrap();
    fs::write(m.join("d2"), b"now a file").unwrap(); // dir → file
    fs::remove_file(m.join("sym")).unwrap();
    std::os::unix::fs::symlink("elsewhere", m.join("sym")).unwrap(); // new target
                                                                     // Copied up without a change: the layer must not carry it.
    let k = m.join("keepdir/k");
    let st = fs::metadata(&k).unwrap();
    std::os::unix::fs::chown(&k, Some(std::os::unix::fs::MetadataExt::uid(&st)), None).unwrap();
    set_mtime(&k, 1_650_000_000, 0);
    set_mtime(&m.join("keepdir"), 1_650_000_000, 0);
}

#[test]
fn the_fast_path_and_the_double_walk_write_the_same_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, u, w, m) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("merged"),
    );
    for d in [&l, &u, &w, &m] {
        fs::create_dir(d).unwrap();
    }
    lower_tree(&l);
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.display(),
        u.display(),
        w.display()
    );
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &m,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    ) {
        eprintln!(
            "SKIPPED: cannot mount an overlay here ({e}); run as root on a kernel with overlayfs"
        );
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(&m);
    change(&m);
    assert!(
        xattr::get(u.join("emptied"), "trusted.overlay.opaque")
            .unwrap()
            .is_some(),
        "the recreated directory is opaque in the upperdir"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let differ = WalkingDiffer::new(memory_store());
    let opts = CompareOptions::default();
    let lower = [Mount::bind(&l, true)];
    // The fast path never mounts the upper: a workdir that does not exist proves it
    // was taken (the double walk would have to mount it and fail).
    let upper_overlay = [Mount {
        mount_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", l.display()),
            format!("upperdir={}", u.display()),
            format!("workdir={}", tmp.path().join("no-such-workdir").display()),
        ],
    }];
    let fast = rt
        .block_on(differ.compare(&lower, &upper_overlay, &opts))
        .unwrap();
    let walked = rt
        .block_on(differ.compare(&lower, &[Mount::bind(&m, true)], &opts))
        .unwrap();
    assert_eq!(fast.diff_id, walked.diff_id);
    assert_eq!(fast.descriptor.digest, walked.descriptor.digest);

    // Lower given as a copy (not the overlay's lowerdir): no fast path; the differ
    // mounts the overlay itself (read-only) and walks it.
    let lower_copy = tmp.path().join("lower-copy");
    copy_tree(&l, &lower_copy);
    let upper_mounted = [Mount {
        mount_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", l.display()),
            format!("upperdir={}", u.display()),
            format!("workdir={}", w.display()),
        ],
    }];
    let mounted = rt
        .block_on(differ.compare(&[Mount::bind(&lower_copy, true)], &upper_mounted, &opts))
        .unwrap();
    assert_eq!(mounted.diff_id, walked.diff_id);

    let target = tmp.path().join("target");
    copy_tree(&l, &target);
    rt.block_on(differ.apply(&fast.descriptor, &[Mount::bind(&target, false)]))
        .unwrap();
    assert_same_tree(&m, &target);
}
