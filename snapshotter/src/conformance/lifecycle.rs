//! Checks of a snapshot's life: commit, remove, and a reopened snapshotter.

use std::sync::Arc;

use super::support::{
    build_chain, expect_err, expected_top, labels_of, layer, mounts_read_only, tree_of, write_files,
};
use crate::error::Error;
use crate::snapshotter::{Filter, Kind, Labels, Snapshotter};

/// Commit turns an active snapshot into an immutable one: the key is gone, the name is
/// committed, it has no mounts, and it can't be committed again.
pub(super) async fn commit(s: Arc<dyn Snapshotter>) {
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
pub(super) async fn remove(s: Arc<dyn Snapshotter>) {
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

/// Before reopening: a chain, an active snapshot with a file, a view.
pub(super) async fn reopen_prepare(s: Arc<dyn Snapshotter>) {
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
pub(super) async fn reopen_check(s: Arc<dyn Snapshotter>) {
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
