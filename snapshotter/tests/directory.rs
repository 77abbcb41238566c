//! The directory backend: registered trees as a chain of committed snapshots.

use std::fs;
use std::path::Path;

use strata_snapshotter::{
    DirectorySnapshotter, Error, Filter, Kind, Labels, MountLayout, Snapshotter, TempMount,
};

fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if p.is_dir() {
                stack.push(p);
                out.push((rel, "dir".into()));
            } else {
                out.push((rel, fs::read_to_string(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn make_dir(base: &Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let d = base.join(name);
    for (rel, c) in files {
        let p = d.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, c).expect("write");
    }
    fs::create_dir_all(&d).expect("mkdir");
    d
}

#[tokio::test]
async fn registered_chain_views_and_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trees = tmp.path().join("trees");
    let d1 = make_dir(&trees, "one", &[("a", "1")]);
    let d2 = make_dir(&trees, "two", &[("a", "1"), ("b", "2")]);
    let d3 = make_dir(&trees, "three", &[("b", "2"), ("sub/c", "3")]);
    let root = tmp.path().join("meta");
    let s = DirectorySnapshotter::open(&root).expect("open");

    let label = |v: &str| Labels::from([("strata.io/description".to_string(), v.to_string())]);
    let info = s
        .register("l1", None, &d1, label("one"))
        .await
        .expect("register l1");
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.parent, None);
    // A non-canonical path is recorded canonicalized.
    let indirect = trees.join("one/../two");
    s.register("l2", Some("l1"), &indirect, label("two"))
        .await
        .expect("register l2");
    assert_eq!(
        s.path("l2").await.expect("path"),
        d2.canonicalize().expect("canonical")
    );
    s.register("l3", Some("l2"), &d3, Labels::new())
        .await
        .expect("register l3");
    assert_eq!(
        s.stat("l3").await.expect("stat").parent.as_deref(),
        Some("l2")
    );

    // A view of each layer is a read-only bind of that layer's directory: its full tree.
    for (key, parent, dir) in [("v1", "l1", &d1), ("v2", "l2", &d2), ("v3", "l3", &d3)] {
        let mounts = s
            .view(key, Some(parent), Labels::new())
            .await
            .expect("view");
        assert_eq!(
            MountLayout::from_mounts(&mounts).expect("layout"),
            MountLayout::Directory {
                root: dir.canonicalize().expect("canonical"),
                read_only: true
            }
        );
        let m = TempMount::mount(&mounts).expect("mount");
        assert_eq!(tree(m.path()), tree(dir));
        assert_eq!(s.stat(key).await.expect("stat").kind, Kind::View);
    }
    let empty = s
        .view("v0", None, Labels::new())
        .await
        .expect("view of nothing");
    assert!(tree(TempMount::mount(&empty).expect("mount").path()).is_empty());

    // Usage counts the registered tree of l3: its root, b, sub and sub/c.
    assert_eq!(s.usage("l3").await.expect("usage").inodes, 4);

    // Reopen: same registrations, same views.
    drop(s);
    let s = DirectorySnapshotter::open(&root).expect("reopen");
    let names: Vec<String> = s
        .walk(&Filter::Kind(Kind::Committed))
        .await
        .expect("walk")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["l1", "l2", "l3"]);
    assert_eq!(
        s.stat("l2").await.expect("stat").labels,
        label("two"),
        "labels persist"
    );
    let m = TempMount::mount(&s.mounts("v3").await.expect("mounts")).expect("mount");
    assert_eq!(tree(m.path()), tree(&d3));
    drop(m);

    // Removing forgets snapshots, never the user's directories; parents are refused.
    match s.remove("l2").await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "l2"),
        other => panic!("removing a parent: {other:?}"),
    }
    for key in ["v3", "l3", "v2", "l2"] {
        s.remove(key).await.expect("remove");
    }
    assert!(d3.join("sub/c").exists() && d2.join("b").exists());

    // A registered directory that disappears is reported, naming it.
    s.view("v1b", Some("l1"), Labels::new())
        .await
        .expect("view");
    fs::remove_dir_all(&d1).expect("rm");
    match s.mounts("v1b").await {
        Err(e @ Error::InvalidPath { .. }) => assert!(e.to_string().contains("one"), "{e}"),
        other => panic!("mounts of a vanished directory: {other:?}"),
    }
}

#[tokio::test]
async fn bad_registrations_and_writes_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = DirectorySnapshotter::open(tmp.path().join("meta")).expect("open");
    let missing = tmp.path().join("does-not-exist");
    match s.register("m", None, &missing, Labels::new()).await {
        Err(e @ Error::InvalidPath { .. }) => {
            assert!(e.to_string().contains("does-not-exist"), "{e}");
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
        other => panic!("registering a missing path: {other:?}"),
    }
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").expect("write");
    match s.register("f", None, &file, Labels::new()).await {
        Err(e @ Error::InvalidPath { .. }) => {
            assert!(e.to_string().contains("a-file"), "{e}");
            assert!(e.to_string().contains("not a directory"), "{e}");
        }
        other => panic!("registering a file: {other:?}"),
    }
    let dir = make_dir(tmp.path(), "d", &[("x", "x")]);
    match s.register("d", Some("nope"), &dir, Labels::new()).await {
        Err(Error::NotFound(k)) => assert_eq!(k, "nope"),
        other => panic!("registering on a missing parent: {other:?}"),
    }
    s.register("d", None, &dir, Labels::new())
        .await
        .expect("register");
    match s.register("d", None, &dir, Labels::new()).await {
        Err(Error::AlreadyExists(k)) => assert_eq!(k, "d"),
        other => panic!("registering a taken name: {other:?}"),
    }
    match s.prepare("w", Some("d"), Labels::new()).await {
        Err(e @ Error::Unsupported(_)) => assert!(e.to_string().contains("\"w\""), "{e}"),
        other => panic!("preparing on the directory backend: {other:?}"),
    }
    match s.commit("d2", "d", Labels::new()).await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "d"),
        other => panic!("committing a committed snapshot: {other:?}"),
    }
    match s.view("v", Some("missing"), Labels::new()).await {
        Err(Error::NotFound(k)) => assert_eq!(k, "missing"),
        other => panic!("view of a missing parent: {other:?}"),
    }
    // Nothing was recorded by the failed calls.
    let names: Vec<String> = s
        .walk(&Filter::All)
        .await
        .expect("walk")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["d"]);
}
