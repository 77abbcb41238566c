//! Exports built on a base image: the base's layers are blob-backed refs, put into
//! the manifest byte for byte (fetched from their provider only when the output needs
//! the bytes), the base config and history carry over, the manifest names its base,
//! and a directory layer on top is diffed against the base's tree.

mod common;

use std::sync::Arc;

use common::{assert_umoci_unpacks_to, opts, Fixture};
use serde_json::Value;
use strata_cache::{BlobLayer, ImmutableRef, Materializer};
use strata_content::{read_blob, ContentStore, StoreProvider};
use strata_differ::WalkingDiffer;
use strata_exporter::{
    BaseImageRef, Exporter, ImageExporter, OciExporter, PlatformSource, Progress, Source,
    RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{Descriptor, Digest};
use strata_snapshotter::{Filter, NativeSnapshotter, Snapshotter};

/// A base image committed by strata into its own fixture's store (another store than
/// the export's: its blobs reach the export only through a provider).
struct Base {
    fx: Fixture,
    manifest: Descriptor,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
    history: Vec<serde_json::Map<String, Value>>,
    config: Vec<u8>,
}

async fn json_blob(store: &dyn ContentStore, desc: &Descriptor) -> (Vec<u8>, Value) {
    let bytes = read_blob(store, desc, 1 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap();
    (bytes, v)
}

async fn base_image() -> Base {
    let fx = Fixture::new().await;
    fx.chain("base", "amd64").await;
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","BASE=1"],"Cmd":["/bin/tool"],"WorkingDir":"/app","Labels":{"from":"base"}}}"#;
    let resp = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/base:1")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("base-top").await), Some(config.to_vec())),
            Progress::discard(),
        )
        .await
        .unwrap();
    let digest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap();
    let size = fx.store.info(&digest).await.unwrap().size;
    let manifest = Descriptor::new(strata_oci::media_types::OCI_MANIFEST, digest, size);
    let (_, m) = json_blob(fx.store.as_ref(), &manifest).await;
    let layers: Vec<Descriptor> = serde_json::from_value(m["layers"].clone()).unwrap();
    let config_desc: Descriptor = serde_json::from_value(m["config"].clone()).unwrap();
    let (config, c) = json_blob(fx.store.as_ref(), &config_desc).await;
    let diff_ids = serde_json::from_value(c["rootfs"]["diff_ids"].clone()).unwrap();
    let history = serde_json::from_value(c["history"].clone()).unwrap();
    Base {
        fx,
        manifest,
        layers,
        diff_ids,
        history,
        config,
    }
}

/// The base's layers as a chain of blob-backed refs whose blobs come from the base's
/// store, extracted (if ever) into a native snapshotter of `fx`.
async fn base_chain(base: &Base, fx: &Fixture, snapshots: Arc<dyn Snapshotter>) -> ImmutableRef {
    let provider = Arc::new(StoreProvider::new(base.fx.store.clone(), "the base store"));
    let materializer = Materializer {
        store: fx.store.clone(),
        applier: Arc::new(WalkingDiffer::new(fx.store.clone())),
        snapshotter: snapshots,
    };
    let mut top = None;
    for (i, desc) in base.layers.iter().enumerate() {
        let layer = BlobLayer {
            descriptor: desc.clone(),
            diff_id: base.diff_ids[i].clone(),
            history: Some(base.history[i].clone()),
            provider: provider.clone(),
        };
        top = Some(
            ImmutableRef::from_blob(top, layer, materializer.clone())
                .await
                .unwrap(),
        );
    }
    top.unwrap()
}

fn source(top: ImmutableRef, base: &Base) -> Source {
    Source {
        images: vec![PlatformSource {
            platform: None,
            top: Some(top),
            config: Some(base.config.clone()),
            base: Some(BaseImageRef {
                name: "example/base:1".into(),
                digest: base.manifest.digest.clone(),
            }),
            ..PlatformSource::default()
        }],
    }
}

#[tokio::test]
async fn a_directory_layer_on_a_base_reuses_the_base_blobs_byte_for_byte() {
    let base = base_image().await;
    let fx = Fixture::new().await;
    let snapshots: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(fx.path("native")).unwrap());
    let base_top = base_chain(&base, &fx, snapshots.clone()).await;

    // The new layer: the base's final tree (copied with its times) plus one file.
    let tree = fx.path("trees/app");
    std::fs::create_dir_all(fx.path("trees")).unwrap();
    common::run(
        "cp",
        &[
            "-a",
            base.fx.path("trees/base-top").to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    std::fs::write(tree.join("new"), "only in the new layer\n").unwrap();
    let mut labels = strata_snapshotter::Labels::new();
    labels.insert(
        strata_cache::LABEL_DESCRIPTION.into(),
        "COPY new /new".into(),
    );
    fx.snapshotter
        .register("app", None, &tree, labels)
        .await
        .unwrap();
    let s: Arc<dyn Snapshotter> = fx.snapshotter.clone();
    let top = ImmutableRef::load_onto(s, "app", Some(base_top))
        .await
        .unwrap();

    let dest = fx.path("out");
    let resp = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("name", "example/app:1"),
            ("tar", "false"),
            ("dest", dest.to_str().unwrap()),
        ]))
        .await
        .unwrap()
        .export(source(top, &base), Progress::discard())
        .await
        .unwrap();
    let digest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(dest.join("blobs/sha256").join(digest.hex())).unwrap(),
    )
    .unwrap();
    let layers: Vec<Descriptor> = serde_json::from_value(manifest["layers"].clone()).unwrap();
    assert_eq!(layers.len(), base.layers.len() + 1);
    assert_eq!(
        &layers[..base.layers.len()],
        &base.layers[..],
        "base layers as they came"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        "example/base:1"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base.manifest.digest.to_string()
    );
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = serde_json::from_slice(
        &std::fs::read(dest.join("blobs/sha256").join(&config_digest[7..])).unwrap(),
    )
    .unwrap();
    let diff_ids: Vec<Digest> =
        serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    assert_eq!(&diff_ids[..base.diff_ids.len()], &base.diff_ids[..]);
    let history: Vec<serde_json::Map<String, Value>> =
        serde_json::from_value(config["history"].clone()).unwrap();
    assert_eq!(&history[..base.history.len()], &base.history[..]);
    assert_eq!(history.last().unwrap()["created_by"], "COPY new /new");
    assert_eq!(config["config"]["Env"][1], "BASE=1");
    assert_eq!(config["config"]["WorkingDir"], "/app");

    // The new layer holds only the new file: it was diffed against the base's tree.
    assert_eq!(fx.calls(), 1);
    let new_layer = dest
        .join("blobs/sha256")
        .join(layers.last().unwrap().digest.hex());
    let listing = common::run("sh", &["-c", &format!("tar -tzf {}", new_layer.display())]);
    assert_eq!(listing.trim(), "new", "{listing}");
    // Every base blob was fetched into the layout; umoci unpacks the whole image.
    assert_umoci_unpacks_to(&format!("{}:1", dest.display()), &fx.path("bundle"), &tree);
}

