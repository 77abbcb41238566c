//! The conformance suite every backend must pass (enable the `conformance` feature).
//!
//! [`run`] takes a constructor of fresh, empty stores and runs every check, each on
//! its own store; [`check_reopen`] additionally checks that a persistent backend
//! reopened on the same location sees what was committed. Checks panic with a message
//! saying what a user would see go wrong.

use std::future::Future;
use std::time::SystemTime;

use crate::{
    read_blob, write_blob, ContentStore, Error, Filter, GarbageCollector, Image, ImageStore,
    Labels, LeaseManager, LeaseResource, ProcessOwner, ResourceKind, WriterOptions, OWNER_LABEL,
};
use strata_oci::labels as gc_labels;
use strata_oci::{media_types, Descriptor, Digest};

/// Everything the suite needs from a backend.
pub trait TestStore: ContentStore + LeaseManager + ImageStore + GarbageCollector + 'static {}
impl<T: ContentStore + LeaseManager + ImageStore + GarbageCollector + 'static> TestStore for T {}

fn desc(bytes: &[u8]) -> Descriptor {
    Descriptor::new(
        "application/octet-stream",
        Digest::sha256_of(bytes),
        bytes.len() as u64,
    )
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn put<S: ContentStore + ?Sized>(s: &S, bytes: &[u8], l: Labels) -> Descriptor {
    let d = desc(bytes);
    write_blob(s, &format!("put-{}", d.digest), bytes, &d, l)
        .await
        .unwrap_or_else(|e| panic!("writing {}: {e}", d.digest));
    d
}

/// Runs every check against fresh stores from `new_store`.
pub async fn run<S, F, Fut>(new_store: F)
where
    S: TestStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    round_trip(&new_store().await).await;
    concurrent_writers(&new_store().await).await;
    mismatch_leaves_nothing(&new_store().await).await;
    label_updates(&new_store().await).await;
    walk_filters(&new_store().await).await;
    lease_protection(&new_store().await).await;
    gc_follows_refs(&new_store().await).await;
    abort_ingest(&new_store().await).await;
    resume_ingest(&new_store().await).await;
    image_records(&new_store().await).await;
    missing_content(&new_store().await).await;
}

/// Commit, info, whole and ranged reads, walk.
pub async fn round_trip<S: TestStore>(s: &S) {
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = put(s, &bytes, Labels::new()).await;
    let info = s.info(&d.digest).await.expect("info of committed blob");
    assert_eq!((info.digest.clone(), info.size), (d.digest.clone(), d.size));
    assert_eq!(read_blob(s, &d, 1 << 20).await.expect("read_blob"), bytes);
    let r = s.reader(&d).await.expect("reader");
    assert_eq!(r.size(), bytes.len() as u64);
    let mut buf = vec![0u8; 1000];
    let n = r.read_at(&mut buf, 5000).await.expect("ranged read");
    assert!(n > 0 && n <= 1000);
    assert_eq!(
        &buf[..n],
        &bytes[5000..5000 + n],
        "ranged read returned other bytes"
    );
    let n = r
        .read_at(&mut buf, bytes.len() as u64 - 10)
        .await
        .expect("read near end");
    assert_eq!(&buf[..n], &bytes[bytes.len() - 10..]);
    assert_eq!(
        r.read_at(&mut buf, bytes.len() as u64)
            .await
            .expect("read at end"),
        0
    );
    match read_blob(s, &d, 10).await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(d.digest.as_str()), "{m}"),
        other => panic!("read_blob over its limit gave {other:?}"),
    }
    let all = s.walk(&Filter::All).await.expect("walk");
    assert_eq!(all.len(), 1);
    // Writing it again is a success, and still one blob.
    put(s, &bytes, Labels::new()).await;
    assert_eq!(s.walk(&Filter::All).await.expect("walk").len(), 1);
}

