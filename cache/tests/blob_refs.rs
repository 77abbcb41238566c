//! Blob-backed refs: a base image's layers, extracted only when a tree is asked for,
//! once per chainID, verified against their diffIDs.

use std::path::Path;
use std::sync::Arc;

use strata_cache::{prune_extracted, BlobLayer, ImmutableRef, Materializer, RefError};
use strata_content::{BlobProvider, ContentStore, MemoryStore, StoreProvider};
use strata_differ::{CompareOptions, Comparer, LayerBlob, WalkingDiffer};
use strata_oci::chain_id;
use strata_oci::{Compression, Digest};
use strata_snapshotter::{Kind, Mount, NativeSnapshotter, Snapshotter, TempMount};

/// A gzip layer of `dir`'s tree (every file an addition), written to `store`.
async fn layer_of(store: &Arc<dyn ContentStore>, dir: &Path) -> LayerBlob {
    WalkingDiffer::new(store.clone())
        .compare(
            &[],
            &[Mount::bind(dir, true)],
            &CompareOptions {
                compression: Compression::Gzip,
                ..CompareOptions::default()
            },
        )
        .await
        .unwrap()
}

struct World {
    _tmp: tempfile::TempDir,
    /// Where the base's blobs come from (a "registry").
    remote: Arc<dyn BlobProvider>,
    /// The local store blobs are fetched into.
    local: Arc<dyn ContentStore>,
    materializer: Materializer,
    layers: Vec<LayerBlob>,
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let remote_store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(a.join("etc")).unwrap();
    std::fs::write(a.join("etc/base-release"), "one").unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("second"), "two").unwrap();
    let layers = vec![
        layer_of(&remote_store, &a).await,
        layer_of(&remote_store, &b).await,
    ];
    let local: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    let snapshotter: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(tmp.path().join("snapshots")).unwrap());
    World {
        remote: Arc::new(StoreProvider::new(remote_store, "the remote store")),
        materializer: Materializer {
            store: local.clone(),
            applier: Arc::new(WalkingDiffer::new(local.clone())),
            snapshotter,
        },
        local,
        layers,
        _tmp: tmp,
    }
}

fn blob_layer(w: &World, l: &LayerBlob, diff_id: Digest) -> BlobLayer {
    BlobLayer {
        descriptor: l.descriptor.clone(),
        diff_id,
        history: serde_json::json!({"created_by": "ADD base", "created": "2024-01-02T03:04:05Z"})
            .as_object()
            .cloned(),
        provider: w.remote.clone(),
    }
}

