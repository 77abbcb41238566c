//! The conformance suite against every backend.

use strata_content::{conformance, LocalStore, MemoryStore};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run(|| async { MemoryStore::new() }).await;
    conformance::dead_owners_leases(&MemoryStore::new()).await;
}

#[tokio::test]
async fn local_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        dirs.lock().expect("dirs").push(dir);
        async move { LocalStore::open(path).await.expect("open store") }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open store");
    conformance::dead_owners_leases(&store).await;
}

#[tokio::test]
async fn local_store_reopen_sees_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let s = LocalStore::open(&root).await.expect("open");
    conformance::check_reopen(s, |s| async move {
        drop(s);
        LocalStore::open(&root).await.expect("reopen")
    })
    .await;
}