/// Two writers of one digest (different refs, and the same ref) both succeed.
pub async fn concurrent_writers<S: TestStore>(s: &S) {
    let bytes = vec![7u8; 300_000];
    let d = desc(&bytes);
    let (a, b, c) = tokio::join!(
        write_blob(s, "writer-a", &bytes, &d, labels(&[("a", "1")])),
        write_blob(s, "writer-b", &bytes, &d, labels(&[("b", "2")])),
        write_blob(s, "writer-a", &bytes, &d, Labels::new()),
    );
    a.expect("first writer");
    b.expect("second writer");
    c.expect("writer of the same ref");
    let all = s.walk(&Filter::All).await.expect("walk");
    assert_eq!(all.len(), 1, "one blob for one digest");
    assert_eq!(
        all[0].labels,
        labels(&[("a", "1"), ("b", "2")]),
        "labels of both writers are present"
    );
    assert!(s.list_statuses().await.expect("statuses").is_empty());
}

/// Wrong size or digest at commit: a typed error naming both values, and nothing left.
pub async fn mismatch_leaves_nothing<S: TestStore>(s: &S) {
    let bytes = b"the real content";
    let wrong = Digest::sha256_of(b"something else");
    let mut w = s
        .writer(WriterOptions {
            reference: "bad-digest".into(),
            expected: None,
        })
        .await
        .expect("writer");
    w.write(bytes).await.expect("write");
    match w
        .commit(bytes.len() as u64, Some(&wrong), Labels::new())
        .await
    {
        Err(Error::DigestMismatch {
            subject,
            expected,
            actual,
        }) => {
            assert!(subject.contains("bad-digest"), "{subject}");
            assert_eq!(expected, wrong.to_string());
            assert_eq!(actual, Digest::sha256_of(bytes).to_string());
        }
        other => panic!("commit with a wrong digest gave {other:?}"),
    }
    let mut w = s
        .writer(WriterOptions {
            reference: "bad-size".into(),
            expected: None,
        })
        .await
        .expect("writer");
    w.write(bytes).await.expect("write");
    match w.commit(3, None, Labels::new()).await {
        Err(Error::SizeMismatch {
            subject,
            expected: 3,
            actual,
        }) => {
            assert!(subject.contains("bad-size"), "{subject}");
            assert_eq!(actual, bytes.len() as u64);
        }
        other => panic!("commit with a wrong size gave {other:?}"),
    }
    assert!(
        s.walk(&Filter::All).await.expect("walk").is_empty(),
        "no blob left"
    );
    assert!(s
        .info(&Digest::sha256_of(bytes))
        .await
        .unwrap_err()
        .is_not_found());
    assert!(
        s.list_statuses().await.expect("statuses").is_empty(),
        "no ingest left"
    );
    // The ref is usable again.
    let mut w = s
        .writer(WriterOptions {
            reference: "bad-digest".into(),
            expected: None,
        })
        .await
        .expect("reusing the ref");
    assert_eq!(w.offset(), 0);
    w.write(bytes).await.expect("write");
    w.commit(
        bytes.len() as u64,
        Some(&Digest::sha256_of(bytes)),
        Labels::new(),
    )
    .await
    .expect("commit");
}

/// `update` with `labels` and `labels.<key>` field paths.
pub async fn label_updates<S: TestStore>(s: &S) {
    let d = put(s, b"labelled", labels(&[("a", "1"), ("b", "2")])).await;
    let mut info = s.info(&d.digest).await.expect("info");
    assert_eq!(info.labels, labels(&[("a", "1"), ("b", "2")]));
    info.labels = labels(&[("b", "3"), ("c", "4")]);
    let paths = ["labels.a", "labels.b", "labels.c"].map(String::from);
    let out = s.update(info.clone(), &paths).await.expect("update");
    assert_eq!(out.labels, labels(&[("b", "3"), ("c", "4")]));
    assert_eq!(s.info(&d.digest).await.expect("info").labels, out.labels);
    info.labels = labels(&[("z", "9")]);
    s.update(info.clone(), &["labels".to_string()])
        .await
        .expect("replace all labels");
    assert_eq!(
        s.info(&d.digest).await.expect("info").labels,
        labels(&[("z", "9")])
    );
    assert!(matches!(
        s.update(info.clone(), &["size".to_string()]).await,
        Err(Error::InvalidArgument(_))
    ));
    info.digest = Digest::sha256_of(b"absent");
    assert!(s.update(info, &[]).await.unwrap_err().is_not_found());
}

