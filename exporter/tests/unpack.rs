//! The `image` exporter's BuildKit record options on a real local store: `unpack=true`
//! into a native snapshotter (chainID snapshots, parents chained, the config's
//! `gc.ref.snapshot` label, the image's tree), `store=false`, `dangling-name-prefix`
//! and `name-canonical`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{opts, tree, Fixture};
use serde_json::Value;
use strata_cache::Materializer;
use strata_content::{read_blob, ContentStore, ImageStore, LeaseManager};
use strata_differ::WalkingDiffer;
use strata_exporter::{
    Error, Exporter, ImageExporter, Progress, Source, UnpackTarget, RESPONSE_CONFIG_DIGEST,
    RESPONSE_IMAGE_DIGEST, RESPONSE_IMAGE_NAME,
};
use strata_oci::chain_id;
use strata_oci::{Descriptor, Digest, Platform};
use strata_snapshotter::{Kind, Labels, NativeSnapshotter, Snapshotter, TempMount};

const GC_LABEL: &str = "containerd.io/gc.ref.snapshot.native";

fn native_target(fx: &Fixture) -> (NativeSnapshotter, UnpackTarget) {
    let native = NativeSnapshotter::open(fx.path("native")).unwrap();
    let target = UnpackTarget {
        materializer: Materializer {
            store: fx.store.clone(),
            applier: Arc::new(WalkingDiffer::new(fx.store.clone())),
            snapshotter: Arc::new(native.clone()),
        },
        snapshotter_name: "native".into(),
    };
    (native, target)
}

async fn export_image(
    fx: &Fixture,
    target: Option<UnpackTarget>,
    source: Source,
    pairs: &[(&str, &str)],
) -> strata_exporter::Result<BTreeMap<String, String>> {
    let mut ctx = fx.ctx();
    if let Some(t) = target {
        ctx = ctx.with_unpack_target(t);
    }
    let instance = ImageExporter::new(ctx).resolve(opts(pairs)).await?;
    instance.export(source, Progress::discard()).await
}

async fn read_json(fx: &Fixture, digest: &str) -> Value {
    let digest: Digest = digest.parse().unwrap();
    let info = fx.store.info(&digest).await.unwrap();
    let desc = Descriptor::new("application/octet-stream", digest, info.size);
    serde_json::from_slice(&read_blob(fx.store.as_ref(), &desc, 1 << 24).await.unwrap()).unwrap()
}

/// The config's chainIDs, bottom first.
fn chain_ids(config: &Value) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::new();
    for d in config["rootfs"]["diff_ids"].as_array().unwrap() {
        let diff_id: Digest = d.as_str().unwrap().parse().unwrap();
        chain.push(chain_id(chain.last(), &diff_id));
    }
    chain
}

/// The tree of committed snapshot `name`, through a view.
async fn snapshot_tree(
    native: &NativeSnapshotter,
    name: &str,
) -> BTreeMap<String, Option<Vec<u8>>> {
    let view = format!("check-{}", &name[7..19]);
    let mounts = native.view(&view, Some(name), Labels::new()).await.unwrap();
    let mounted = TempMount::mount(&mounts).unwrap();
    let listing = tree(mounted.path());
    drop(mounted);
    native.remove(&view).await.unwrap();
    listing
}

