//! ImmutableRef on a real snapshotter: chains, metadata, mounts, blob infos, views.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use strata_cache::{BlobInfo, BlobKey, EstargzVariant, ImmutableRef, LABEL_DESCRIPTION};
use strata_oci::{Compression, Digest};
use strata_snapshotter::{Error, Filter, Kind, Labels, NativeSnapshotter, Snapshotter, TempMount};

async fn layer(s: &dyn Snapshotter, name: &str, parent: Option<&str>, file: &str, desc: &str) {
    let key = format!("{name}-active");
    let mounts = s
        .prepare(&key, parent, Labels::new())
        .await
        .expect("prepare");
    {
        let m = TempMount::mount(&mounts).expect("mount");
        fs::write(m.path().join(file), name).expect("write");
    }
    let labels = Labels::from([(LABEL_DESCRIPTION.to_string(), desc.to_string())]);
    s.commit(name, &key, labels).await.expect("commit");
}

async fn chain(root: &std::path::Path) -> Arc<dyn Snapshotter> {
    let s: Arc<dyn Snapshotter> = Arc::new(NativeSnapshotter::open(root).expect("open"));
    layer(s.as_ref(), "base", None, "base.txt", "FROM scratch").await;
    layer(s.as_ref(), "mid", Some("base"), "mid.txt", "RUN make mid").await;
    layer(s.as_ref(), "top", Some("mid"), "top.txt", "RUN make top").await;
    s
}

fn digest(hex_char: char) -> Digest {
    format!("sha256:{}", hex_char.to_string().repeat(64))
        .parse()
        .expect("digest")
}

/// Waits (bounded) until no views are left; views are removed by a spawned task.
async fn views_left(s: &dyn Snapshotter) -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..500 {
        left = s
            .walk(&Filter::Kind(Kind::View))
            .await
            .expect("walk")
            .into_iter()
            .map(|i| i.name)
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    left
}

#[tokio::test]
async fn loads_a_chain_with_its_metadata_and_tree() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    assert_eq!(top.id(), "top");
    assert_eq!(top.description(), "RUN make top");
    assert_eq!(
        top.created_at(),
        s.stat("top").await.expect("stat").created_at
    );
    let mid = top.parent().expect("parent of top");
    assert_eq!((mid.id(), mid.description()), ("mid", "RUN make mid"));
    let base = mid.parent().expect("parent of mid");
    assert_eq!((base.id(), base.description()), ("base", "FROM scratch"));
    assert!(base.parent().is_none());
    let ids: Vec<String> = top.chain().iter().map(|r| r.id().to_string()).collect();
    assert_eq!(ids, ["base", "mid", "top"]);
    assert!(top.chain()[1].same_snapshot(mid));
    assert!(!top.same_snapshot(mid));

    let mounts = top.mounts().await.expect("mounts");
    assert_eq!(
        top.clone().mounts().await.expect("mounts"),
        mounts,
        "shared view"
    );
    let m = TempMount::mount(&mounts).expect("mount");
    let mut names: Vec<String> = fs::read_dir(m.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["base.txt", "mid.txt", "top.txt"]);
    let base_mounts = base.mounts().await.expect("mounts");
    let m = TempMount::mount(&base_mounts).expect("mount");
    assert!(!m.path().join("mid.txt").exists());
}

#[tokio::test]
async fn refuses_uncommitted_and_missing_snapshots() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    s.prepare("wip", Some("top"), Labels::new())
        .await
        .expect("prepare");
    match ImmutableRef::load(s.clone(), "wip").await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "wip"),
        other => panic!("loading an active snapshot: {other:?}"),
    }
    match ImmutableRef::load(s.clone(), "absent").await {
        Err(Error::NotFound(k)) => assert_eq!(k, "absent"),
        other => panic!("loading a missing snapshot: {other:?}"),
    }
}

#[tokio::test]
async fn blob_infos_persist_across_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    let gzip = BlobKey {
        compression: Compression::Gzip,
        source_date_epoch: None,
        estargz: Default::default(),
    };
    let zstd_clamped = BlobKey {
        compression: Compression::Zstd,
        source_date_epoch: Some(1_700_000_000),
        estargz: Default::default(),
    };
    assert_eq!(top.blob(gzip), None);
    let info = BlobInfo {
        diff_id: digest('a'),
        digest: digest('b'),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        size: 1234,
        annotations: Default::default(),
    };
    let info2 = BlobInfo {
        diff_id: digest('a'),
        digest: digest('c'),
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        size: 99,
        annotations: Default::default(),
    };
    top.set_blob(gzip, info.clone()).await.expect("set_blob");
    top.set_blob(zstd_clamped, info2.clone())
        .await
        .expect("set_blob");
    assert_eq!(top.blob(gzip), Some(info.clone()));
    drop(top);
    drop(s);

    let s: Arc<dyn Snapshotter> = Arc::new(NativeSnapshotter::open(tmp.path()).expect("reopen"));
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    assert_eq!(top.blob(gzip), Some(info.clone()));
    assert_eq!(top.blob(zstd_clamped), Some(info2));
    assert_eq!(
        top.blob(BlobKey {
            compression: Compression::Zstd,
            source_date_epoch: None,
            estargz: Default::default(),
        }),
        None,
        "an unclamped zstd blob is another blob"
    );
    assert_eq!(top.parent().expect("mid").blob(gzip), None);

    // eStargz blobs of other chunk sizes and prefetch lists are other blobs, each kept.
    let files = vec!["usr/bin/sh".to_string(), "etc/passwd".to_string()];
    let variants = [
        EstargzVariant::default(),
        EstargzVariant::new(Some(64 * 1024), None),
        EstargzVariant::new(None, Some(&files)),
        EstargzVariant::new(Some(64 * 1024), Some(&files)),
        EstargzVariant::new(None, Some(&files[..1])),
    ];
    assert_eq!(
        EstargzVariant::new(Some(4 << 20), None),
        EstargzVariant::default(),
        "the default chunk size is the default key"
    );
    for (i, v) in variants.iter().enumerate() {
        let key = BlobKey {
            compression: Compression::Estargz,
            source_date_epoch: Some(7),
            estargz: *v,
        };
        let mut info = info.clone();
        info.size = i as u64;
        top.set_blob(key, info).await.expect("set_blob");
    }
    drop(top);
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    for (i, v) in variants.iter().enumerate() {
        let key = BlobKey {
            compression: Compression::Estargz,
            source_date_epoch: Some(7),
            estargz: *v,
        };
        assert_eq!(top.blob(key).map(|b| b.size), Some(i as u64), "{v:?}");
    }
    assert_eq!(
        top.description(),
        "RUN make top",
        "set_blob keeps other labels"
    );
}