/// `walk` with label filters, sorted by digest.
pub async fn walk_filters<S: TestStore>(s: &S) {
    let a = put(s, b"a", labels(&[("kind", "layer"), ("x", "1")])).await;
    let b = put(s, b"b", labels(&[("kind", "config")])).await;
    let c = put(s, b"c", Labels::new()).await;
    let digests = |v: Vec<crate::Info>| v.into_iter().map(|i| i.digest).collect::<Vec<_>>();
    let mut all = vec![a.digest.clone(), b.digest.clone(), c.digest.clone()];
    all.sort();
    assert_eq!(digests(s.walk(&Filter::All).await.expect("walk")), all);
    assert_eq!(
        digests(
            s.walk(&Filter::HasLabel("kind".into()))
                .await
                .expect("walk")
        ),
        {
            let mut v = vec![a.digest.clone(), b.digest.clone()];
            v.sort();
            v
        }
    );
    assert_eq!(
        digests(
            s.walk(&Filter::LabelEquals("kind".into(), "config".into()))
                .await
                .expect("walk")
        ),
        vec![b.digest.clone()]
    );
    let and = Filter::And(vec![
        Filter::LabelEquals("kind".into(), "layer".into()),
        Filter::HasLabel("x".into()),
    ]);
    assert_eq!(
        digests(s.walk(&and).await.expect("walk")),
        vec![a.digest.clone()]
    );
    let or = Filter::Or(vec![
        Filter::LabelEquals("kind".into(), "config".into()),
        Filter::HasLabel("x".into()),
    ]);
    assert_eq!(digests(s.walk(&or).await.expect("walk")).len(), 2);
}

/// Leased content survives GC; delete inside a lease only releases it.
pub async fn lease_protection<S: TestStore>(s: &S) {
    s.create_lease(Some("build"), Labels::new())
        .await
        .expect("create lease");
    assert!(s
        .create_lease(Some("build"), Labels::new())
        .await
        .unwrap_err()
        .is_already_exists());
    let leased = s.with_lease("build");
    let d = desc(b"leased");
    write_blob(leased.as_ref(), "leased", b"leased", &d, Labels::new())
        .await
        .expect("write under lease");
    let res = s.list_resources("build").await.expect("resources");
    assert_eq!(
        res,
        vec![LeaseResource {
            id: d.digest.to_string(),
            kind: ResourceKind::Content
        }],
        "the commit is recorded in the lease"
    );
    assert!(s.garbage_collect().await.expect("gc").removed.is_empty());
    s.info(&d.digest).await.expect("leased content survives gc");
    // Delete inside the lease releases it from the lease only.
    leased.delete(&d.digest).await.expect("delete in lease");
    s.info(&d.digest)
        .await
        .expect("still present after delete in lease");
    assert!(s
        .list_resources("build")
        .await
        .expect("resources")
        .is_empty());
    let report = s.garbage_collect().await.expect("gc");
    assert_eq!(report.removed, vec![d.digest.clone()]);
    assert_eq!(report.bytes_freed, d.size);
    assert!(s.info(&d.digest).await.unwrap_err().is_not_found());

    // Deleting the lease makes its content collectable.
    s.create_lease(Some("tmp"), Labels::new())
        .await
        .expect("lease");
    let leased = s.with_lease("tmp");
    let e = desc(b"tmp");
    write_blob(leased.as_ref(), "tmp", b"tmp", &e, Labels::new())
        .await
        .expect("write");
    // Already-present content written under a lease is added to the lease too.
    s.create_lease(Some("second"), Labels::new())
        .await
        .expect("lease");
    write_blob(
        s.with_lease("second").as_ref(),
        "tmp2",
        b"tmp",
        &e,
        Labels::new(),
    )
    .await
    .expect("write present content");
    assert_eq!(
        s.list_resources("second").await.expect("resources").len(),
        1
    );
    s.delete_lease("tmp").await.expect("delete lease");
    assert!(
        s.garbage_collect().await.expect("gc").removed.is_empty(),
        "second lease holds it"
    );
    s.delete_lease("second").await.expect("delete lease");
    assert_eq!(
        s.garbage_collect().await.expect("gc").removed,
        vec![e.digest.clone()]
    );

    // An expired lease is deleted by GC and protects nothing.
    s.create_lease(
        Some("old"),
        labels(&[(gc_labels::GC_EXPIRE, "2000-01-01T00:00:00Z")]),
    )
    .await
    .expect("lease");
    let f = desc(b"old");
    write_blob(
        s.with_lease("old").as_ref(),
        "old",
        b"old",
        &f,
        Labels::new(),
    )
    .await
    .expect("write");
    assert_eq!(
        s.garbage_collect().await.expect("gc").removed,
        vec![f.digest.clone()]
    );
    assert!(s
        .list_leases()
        .await
        .expect("leases")
        .iter()
        .all(|l| l.id != "old"));
    assert!(s.delete_lease("nope").await.unwrap_err().is_not_found());
}

