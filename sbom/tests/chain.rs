//! `layers_of_chain` on what an export holds: a base image's layer (a blob-backed ref
//! whose blob is only at its provider) under a directory layer (a snapshot-backed ref
//! on top of it), each with the blob info the exporter computed.

mod common;

use std::path::Path;
use std::sync::Arc;

use strata_cache::{
    register_directories, BlobInfo, BlobLayer, ImmutableRef, LayerDir, Materializer,
};
use strata_content::{ContentStore, MemoryStore, StoreProvider};
use strata_differ::{CompareOptions, Comparer, LayerBlob, WalkingDiffer};
use strata_oci::{Compression, Digest};
use strata_sbom::{layers_of_chain, LayerSource, ScanLimits};
use strata_snapshotter::{DirectorySnapshotter, Mount, NativeSnapshotter, Snapshotter};

async fn diff(store: &Arc<dyn ContentStore>, lower: Option<&Path>, upper: &Path) -> LayerBlob {
    let lower: Vec<Mount> = lower.map(|l| Mount::bind(l, true)).into_iter().collect();
    WalkingDiffer::new(store.clone())
        .compare(
            &lower,
            &[Mount::bind(upper, true)],
            &CompareOptions {
                compression: Compression::Gzip,
                ..CompareOptions::default()
            },
        )
        .await
        .expect("compare")
}

fn info(blob: &LayerBlob) -> BlobInfo {
    BlobInfo {
        diff_id: blob.diff_id.clone(),
        digest: blob.descriptor.digest.clone(),
        media_type: blob.descriptor.media_type.clone(),
        size: blob.descriptor.size,
        annotations: Default::default(),
    }
}

const OS_RELEASE: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_blob_under_a_directory_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (base_tree, top_tree) = (tmp.path().join("base"), tmp.path().join("top"));
    let base_status = b"Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2\n\n\
                        Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.1\n";
    let top_status = [
        &base_status[..],
        b"\nPackage: python3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.11\n",
    ]
    .concat();
    common::write_tree(
        &base_tree,
        &[
            ("var/lib/dpkg/status", base_status),
            ("etc/os-release", OS_RELEASE),
        ],
    );
    common::write_tree(
        &top_tree,
        &[
            ("var/lib/dpkg/status", &top_status),
            ("etc/os-release", OS_RELEASE),
        ],
    );

    // The base image's layer is at a "registry" (another store); the local store
    // starts empty.
    let remote: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    let base_blob = diff(&remote, None, &base_tree).await;
    let local: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    let materializer = Materializer {
        store: local.clone(),
        applier: Arc::new(WalkingDiffer::new(local.clone())),
        snapshotter: Arc::new(
            NativeSnapshotter::open(tmp.path().join("extracted")).expect("snapshotter"),
        ),
    };
    let base_ref = ImmutableRef::from_blob(
        None,
        BlobLayer {
            descriptor: base_blob.descriptor.clone(),
            diff_id: base_blob.diff_id.clone(),
            history: None,
            provider: Arc::new(StoreProvider::new(remote, "the remote store")),
        },
        materializer,
    )
    .await
    .expect("base ref");

    let directories =
        DirectorySnapshotter::open(tmp.path().join("dirs")).expect("directory snapshotter");
    let names = register_directories(
        &directories,
        &[LayerDir {
            dir: top_tree.clone(),
            description: "apt-get install python3".into(),
        }],
    )
    .await
    .expect("register");
    let directories: Arc<dyn Snapshotter> = Arc::new(directories);
    let top_ref = ImmutableRef::load_onto(directories, &names[0], Some(base_ref.clone()))
        .await
        .expect("top ref");
    let top_blob = diff(&local, Some(&base_tree), &top_tree).await;

    let chain: Vec<(ImmutableRef, Digest)> = top_ref
        .chain()
        .into_iter()
        .zip([info(&base_blob).diff_id, info(&top_blob).diff_id])
        .collect();
    assert_eq!(chain.len(), 2);
    let layers = layers_of_chain(&chain, &local)
        .await
        .expect("layers of the chain");
    assert!(
        matches!(layers.layers()[0].source, LayerSource::Tar(_)),
        "not extracted: the blob"
    );
    assert!(matches!(layers.layers()[1].source, LayerSource::Tree(_)));
    assert!(
        local.info(&base_blob.descriptor.digest).await.is_ok(),
        "the base blob was fetched"
    );
    let inventory = tokio::task::spawn_blocking(move || layers.scan(&ScanLimits::default()))
        .await
        .expect("join")
        .expect("scan");
    let found: Vec<_> = inventory
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.layer.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("bash", base_blob.diff_id.clone()),
            ("coreutils", base_blob.diff_id.clone()),
            ("python3", top_blob.diff_id.clone()),
        ]
    );

    // Once the base chain is extracted (a child's diff needed it), its tree is read.
    base_ref.materialize().await.expect("extract the base");
    let layers = layers_of_chain(&chain, &local)
        .await
        .expect("layers of the chain");
    assert!(
        matches!(layers.layers()[0].source, LayerSource::Tree(_)),
        "extracted: the tree"
    );
    let again = tokio::task::spawn_blocking(move || layers.scan(&ScanLimits::default()))
        .await
        .expect("join")
        .expect("scan");
    assert_eq!(again, inventory);
    drop(chain);
    top_ref.release().await.expect("release");
}