#[tokio::test]
async fn views_live_as_long_as_handles() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    let clone = top.clone();
    top.mounts().await.expect("mounts");
    top.parent().expect("mid").mounts().await.expect("mounts");
    assert_eq!(
        s.walk(&Filter::Kind(Kind::View)).await.expect("walk").len(),
        2
    );
    // While a view exists, the snapshot has a child and cannot be removed.
    match s.remove("top").await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "top"),
        other => panic!("removing a snapshot with a ref view: {other:?}"),
    }
    drop(top);
    assert_eq!(
        s.walk(&Filter::Kind(Kind::View)).await.expect("walk").len(),
        2,
        "a clone keeps the views"
    );
    drop(clone);
    assert_eq!(views_left(s.as_ref()).await, Vec::<String>::new());
    // Releasing handles never deletes committed data.
    assert_eq!(
        s.walk(&Filter::Kind(Kind::Committed))
            .await
            .expect("walk")
            .len(),
        3
    );
}

#[tokio::test]
async fn remove_refuses_while_handles_are_alive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    top.mounts().await.expect("mounts");
    let other = top.clone();
    match top.remove().await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "top"),
        other => panic!("removing a shared ref: {other:?}"),
    }
    assert!(s.stat("top").await.is_ok());
    // A parent held by a child ref cannot be removed either.
    let mid = other.parent().expect("mid").clone();
    match mid.remove().await {
        Err(Error::FailedPrecondition { key, .. }) => assert_eq!(key, "mid"),
        other => panic!("removing a parent ref: {other:?}"),
    }
    other.remove().await.expect("removing the last handle");
    assert!(s.stat("top").await.expect_err("gone").is_not_found());
    assert_eq!(views_left(s.as_ref()).await, Vec::<String>::new());
    assert!(
        s.stat("mid").await.is_ok(),
        "only the ref itself is removed"
    );
}

#[tokio::test]
async fn release_removes_views_before_returning() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    let top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    let base = top.chain()[0].clone();
    top.mounts().await.expect("mounts");
    top.parent().expect("mid").mounts().await.expect("mounts");
    base.mounts().await.expect("mounts");
    top.release().await.expect("release");
    // top's and mid's views are gone; base is still held, so its view stays.
    let views: Vec<Option<String>> = s
        .walk(&Filter::Kind(Kind::View))
        .await
        .expect("walk")
        .into_iter()
        .map(|i| i.parent)
        .collect();
    assert_eq!(views, [Some("base".to_string())]);
    base.release().await.expect("release");
    assert!(s
        .walk(&Filter::Kind(Kind::View))
        .await
        .expect("walk")
        .is_empty());
}

#[tokio::test]
async fn load_prunes_views_of_exited_processes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = chain(tmp.path()).await;
    // pid_max is at most 2^22, so this pid never runs.
    let dead = "strata-view/top/999999999-1-0";
    let ours = format!("strata-view/mid/{}-1-0", std::process::id());
    s.view(dead, Some("top"), Labels::new())
        .await
        .expect("view");
    s.view(&ours, Some("mid"), Labels::new())
        .await
        .expect("view");
    s.view("someone-elses", Some("top"), Labels::new())
        .await
        .expect("view");
    let _top = ImmutableRef::load(s.clone(), "top").await.expect("load");
    let mut views: Vec<String> = s
        .walk(&Filter::Kind(Kind::View))
        .await
        .expect("walk")
        .into_iter()
        .map(|i| i.name)
        .collect();
    views.sort();
    assert_eq!(views, ["someone-elses".to_string(), ours]);
}

/// The exporter drives refs from spawned tasks: handles and their futures are Send.
#[test]
fn refs_and_their_futures_are_send() {
    fn send<T: Send + Sync>(_: &T) {}
    fn send_future<F: std::future::Future + Send>(_: F) {}
    let s: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(tempfile::tempdir().expect("tmp").path()).expect("open"));
    send(&s);
    send_future(ImmutableRef::load(s.clone(), "x"));
    send_future(async move {
        let r = ImmutableRef::load(s, "x").await.expect("compile-time only");
        send(&r);
        r.mounts().await.ok();
        r.set_blob(
            BlobKey {
                compression: Compression::Gzip,
                source_date_epoch: None,
                estargz: Default::default(),
            },
            BlobInfo {
                diff_id: digest('a'),
                digest: digest('a'),
                media_type: String::new(),
                size: 0,
                annotations: Default::default(),
            },
        )
        .await
        .ok();
        r.release().await.ok();
    });
}