/// GC keeps what is reachable from roots through `gc.ref.content*` labels.
pub async fn gc_follows_refs<S: TestStore>(s: &S) {
    let layer = put(s, b"layer", Labels::new()).await;
    let config = put(s, b"config", Labels::new()).await;
    let manifest = put(
        s,
        b"manifest",
        labels(&[
            ("containerd.io/gc.ref.content.l.0", layer.digest.as_str()),
            (
                "containerd.io/gc.ref.content.config",
                config.digest.as_str(),
            ),
        ]),
    )
    .await;
    let index = put(
        s,
        b"index",
        labels(&[
            (gc_labels::GC_ROOT, "2024-01-01T00:00:00Z"),
            ("containerd.io/gc.ref.content.m.0", manifest.digest.as_str()),
        ]),
    )
    .await;
    let other_layer = put(s, b"other layer", Labels::new()).await;
    let other_manifest = put(
        s,
        b"other manifest",
        labels(&[(gc_labels::GC_REF_CONTENT, other_layer.digest.as_str())]),
    )
    .await;
    let garbage = put(
        s,
        b"garbage",
        labels(&[("containerd.io/gc.ref.content.x", "not a digest")]),
    )
    .await;
    let near_miss = put(s, b"near miss", Labels::new()).await;
    // A label that only looks like a ref key does not keep anything.
    let dangling = put(
        s,
        b"dangling",
        labels(&[("containerd.io/gc.ref.contentx", near_miss.digest.as_str())]),
    )
    .await;
    s.create_image(Image {
        name: "example.com/app:1".into(),
        target: other_manifest.clone(),
        labels: Labels::new(),
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    })
    .await
    .expect("create image");
    let report = s.garbage_collect().await.expect("gc");
    let mut expect = vec![
        garbage.digest.clone(),
        near_miss.digest.clone(),
        dangling.digest.clone(),
    ];
    expect.sort();
    assert_eq!(report.removed, expect);
    for d in [
        &layer,
        &config,
        &manifest,
        &index,
        &other_layer,
        &other_manifest,
    ] {
        s.info(&d.digest)
            .await
            .unwrap_or_else(|e| panic!("{} is reachable but gc removed it: {e}", d.digest));
    }
    // Dropping the image record releases its tree.
    s.delete_image("example.com/app:1")
        .await
        .expect("delete image");
    let mut expect = vec![other_manifest.digest.clone(), other_layer.digest.clone()];
    expect.sort();
    assert_eq!(s.garbage_collect().await.expect("gc").removed, expect);
    assert_eq!(s.walk(&Filter::All).await.expect("walk").len(), 4);
}

/// A lease whose recorded owner ([`OWNER_LABEL`]) is a dead process is deleted by
/// garbage collection, and the blobs only it held are swept; a lease of a live process
/// (as a [`LeaseGuard`](crate::LeaseGuard) creates it) keeps its blobs. Not part of
/// [`run`]: it holds for the backends whose collection strata runs (local, memory), not
/// for containerd's, which knows no owners.
pub async fn dead_owners_leases<S: TestStore>(s: &S) {
    let dead = crate::owner::dead_owner();
    let dead_lease = s
        .create_lease(None, labels(&[(OWNER_LABEL, &dead.to_string())]))
        .await
        .expect("create the dead process's lease");
    let orphan = desc(b"written by a killed export");
    write_blob(
        s.with_lease(&dead_lease.id).as_ref(),
        "orphan",
        b"written by a killed export",
        &orphan,
        Labels::new(),
    )
    .await
    .expect("write under the dead process's lease");
    let live = s
        .create_lease(
            None,
            labels(&[(OWNER_LABEL, &ProcessOwner::current().to_string())]),
        )
        .await
        .expect("create a live lease");
    let kept = desc(b"written by a live export");
    write_blob(
        s.with_lease(&live.id).as_ref(),
        "kept",
        b"written by a live export",
        &kept,
        Labels::new(),
    )
    .await
    .expect("write under the live lease");
    let report = s.garbage_collect().await.expect("gc");
    assert_eq!(report.removed_leases, vec![dead_lease.id.clone()]);
    assert_eq!(
        report.removed,
        vec![orphan.digest.clone()],
        "only the dead lease's blob"
    );
    let leases: Vec<String> = s
        .list_leases()
        .await
        .expect("list leases")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(leases, vec![live.id.clone()], "the live lease stays");
    s.info(&kept.digest)
        .await
        .expect("the live lease's blob stays");
}

