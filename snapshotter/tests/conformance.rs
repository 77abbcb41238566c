//! The conformance suite on every backend that can prepare snapshots here.

use std::sync::Arc;

use strata_snapshotter::{conformance, NativeSnapshotter, OverlaySnapshotter, Snapshotter};

#[tokio::test]
async fn native_backend_conforms() {
    conformance::run(|root| async move {
        Ok(Arc::new(NativeSnapshotter::open(root)?) as Arc<dyn Snapshotter>)
    })
    .await;
}

#[tokio::test]
async fn overlay_backend_conforms() {
    let probe = tempfile::tempdir().expect("temp dir");
    if let Err(reason) = OverlaySnapshotter::supported(probe.path()) {
        eprintln!("skipping the overlay conformance suite: {reason}");
        return;
    }
    conformance::run(|root| async move {
        Ok(Arc::new(OverlaySnapshotter::open(root)?) as Arc<dyn Snapshotter>)
    })
    .await;
}