#[tokio::test]
async fn a_base_alone_is_exported_without_extracting_or_diffing_anything() {
    let base = base_image().await;
    let fx = Fixture::new().await;
    let snapshots: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(fx.path("native")).unwrap());
    let top = base_chain(&base, &fx, snapshots.clone()).await;
    let resp = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/again:1")]))
        .await
        .unwrap()
        .export(source(top.clone(), &base), Progress::discard())
        .await
        .unwrap();
    assert_eq!(fx.calls(), 0);
    assert!(snapshots.walk(&Filter::All).await.unwrap().is_empty());
    // The image record's blobs are all in the store, the base's byte for byte.
    for l in &base.layers {
        assert_eq!(fx.store.info(&l.digest).await.unwrap().size, l.size);
    }
    let digest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap();
    let size = fx.store.info(&digest).await.unwrap().size;
    let (_, m) = json_blob(
        fx.store.as_ref(),
        &Descriptor::new(strata_oci::media_types::OCI_MANIFEST, digest, size),
    )
    .await;
    let layers: Vec<Descriptor> = serde_json::from_value(m["layers"].clone()).unwrap();
    assert_eq!(layers, base.layers);

    // force-compression converts the base's layers (once: the conversion is recorded
    // on the base blob and reused by a later export).
    let zstd = opts(&[
        ("name", "example/zstd:1"),
        ("compression", "zstd"),
        ("force-compression", "true"),
    ]);
    let mut digests = Vec::new();
    for _ in 0..2 {
        let top = base_chain(&base, &fx, snapshots.clone()).await;
        let resp = ImageExporter::new(fx.ctx())
            .resolve(zstd.clone())
            .await
            .unwrap()
            .export(source(top, &base), Progress::discard())
            .await
            .unwrap();
        digests.push(resp[RESPONSE_IMAGE_DIGEST].clone());
        let digest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap();
        let size = fx.store.info(&digest).await.unwrap().size;
        let (_, m) = json_blob(
            fx.store.as_ref(),
            &Descriptor::new(strata_oci::media_types::OCI_MANIFEST, digest, size),
        )
        .await;
        let layers: Vec<Descriptor> = serde_json::from_value(m["layers"].clone()).unwrap();
        assert!(layers
            .iter()
            .all(|l| l.media_type == strata_oci::media_types::OCI_LAYER_ZSTD));
    }
    assert_eq!(digests[0], digests[1]);
    let info = fx.store.info(&base.layers[0].digest).await.unwrap();
    assert!(
        info.labels
            .keys()
            .any(|k| k.starts_with("strata.io/blob.zstd")),
        "{:?}",
        info.labels
    );
    assert_eq!(fx.calls(), 0);
}