#[tokio::test]
async fn unpack_extracts_the_chain_by_chain_id_and_labels_the_config() {
    let fx = Fixture::new().await;
    let top_dir = fx.chain("u", "amd64").await;
    let (native, target) = native_target(&fx);
    let top = fx.load("u-top").await;
    let response = export_image(
        &fx,
        Some(target.clone()),
        Source::single(Some(top.clone()), None),
        &[("name", "example.com/u:1"), ("unpack", "true")],
    )
    .await
    .unwrap();
    let config = read_json(&fx, &response[RESPONSE_CONFIG_DIGEST]).await;
    let chain = chain_ids(&config);
    assert_eq!(chain.len(), 3);

    // One committed snapshot per chainID, each on the one below.
    let mut parent: Option<String> = None;
    for id in &chain {
        let info = native.stat(&id.to_string()).await.unwrap();
        assert_eq!(info.kind, Kind::Committed, "{id}");
        assert_eq!(info.parent, parent, "parent of {id}");
        parent = Some(id.to_string());
    }
    // No extraction snapshot is left.
    let all = native.walk(&strata_snapshotter::Filter::All).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");

    // The config names the top snapshot for containerd's GC (and `ctr run`).
    let config_digest: Digest = response[RESPONSE_CONFIG_DIGEST].parse().unwrap();
    let info = fx.store.info(&config_digest).await.unwrap();
    assert_eq!(
        info.labels.get(GC_LABEL),
        Some(&chain[2].to_string()),
        "{:?}",
        info.labels
    );
    // The unpacked tree is the image's: the top layer's deletion applied.
    let unpacked = snapshot_tree(&native, &chain[2].to_string()).await;
    assert_eq!(unpacked, tree(&top_dir));
    assert!(!unpacked.contains_key("bin/tool"));
    // The export's lease (which held the snapshots until the label did) is gone.
    assert!(fx.store.list_leases().await.unwrap().is_empty());

    // Again, under another name: the chain exists and is reused as it is.
    let again = export_image(
        &fx,
        Some(target),
        Source::single(Some(top.clone()), None),
        &[("name", "example.com/u:2"), ("unpack", "1")],
    )
    .await
    .unwrap();
    assert_eq!(
        again[RESPONSE_IMAGE_DIGEST],
        response[RESPONSE_IMAGE_DIGEST]
    );
    let all_again = native.walk(&strata_snapshotter::Filter::All).await.unwrap();
    assert_eq!(
        all_again.iter().map(|i| &i.name).collect::<Vec<_>>(),
        all.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    top.release().await.unwrap();
}

#[tokio::test]
async fn unpack_of_an_index_takes_the_host_platform() {
    let fx = Fixture::new().await;
    fx.chain("h", "host").await;
    fx.chain("o", "other").await;
    let (native, target) = native_target(&fx);
    let host = Platform::host();
    let other = if host.architecture == "arm64" {
        Platform::parse("linux/amd64").unwrap()
    } else {
        Platform::parse("linux/arm64").unwrap()
    };
    let source = Source::multi_platform([
        (other, fx.load("o-top").await, None),
        (host.clone(), fx.load("h-top").await, None),
    ]);
    let response = export_image(
        &fx,
        Some(target),
        source,
        &[("name", "example.com/multi:1"), ("unpack", "true")],
    )
    .await
    .unwrap();
    let index = read_json(&fx, &response[RESPONSE_IMAGE_DIGEST]).await;
    let mut unpacked = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let manifest = read_json(&fx, m["digest"].as_str().unwrap()).await;
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let config = read_json(&fx, config_digest).await;
        let labels = fx
            .store
            .info(&config_digest.parse().unwrap())
            .await
            .unwrap()
            .labels;
        let top = chain_ids(&config).pop().unwrap().to_string();
        let has_snapshot = native.stat(&top).await.is_ok();
        assert_eq!(labels.contains_key(GC_LABEL), has_snapshot, "{m}");
        if has_snapshot {
            assert_eq!(labels.get(GC_LABEL), Some(&top));
            unpacked.push(m["platform"]["architecture"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(unpacked, vec![host.architecture]);
}

#[tokio::test]
async fn unpack_without_a_target_is_refused_before_any_work() {
    let fx = Fixture::new().await;
    let err = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example.com/u:1"), ("unpack", "true")]))
        .await
        .err()
        .expect("unpack=true without a snapshotter was accepted");
    assert!(matches!(err, Error::NoUnpackTarget { .. }), "{err:?}");
    assert!(err.to_string().contains("unpack"), "{err}");
}

#[tokio::test]
async fn store_false_records_no_image() {
    let fx = Fixture::new().await;
    fx.chain("s", "amd64").await;
    let response = export_image(
        &fx,
        None,
        Source::single(Some(fx.load("s-top").await), None),
        &[("name", "example.com/s:1"), ("store", "false")],
    )
    .await
    .unwrap();
    assert!(response[RESPONSE_IMAGE_DIGEST].starts_with("sha256:"));
    assert!(fx.store.list_images().await.unwrap().is_empty());
    assert!(fx.store.get_image("example.com/s:1").await.is_err());
}

#[tokio::test]
async fn dangling_and_canonical_names_are_recorded() {
    let fx = Fixture::new().await;
    fx.chain("n", "amd64").await;
    let source = || async { Source::single(Some(fx.load("n-top").await), None) };

    // Alone, the dangling prefix names the image PREFIX@<digest>.
    let response = export_image(
        &fx,
        None,
        source().await,
        &[("dangling-name-prefix", "example.com/dangling")],
    )
    .await
    .unwrap();
    let digest = response[RESPONSE_IMAGE_DIGEST].clone();
    let dangling = format!("example.com/dangling@{digest}");
    assert_eq!(response[RESPONSE_IMAGE_NAME], dangling);
    let names = |images: Vec<strata_content::Image>| {
        images
            .into_iter()
            .map(|i| {
                assert_eq!(i.target.digest.to_string(), digest);
                i.name
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(fx.store.list_images().await.unwrap()),
        vec![dangling.clone()]
    );

    // With a name and name-canonical: NAME, NAME@<digest> and the dangling name.
    let response = export_image(
        &fx,
        None,
        source().await,
        &[
            ("name", "example.com/n:1"),
            ("name-canonical", "true"),
            ("dangling-name-prefix", "example.com/dangling"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        response[RESPONSE_IMAGE_NAME],
        format!("example.com/n:1,{dangling}")
    );
    let mut recorded = names(fx.store.list_images().await.unwrap());
    recorded.sort();
    let mut expected = vec![
        dangling.clone(),
        "example.com/n:1".to_string(),
        format!("example.com/n:1@{digest}"),
    ];
    expected.sort();
    assert_eq!(recorded, expected);
}
