//! Checks of what snapshots say about themselves: labels, walk filters, disk usage.

use std::fs;
use std::sync::Arc;

use super::support::{expect_err, labels_of, write_files};
use crate::error::Error;
use crate::mount::TempMount;
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter};

/// Labels: set at prepare/commit, updated per key with field paths, replaced whole.
pub(super) async fn labels(s: Arc<dyn Snapshotter>) {
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
pub(super) async fn walk(s: Arc<dyn Snapshotter>) {
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
pub(super) async fn usage(s: Arc<dyn Snapshotter>) {
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