#[tokio::test]
async fn a_copy_layer_on_a_base_neither_extracts_nor_diffs() {
    let base = base_image().await;
    let fx = Fixture::new().await;
    let snapshots: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(fx.path("native")).unwrap());
    let base_top = base_chain(&base, &fx, snapshots.clone()).await;
    let src = fx.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), "copied\n").unwrap();
    let materializer = Materializer {
        store: fx.store.clone(),
        applier: Arc::new(WalkingDiffer::new(fx.store.clone())),
        snapshotter: snapshots.clone(),
    };
    let top = strata_cache::copy_ref(
        Some(base_top),
        &src,
        &strata_differ::CopyOptions {
            dest: "/srv/app".into(),
            owner: Some((1000, 1000)),
        },
        "COPY src /srv/app",
        &strata_differ::CompareOptions::default(),
        &materializer,
    )
    .await
    .unwrap();
    let resp = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/copied:1")]))
        .await
        .unwrap()
        .export(source(top, &base), Progress::discard())
        .await
        .unwrap();
    assert_eq!(fx.calls(), 0);
    assert!(snapshots.walk(&Filter::All).await.unwrap().is_empty());
    let digest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap();
    let size = fx.store.info(&digest).await.unwrap().size;
    let (_, m) = json_blob(
        fx.store.as_ref(),
        &Descriptor::new(strata_oci::media_types::OCI_MANIFEST, digest, size),
    )
    .await;
    let layers: Vec<Descriptor> = serde_json::from_value(m["layers"].clone()).unwrap();
    assert_eq!(&layers[..base.layers.len()], &base.layers[..]);
    assert_eq!(layers.len(), base.layers.len() + 1);
    let config_desc: Descriptor = serde_json::from_value(m["config"].clone()).unwrap();
    let (_, config) = json_blob(fx.store.as_ref(), &config_desc).await;
    let last = config["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["created_by"], "COPY src /srv/app");
}