/// Abort removes an ingest; a live writer's ingest cannot be aborted.
pub async fn abort_ingest<S: TestStore>(s: &S) {
    let mut w = s
        .writer(WriterOptions {
            reference: "to-abort".into(),
            expected: None,
        })
        .await
        .expect("writer");
    w.write(b"partial").await.expect("write");
    assert_eq!(s.status("to-abort").await.expect("status").offset, 7);
    assert!(matches!(
        s.abort("to-abort").await,
        Err(Error::FailedPrecondition(m)) if m.contains("to-abort")
    ));
    drop(w);
    s.abort("to-abort").await.expect("abort");
    assert!(s.status("to-abort").await.unwrap_err().is_not_found());
    assert!(s.abort("to-abort").await.unwrap_err().is_not_found());
    let w = s
        .writer(WriterOptions {
            reference: "to-abort".into(),
            expected: None,
        })
        .await
        .expect("writer after abort");
    assert_eq!(w.offset(), 0, "an aborted ingest starts over");
}

/// A dropped writer's ingest resumes at its offset; a live one locks its ref.
pub async fn resume_ingest<S: TestStore>(s: &S) {
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = desc(&bytes);
    let opts = WriterOptions {
        reference: "resumable".into(),
        expected: Some(d.clone()),
    };
    let mut w = s.writer(opts.clone()).await.expect("writer");
    w.write(&bytes[..20_000]).await.expect("write");
    match s.writer(opts.clone()).await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("resumable"), "{m}"),
        Err(e) => panic!("second writer of a live ref gave {e}"),
        Ok(_) => panic!("second writer of a live ref was allowed"),
    }
    drop(w);
    let st = s.status("resumable").await.expect("status");
    assert_eq!(
        (st.offset, st.total, st.expected),
        (20_000, d.size, Some(d.digest.clone()))
    );
    let mut w = s.writer(opts.clone()).await.expect("resume");
    assert_eq!(w.offset(), 20_000);
    w.write(&bytes[20_000..]).await.expect("write rest");
    assert_eq!(w.digest(), d.digest);
    w.commit(d.size, Some(&d.digest), Labels::new())
        .await
        .expect("commit");
    assert_eq!(read_blob(s, &d, 1 << 20).await.expect("read"), bytes);
    // Opening a writer for present content is AlreadyExists.
    assert!(s
        .writer(opts)
        .await
        .err()
        .expect("present")
        .is_already_exists());
    // write_blob resumes too, skipping what the ingest holds.
    let more = vec![3u8; 10_000];
    let m = desc(&more);
    let mut w = s
        .writer(WriterOptions {
            reference: "helper".into(),
            expected: Some(m.clone()),
        })
        .await
        .expect("writer");
    w.write(&more[..4000]).await.expect("write");
    drop(w);
    write_blob(s, "helper", &more, &m, Labels::new())
        .await
        .expect("write_blob resumes");
    assert_eq!(read_blob(s, &m, 1 << 20).await.expect("read"), more);
}

