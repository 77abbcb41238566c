//! Checks of calls that must fail cleanly: bad input, and the losers of racing calls.

use std::sync::Arc;

use super::support::{expect_err, layer, tree_of, write_files};
use crate::error::Error;
use crate::snapshotter::{Filter, Labels, Snapshotter};

/// Unknown keys, missing or uncommitted parents, taken keys and empty keys give typed
/// errors naming what is at fault, and leave nothing behind.
pub(super) async fn bad_input(s: Arc<dyn Snapshotter>) {
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

/// Concurrent calls: racing prepares of one key give exactly one snapshot; racing
/// prepares of distinct keys on one parent all succeed with separate trees.
pub(super) async fn concurrency(s: Arc<dyn Snapshotter>) {
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