#[tokio::test]
async fn a_base_chain_is_extracted_once_only_when_asked() {
    let w = world().await;
    let bottom = ImmutableRef::from_blob(
        None,
        blob_layer(&w, &w.layers[0], w.layers[0].diff_id.clone()),
        w.materializer.clone(),
    )
    .await
    .unwrap();
    let top = ImmutableRef::from_blob(
        Some(bottom.clone()),
        blob_layer(&w, &w.layers[1], w.layers[1].diff_id.clone()),
        w.materializer.clone(),
    )
    .await
    .unwrap();
    let expected_top = chain_id(
        Some(&chain_id(None, &w.layers[0].diff_id)),
        &w.layers[1].diff_id,
    );
    assert_eq!(top.chain_id(), Some(expected_top.clone()));
    assert_eq!(top.id(), expected_top.to_string());
    assert_eq!(top.description(), "ADD base");
    // Nothing fetched or extracted yet.
    assert!(w
        .local
        .info(&w.layers[1].descriptor.digest)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(w.materializer.snapshotter.stat(top.id()).await.is_err());

    let tree = TempMount::mount(&top.mounts().await.unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.path().join("etc/base-release")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read_to_string(tree.path().join("second")).unwrap(),
        "two"
    );
    drop(tree);
    let info = w.materializer.snapshotter.stat(top.id()).await.unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.parent.as_deref(), Some(bottom.id()));
    top.release().await.unwrap();
    bottom.release().await.unwrap();

    // A new handle on the same chain finds the extracted snapshots: no fetch needed.
    let fresh: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    let again = ImmutableRef::from_blob(
        None,
        blob_layer(&w, &w.layers[0], w.layers[0].diff_id.clone()),
        Materializer {
            store: fresh.clone(),
            ..w.materializer.clone()
        },
    )
    .await
    .unwrap();
    again.materialize().await.unwrap();
    assert!(fresh
        .walk(&strata_content::Filter::All)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_layer_that_is_not_its_diff_id_is_refused_and_leaves_nothing() {
    let w = world().await;
    let wrong = w.layers[1].diff_id.clone();
    let r = ImmutableRef::from_blob(
        None,
        blob_layer(&w, &w.layers[0], wrong.clone()),
        w.materializer.clone(),
    )
    .await
    .unwrap();
    let err = r.mounts().await.unwrap_err();
    match &err {
        RefError::DiffIdMismatch {
            layer,
            expected,
            actual,
        } => {
            assert_eq!(layer, &w.layers[0].descriptor.digest);
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &w.layers[0].diff_id);
        }
        other => panic!("expected a diff_id mismatch, got {other}"),
    }
    assert!(err
        .to_string()
        .contains(&w.layers[0].descriptor.digest.to_string()));
    let left = w
        .materializer
        .snapshotter
        .walk(&strata_snapshotter::Filter::All)
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_missing_blob_names_the_layer_and_the_provider() {
    let w = world().await;
    let mut layer = blob_layer(&w, &w.layers[0], w.layers[0].diff_id.clone());
    layer.descriptor.digest = Digest::sha256_of(b"nobody has this");
    let r = ImmutableRef::from_blob(None, layer, w.materializer.clone())
        .await
        .unwrap();
    let err = r.mounts().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RefError::Fetch { .. }), "{text}");
    assert!(text.contains("the remote store"), "{text}");
    assert!(
        text.contains(&Digest::sha256_of(b"nobody has this").to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn pruning_keeps_the_chains_unpacked_images_reference_and_removes_the_rest() {
    let w = world().await;
    let layer = |i: usize| blob_layer(&w, &w.layers[i], w.layers[i].diff_id.clone());
    let bottom = ImmutableRef::from_blob(None, layer(0), w.materializer.clone())
        .await
        .unwrap();
    let top = ImmutableRef::from_blob(Some(bottom.clone()), layer(1), w.materializer.clone())
        .await
        .unwrap();
    let alone = ImmutableRef::from_blob(None, layer(1), w.materializer.clone())
        .await
        .unwrap();
    top.materialize().await.unwrap();
    alone.materialize().await.unwrap();
    let (top_id, bottom_id, alone_id) = (
        top.id().to_string(),
        bottom.id().to_string(),
        alone.id().to_string(),
    );
    drop((top, bottom, alone));

    // An unpacked image's config references the top of the first chain.
    let mut info = w.local.info(&w.layers[0].descriptor.digest).await.unwrap();
    let key = "containerd.io/gc.ref.snapshot.native".to_string();
    info.labels.insert(key.clone(), top_id.clone());
    w.local
        .update(info.clone(), &[format!("labels.{key}")])
        .await
        .unwrap();
    let removed = prune_extracted(
        w.materializer.snapshotter.as_ref(),
        w.local.as_ref(),
        "native",
    )
    .await
    .unwrap();
    assert_eq!(removed, [alone_id]);
    for kept in [&top_id, &bottom_id] {
        assert!(
            w.materializer.snapshotter.stat(kept).await.is_ok(),
            "{kept}"
        );
    }

    // Nothing references it any more: the whole chain goes, children first.
    info.labels.remove(&key);
    w.local
        .update(info, &[format!("labels.{key}")])
        .await
        .unwrap();
    let removed = prune_extracted(
        w.materializer.snapshotter.as_ref(),
        w.local.as_ref(),
        "native",
    )
    .await
    .unwrap();
    assert_eq!(removed, [top_id, bottom_id]);
}