/// Image records: create, get, update by field path, list sorted, delete.
pub async fn image_records<S: TestStore>(s: &S) {
    let target = Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(b"m"), 1);
    let img = |name: &str| Image {
        name: name.into(),
        target: target.clone(),
        labels: labels(&[("k", "v")]),
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    };
    let created = s.create_image(img("b/app:1")).await.expect("create");
    assert!(
        created.created_at > SystemTime::UNIX_EPOCH,
        "store sets times"
    );
    s.create_image(img("a/app:1")).await.expect("create");
    assert!(s
        .create_image(img("a/app:1"))
        .await
        .unwrap_err()
        .is_already_exists());
    assert_eq!(s.get_image("b/app:1").await.expect("get"), created);
    let names: Vec<String> = s
        .list_images()
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["a/app:1", "b/app:1"]);
    let mut upd = img("a/app:1");
    upd.labels = labels(&[("new", "1")]);
    upd.target = Descriptor::new(media_types::OCI_INDEX, Digest::sha256_of(b"i"), 2);
    let out = s
        .update_image(upd.clone(), &["labels.new".to_string()])
        .await
        .expect("update");
    assert_eq!(out.labels, labels(&[("k", "v"), ("new", "1")]));
    assert_eq!(
        out.target, target,
        "target unchanged without its field path"
    );
    let out = s
        .update_image(upd, &["target".to_string()])
        .await
        .expect("update");
    assert_eq!(out.target.media_type, media_types::OCI_INDEX);
    assert_eq!(s.get_image("a/app:1").await.expect("get"), out);
    s.delete_image("a/app:1").await.expect("delete");
    assert!(s.get_image("a/app:1").await.unwrap_err().is_not_found());
    assert!(s.delete_image("a/app:1").await.unwrap_err().is_not_found());
    assert!(s
        .update_image(img("zzz"), &[])
        .await
        .unwrap_err()
        .is_not_found());
}

/// Missing content: `NotFound` naming the digest.
pub async fn missing_content<S: TestStore>(s: &S) {
    let d = desc(b"never written");
    for err in [
        s.info(&d.digest).await.err(),
        s.reader(&d).await.err(),
        s.delete(&d.digest).await.err(),
        read_blob(s, &d, 100).await.err(),
    ] {
        match err {
            Some(Error::NotFound(m)) => assert!(m.contains(d.digest.as_str()), "{m}"),
            other => panic!("missing content gave {other:?}"),
        }
    }
}

/// For persistent backends: what was committed (blobs, labels, leases, images, a
/// partial ingest) is seen by a store reopened with `reopen`.
pub async fn check_reopen<S, R, Fut>(s: S, reopen: R)
where
    S: TestStore,
    R: FnOnce(S) -> Fut,
    Fut: Future<Output = S>,
{
    // Written under the lease, as real clients do: on a backend that collects on its
    // own schedule (containerd), an unleased blob may go before it is referenced.
    s.create_lease(Some("kept"), Labels::new())
        .await
        .expect("lease");
    let d = put(&*s.with_lease("kept"), b"persisted", labels(&[("p", "1")])).await;
    assert!(
        s.list_resources("kept")
            .await
            .expect("resources")
            .contains(&LeaseResource {
                id: d.digest.to_string(),
                kind: ResourceKind::Content,
            }),
        "a blob written through a leased view belongs to the lease"
    );
    s.create_image(Image {
        name: "persisted:1".into(),
        target: d.clone(),
        labels: Labels::new(),
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    })
    .await
    .expect("image");
    let mut w = s
        .writer(WriterOptions {
            reference: "half".into(),
            expected: None,
        })
        .await
        .expect("writer");
    w.write(b"half of it").await.expect("write");
    drop(w);
    let s = reopen(s).await;
    let info = s.info(&d.digest).await.expect("blob after reopen");
    assert_eq!(info.labels, labels(&[("p", "1")]));
    assert_eq!(
        read_blob(&s, &d, 100).await.expect("read after reopen"),
        b"persisted"
    );
    assert_eq!(
        s.list_resources("kept")
            .await
            .expect("lease after reopen")
            .len(),
        1
    );
    assert_eq!(
        s.get_image("persisted:1")
            .await
            .expect("image after reopen")
            .target,
        d
    );
    let w = s
        .writer(WriterOptions {
            reference: "half".into(),
            expected: None,
        })
        .await
        .expect("resume after reopen");
    assert_eq!(w.offset(), 10);
    assert_eq!(w.digest(), Digest::sha256_of(b"half of it"));
}
