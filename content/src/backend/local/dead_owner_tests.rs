//! Tests of what the local store reclaims from dead processes: their leases (by the
//! owner label) and their ingests (by the `owner` file), never a live process's.

use std::fs;
use std::sync::Arc;

use super::LocalStore;
use crate::owner::dead_owner;
use crate::{
    ContentStore, ContentWriter, GarbageCollector, Labels, LeaseManager, WriterOptions, OWNER_LABEL,
};

/// Opens a writer of `reference` (under `lease` if given) and writes `bytes`.
async fn writer(
    store: &LocalStore,
    lease: Option<&str>,
    reference: &str,
    bytes: &[u8],
) -> Box<dyn ContentWriter> {
    let target: Arc<dyn ContentStore> = match lease {
        Some(l) => store.with_lease(l),
        None => Arc::new(store.clone()),
    };
    let mut w = target
        .writer(WriterOptions {
            reference: reference.into(),
            expected: None,
        })
        .await
        .expect("open a writer");
    w.write(bytes).await.expect("write");
    w
}

/// Makes the ingest `reference` look as if a process now dead had written it.
fn hand_to_dead_process(store: &LocalStore, reference: &str) {
    let owner = store.inner.ingest_dir(reference).join("owner");
    assert!(owner.exists(), "a writer records its owner");
    fs::write(owner, dead_owner().to_string()).expect("rewrite the owner");
}

async fn ingest_refs(store: &LocalStore) -> Vec<String> {
    store
        .list_statuses()
        .await
        .expect("list ingests")
        .into_iter()
        .map(|s| s.reference)
        .collect()
}

#[tokio::test]
async fn gc_removes_a_dead_exports_lease_and_ingests_but_no_live_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");

    // A killed export: its lease (labelled with its dead owner) and its partial ingest.
    let mut dead_labels = Labels::new();
    dead_labels.insert(OWNER_LABEL.into(), dead_owner().to_string());
    let dead_lease = store
        .create_lease(None, dead_labels)
        .await
        .expect("dead lease");
    drop(
        writer(
            &store,
            Some(&dead_lease.id),
            "dead-partial",
            b"half a layer",
        )
        .await,
    );
    hand_to_dead_process(&store, "dead-partial");
    // An unleased ingest of a dead writer (its lease already gone).
    drop(writer(&store, None, "dead-unleased", b"more").await);
    hand_to_dead_process(&store, "dead-unleased");

    // A live export: a writer still open, even if its owner file claimed a dead owner
    // (its lock is what counts), and a dropped writer of this live process.
    let live_writer = writer(&store, None, "live-open", b"in progress").await;
    hand_to_dead_process(&store, "live-open");
    drop(writer(&store, None, "live-dropped", b"to be resumed").await);

    let report = store.garbage_collect().await.expect("gc");
    assert_eq!(report.removed_leases, vec![dead_lease.id.clone()]);
    assert_eq!(
        report.removed_ingests,
        vec!["dead-partial".to_string(), "dead-unleased".to_string()]
    );
    assert_eq!(
        ingest_refs(&store).await,
        vec!["live-dropped".to_string(), "live-open".to_string()]
    );
    assert!(!store.inner.ingest_dir("dead-partial").exists());
    assert!(store.list_leases().await.expect("leases").is_empty());
    assert_eq!(live_writer.offset(), 11, "the live writer carries on");
    drop(live_writer);
}

#[tokio::test]
async fn open_removes_dead_processes_ingests_and_leases_cheaply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");
    let mut dead_labels = Labels::new();
    dead_labels.insert(OWNER_LABEL.into(), dead_owner().to_string());
    let dead_lease = store
        .create_lease(None, dead_labels)
        .await
        .expect("dead lease");
    drop(
        writer(
            &store,
            Some(&dead_lease.id),
            "dead-partial",
            b"half a layer",
        )
        .await,
    );
    hand_to_dead_process(&store, "dead-partial");
    drop(writer(&store, None, "live-dropped", b"to be resumed").await);
    drop(store);

    let reopened = LocalStore::open(dir.path()).await.expect("reopen");
    assert_eq!(
        ingest_refs(&reopened).await,
        vec!["live-dropped".to_string()]
    );
    assert!(!reopened.inner.ingest_dir("dead-partial").exists());
    assert!(reopened.list_leases().await.expect("leases").is_empty());
}
