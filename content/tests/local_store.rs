//! LocalStore specifics: bad input, fsck of a corrupted blob, two instances sharing a root.

use strata_content::{
    fsck, read_blob, write_blob, ContentStore, Error, Filter, GarbageCollector, Labels,
    LeaseManager, LocalStore, MemoryStore, WriterOptions,
};
use strata_oci::{Descriptor, Digest};

fn desc(bytes: &[u8]) -> Descriptor {
    Descriptor::new(
        "application/octet-stream",
        Digest::sha256_of(bytes),
        bytes.len() as u64,
    )
}

#[test]
fn digest_that_is_not_algorithm_hex_is_rejected() {
    for bad in ["sha256-abc", "sha256:zz", "abc"] {
        match Digest::parse(bad).map_err(Error::from) {
            Err(Error::InvalidDigest { input, .. }) => assert_eq!(input, bad),
            other => panic!("{bad} gave {other:?}"),
        }
    }
}

#[tokio::test]
async fn layout_files_and_blob_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).expect("oci-layout"))
            .expect("json");
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let d = desc(b"blob");
    write_blob(&store, "b", b"blob", &d, Labels::new())
        .await
        .expect("write");
    assert_eq!(
        std::fs::read(dir.path().join("blobs/sha256").join(d.digest.hex())).expect("blob file"),
        b"blob"
    );
    // Nothing is left in the ingest area after a commit.
    let ingests = std::fs::read_dir(dir.path().join(".strata/ingest")).expect("ingest dir");
    assert_eq!(ingests.count(), 0);
}

#[tokio::test]
async fn a_local_reader_names_the_committed_blob_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");
    let d = desc(b"linkable blob");
    write_blob(&store, "l", b"linkable blob", &d, Labels::new())
        .await
        .expect("write");
    let reader = store.reader(&d).await.expect("reader");
    let path = reader
        .local_path()
        .expect("a local store names its blob file");
    assert_eq!(path, store.blob_path(&d.digest));
    assert_eq!(std::fs::read(path).expect("blob file"), b"linkable blob");
    // A leased view reads the same file.
    store
        .create_lease(Some("l1"), Labels::new())
        .await
        .expect("lease");
    let leased = store.with_lease("l1");
    let reader = leased.reader(&d).await.expect("leased reader");
    assert_eq!(
        reader.local_path(),
        Some(store.blob_path(&d.digest).as_path())
    );
    // An in-memory store has no file to offer.
    let mem = MemoryStore::new();
    write_blob(&mem, "l", b"linkable blob", &d, Labels::new())
        .await
        .expect("write to memory");
    assert!(mem.reader(&d).await.expect("reader").local_path().is_none());
}

#[tokio::test]
async fn fsck_reports_a_corrupted_blob_by_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");
    let good = desc(b"good bytes");
    let bad = desc(b"soon corrupted");
    write_blob(&store, "g", b"good bytes", &good, Labels::new())
        .await
        .expect("write");
    write_blob(&store, "b", b"soon corrupted", &bad, Labels::new())
        .await
        .expect("write");
    assert!(fsck(&store).await.expect("fsck").is_clean());
    std::fs::write(store.blob_path(&bad.digest), b"SOON CORRUPTED").expect("corrupt");
    let report = fsck(&store).await.expect("fsck");
    assert_eq!(report.checked, 2);
    assert_eq!(report.problems.len(), 1);
    let (digest, err) = &report.problems[0];
    assert_eq!(digest, &bad.digest);
    match err {
        Error::DigestMismatch {
            subject, expected, ..
        } => {
            assert!(subject.contains(bad.digest.as_str()));
            assert_eq!(expected, bad.digest.as_str());
        }
        other => panic!("corruption reported as {other:?}"),
    }
    // fsck never repairs: the blob is still there, and reading it fails verification.
    assert!(matches!(
        read_blob(&store, &bad, 100).await,
        Err(Error::DigestMismatch { .. })
    ));
    // A truncated blob is a size mismatch.
    std::fs::write(store.blob_path(&good.digest), b"good").expect("truncate");
    let report = fsck(&store).await.expect("fsck");
    assert!(report
        .problems
        .iter()
        .any(|(d, e)| d == &good.digest && matches!(e, Error::SizeMismatch { .. })));
}

#[tokio::test]
async fn two_instances_on_one_root_stay_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LocalStore::open(dir.path()).await.expect("open a");
    let b = LocalStore::open(dir.path()).await.expect("open b");
    a.create_lease(Some("l"), Labels::new())
        .await
        .expect("lease");
    // Many commits in b under a lease while a collects garbage over and over: every
    // committed blob is leased atomically with its commit, so GC never removes one.
    let leased = b.with_lease("l");
    let writer = async {
        let mut written = Vec::new();
        for i in 0..40u32 {
            let bytes = format!("blob number {i}").into_bytes();
            let d = desc(&bytes);
            write_blob(leased.as_ref(), &format!("r{i}"), &bytes, &d, Labels::new())
                .await
                .expect("write in b");
            written.push(d);
        }
        written
    };
    let collector = async {
        for _ in 0..20 {
            a.garbage_collect().await.expect("gc in a");
            tokio::task::yield_now().await;
        }
    };
    let (written, ()) = tokio::join!(writer, collector);
    a.garbage_collect().await.expect("gc");
    for d in &written {
        assert_eq!(read_blob(&a, d, 100).await.expect("read in a"), {
            let r = b.reader(d).await.expect("reader in b");
            let mut v = vec![0u8; r.size() as usize];
            r.read_at(&mut v, 0).await.expect("read");
            v
        });
    }
    // A ref locked by a writer in one instance is locked for the other.
    let _w = a
        .writer(WriterOptions {
            reference: "shared".into(),
            expected: None,
        })
        .await
        .expect("writer in a");
    match b
        .writer(WriterOptions {
            reference: "shared".into(),
            expected: None,
        })
        .await
    {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("shared")),
        other => panic!("second instance got {:?}", other.err()),
    }
    assert_eq!(
        b.walk(&Filter::All).await.expect("walk").len(),
        written.len()
    );
}

/// Child half of `two_processes_share_a_store`: only does something when run by it.
#[tokio::test]
async fn two_process_child() {
    let Some(root) = std::env::var_os("STRATA_TEST_CHILD_ROOT") else {
        return;
    };
    let store = LocalStore::open(&root).await.expect("open in child");
    let leased = store.with_lease("child");
    for i in 0..30u32 {
        let bytes = format!("child blob {i}").into_bytes();
        write_blob(
            leased.as_ref(),
            &format!("c{i}"),
            &bytes,
            &desc(&bytes),
            Labels::new(),
        )
        .await
        .expect("write in child");
    }
}

#[tokio::test]
async fn two_processes_share_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");
    store
        .create_lease(Some("child"), Labels::new())
        .await
        .expect("lease");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", "two_process_child", "--test-threads=1"])
        .env("STRATA_TEST_CHILD_ROOT", dir.path())
        .spawn()
        .expect("spawn child test process");
    // Collect garbage while the other process commits under its lease.
    let mut status = None;
    while status.is_none() {
        store.garbage_collect().await.expect("gc");
        status = child.try_wait().expect("child status");
        tokio::task::yield_now().await;
    }
    assert!(status.is_some_and(|s| s.success()), "child process failed");
    store.garbage_collect().await.expect("gc");
    for i in 0..30u32 {
        let bytes = format!("child blob {i}").into_bytes();
        assert_eq!(
            read_blob(&store, &desc(&bytes), 100).await.expect("read"),
            bytes
        );
    }
    assert!(fsck(&store).await.expect("fsck").is_clean());
}
