//! What users rely on beyond the output formats: GC keeps exactly what a recorded
//! image needs, blobs are computed once and reused, empty layers are dropped,
//! source-date-epoch makes times reproducible, and bad input gets typed errors.

mod common;

use std::collections::BTreeMap;

use common::{opts, Fixture};
use futures::StreamExt;
use serde_json::Value;
use strata_content::{read_blob, ContentStore, GarbageCollector, ImageStore, LeaseManager};
use strata_exporter::{
    DockerExporter, Error, Exporter, ImageExporter, OciExporter, Progress, Source,
    RESPONSE_CONFIG_DIGEST, RESPONSE_IMAGE_DIGEST, RESPONSE_IMAGE_NAME,
};
use strata_oci::{Descriptor, Digest, Platform};

async fn blob_json(fx: &Fixture, digest: &str) -> Value {
    let d = Digest::parse(digest).unwrap();
    let info = fx.store.info(&d).await.unwrap();
    let desc = Descriptor::new("application/octet-stream", d, info.size);
    let bytes = read_blob(fx.store.as_ref(), &desc, 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every digest an image consists of: the manifest, its config and layers.
async fn image_blobs(fx: &Fixture, manifest: &str) -> Vec<Digest> {
    let m = blob_json(fx, manifest).await;
    let mut out = vec![Digest::parse(manifest).unwrap()];
    out.push(Digest::parse(m["config"]["digest"].as_str().unwrap()).unwrap());
    for l in m["layers"].as_array().unwrap() {
        out.push(Digest::parse(l["digest"].as_str().unwrap()).unwrap());
    }
    out
}

#[tokio::test]
async fn gc_keeps_a_recorded_image_and_removes_an_unrecorded_export() {
    let fx = Fixture::new().await;
    fx.chain("kept", "amd64").await;
    fx.chain("gone", "amd64").await;
    let (progress, events) = Progress::channel();
    let resp = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/kept:1,example/kept:latest")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("kept-top").await), None),
            progress,
        )
        .await
        .unwrap();
    let events: Vec<_> = events.collect().await;
    for name in [
        "exporting layers",
        "exporting manifest sha256:",
        "exporting config sha256:",
    ] {
        assert!(
            events
                .iter()
                .any(|e| e.name.starts_with(name) && e.completed.is_some() && e.error.is_none()),
            "no completed {name:?} step in {events:#?}"
        );
    }
    let layers: Vec<_> = events
        .iter()
        .filter(|e| e.id.starts_with("layer:") && e.completed.is_some())
        .collect();
    assert_eq!(layers.len(), 3);
    for l in &layers {
        assert!(
            l.current > 0 && l.total == Some(l.current),
            "byte counts: {l:?}"
        );
    }
    assert_eq!(
        resp[RESPONSE_IMAGE_NAME],
        "example/kept:1,example/kept:latest"
    );
    let digest = &resp[RESPONSE_IMAGE_DIGEST];
    for name in ["example/kept:1", "example/kept:latest"] {
        let img = fx.store.get_image(name).await.unwrap();
        assert_eq!(img.target.digest.as_str(), digest);
    }
    // The manifest carries the GC labels: .0 = config, .N = layer N.
    let m = blob_json(&fx, digest).await;
    let labels = fx
        .store
        .info(&Digest::parse(digest).unwrap())
        .await
        .unwrap()
        .labels;
    assert_eq!(
        labels["containerd.io/gc.ref.content.0"],
        m["config"]["digest"].as_str().unwrap()
    );
    for (i, l) in m["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            labels[&format!("containerd.io/gc.ref.content.{}", i + 1)],
            l["digest"].as_str().unwrap()
        );
    }
    let kept = image_blobs(&fx, digest).await;

    let dest = fx.path("gone.tar");
    let gone_resp = OciExporter::new(fx.ctx())
        .resolve(opts(&[("dest", dest.to_str().unwrap())]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("gone-top").await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    let gone = image_blobs(&fx, &gone_resp[RESPONSE_IMAGE_DIGEST]).await;
    assert!(
        fx.store.list_leases().await.unwrap().is_empty(),
        "export leases released"
    );

    fx.store.garbage_collect().await.unwrap();
    for d in &kept {
        fx.store
            .info(d)
            .await
            .unwrap_or_else(|e| panic!("{d} of the recorded image was collected: {e}"));
    }
    for d in gone.iter().filter(|d| !kept.contains(d)) {
        assert!(
            fx.store.info(d).await.unwrap_err().is_not_found(),
            "{d} was kept"
        );
    }
    // The unrecorded export's layers are not all shared with the kept image.
    assert!(gone.iter().any(|d| !kept.contains(d)));
}

#[tokio::test]
async fn second_export_computes_no_diff_and_gives_the_same_digests() {
    let fx = Fixture::new().await;
    fx.chain("c", "amd64").await;
    let exporter = ImageExporter::new(fx.ctx());
    let first = exporter
        .resolve(opts(&[("name", "c:1")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("c-top").await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(fx.calls(), 3);
    // Fresh handles: the blob info comes from the snapshots' metadata.
    let second = exporter
        .resolve(opts(&[("name", "c:2")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("c-top").await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(fx.calls(), 3, "no diff computed on the second export");
    assert_eq!(first[RESPONSE_IMAGE_DIGEST], second[RESPONSE_IMAGE_DIGEST]);
    assert_eq!(
        first[RESPONSE_CONFIG_DIGEST],
        second[RESPONSE_CONFIG_DIGEST]
    );

    // A blob that was garbage-collected is computed again, to the same digest.
    fx.store.delete_image("c:1").await.unwrap();
    fx.store.delete_image("c:2").await.unwrap();
    fx.store.garbage_collect().await.unwrap();
    let third = exporter
        .resolve(opts(&[("name", "c:3")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("c-top").await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(fx.calls(), 6);
    assert_eq!(first[RESPONSE_IMAGE_DIGEST], third[RESPONSE_IMAGE_DIGEST]);
}

#[tokio::test]
async fn two_platforms_sharing_a_base_compute_it_once() {
    let fx = Fixture::new().await;
    fx.layer("base", None, "base", &[("etc/base", Some("b"))])
        .await;
    fx.layer(
        "amd",
        Some("base"),
        "amd",
        &[("etc/base", Some("b")), ("amd", Some("x86"))],
    )
    .await;
    fx.layer(
        "arm",
        Some("base"),
        "arm",
        &[("etc/base", Some("b")), ("arm", Some("aarch64"))],
    )
    .await;
    let source = Source::multi_platform([
        (
            Platform::parse("linux/amd64").unwrap(),
            fx.load("amd").await,
            None,
        ),
        (
            Platform::parse("linux/arm64").unwrap(),
            fx.load("arm").await,
            None,
        ),
    ]);
    let (progress, events) = Progress::channel();
    let resp = ImageExporter::new(fx.ctx().with_jobs(4))
        .resolve(opts(&[("name", "multi:1")]))
        .await
        .unwrap()
        .export(source, progress)
        .await
        .unwrap();
    let events: Vec<_> = events.collect().await;
    let list = format!("exporting manifest list {}", resp[RESPONSE_IMAGE_DIGEST]);
    assert!(
        events
            .iter()
            .any(|e| e.name == list && e.completed.is_some()),
        "no {list:?} step"
    );
    let base_steps = events
        .iter()
        .filter(|e| e.id == "layer:base" && e.completed.is_some())
        .count();
    assert_eq!(base_steps, 1, "the shared base is one step");
    assert_eq!(fx.calls(), 3, "base computed once for both platforms");
    let index = blob_json(&fx, &resp[RESPONSE_IMAGE_DIGEST]).await;
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let labels = fx
        .store
        .info(&Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).unwrap())
        .await
        .unwrap()
        .labels;
    let mut bases = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        assert_eq!(
            labels[&format!("containerd.io/gc.ref.content.{i}")],
            m["digest"].as_str().unwrap()
        );
        let manifest = blob_json(&fx, m["digest"].as_str().unwrap()).await;
        bases.push(manifest["layers"][0]["digest"].clone());
        let cfg = blob_json(&fx, manifest["config"]["digest"].as_str().unwrap()).await;
        assert_eq!(cfg["architecture"], m["platform"]["architecture"]);
    }
    assert_eq!(bases[0], bases[1]);
}

#[tokio::test]
async fn empty_layers_are_dropped_and_marked_in_history() {
    let fx = Fixture::new().await;
    let spec: &[(&str, Option<&str>)] = &[("a", Some("1"))];
    fx.layer("e1", None, "add a", spec).await;
    // An identical copy (times preserved): its diff against e1 is the empty tar.
    let trees = fx.path("trees");
    common::run(
        "cp",
        &[
            "-a",
            trees.join("e1").to_str().unwrap(),
            trees.join("e2").to_str().unwrap(),
        ],
    );
    fx.layer("e2", Some("e1"), "no change", &[]).await;
    fx.layer(
        "e3",
        Some("e2"),
        "add b",
        &[("a", Some("1")), ("b", Some("2"))],
    )
    .await;
    let resp = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "empty:1"), ("compression", "zstd")]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load("e3").await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    let m = blob_json(&fx, &resp[RESPONSE_IMAGE_DIGEST]).await;
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let cfg = blob_json(&fx, m["config"]["digest"].as_str().unwrap()).await;
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1]["created_by"], "no change");
    assert_eq!(history[1]["empty_layer"], true);
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn source_date_epoch_clamps_times_and_is_reproducible() {
    let fx = Fixture::new().await;
    fx.chain("s", "amd64").await;
    let user_config = br#"{"architecture":"amd64","os":"linux","created":"2099-01-01T00:00:00Z","x-extra":{"kept":[1,2]}}"#;
    let mut digests = Vec::new();
    for _ in 0..2 {
        let resp = ImageExporter::new(fx.ctx())
            .resolve(opts(&[
                ("name", "s:1"),
                ("source-date-epoch", "1000000000"),
            ]))
            .await
            .unwrap()
            .export(
                Source::single(Some(fx.load("s-top").await), Some(user_config.to_vec())),
                Progress::discard(),
            )
            .await
            .unwrap();
        digests.push(resp[RESPONSE_IMAGE_DIGEST].clone());
        let m = blob_json(&fx, &resp[RESPONSE_IMAGE_DIGEST]).await;
        let cfg = blob_json(&fx, m["config"]["digest"].as_str().unwrap()).await;
        assert_eq!(cfg["created"], "2001-09-09T01:46:40Z");
        for h in cfg["history"].as_array().unwrap() {
            assert_eq!(h["created"], "2001-09-09T01:46:40Z");
        }
        assert_eq!(cfg["x-extra"], serde_json::json!({"kept": [1, 2]}));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(fx.calls(), 3, "clamped blobs computed once, then reused");
}

#[tokio::test]
async fn bad_input_gets_typed_errors_naming_the_problem() {
    let fx = Fixture::new().await;
    fx.chain("b", "amd64").await;
    let top = fx.load("b-top").await;
    let image = ImageExporter::new(fx.ctx());
    let inst = image.resolve(BTreeMap::new()).await.unwrap();

    let err = inst
        .export(
            Source::single(Some(top.clone()), Some(b"{not json".to_vec())),
            Progress::discard(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { ref platform, .. } if platform == "default"),
        "{err}"
    );

    let amd = Platform::parse("linux/amd64").unwrap();
    let arm = Platform::parse("linux/arm64").unwrap();
    let two = Source::multi_platform([
        (amd.clone(), top.clone(), None),
        (arm.clone(), top.clone(), None),
    ]);
    let bad_cfg = Source::multi_platform([
        (amd.clone(), top.clone(), None),
        (arm.clone(), top.clone(), Some(b"[]".to_vec())),
    ]);
    let err = inst.export(bad_cfg, Progress::discard()).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { ref platform, .. } if platform == "linux/arm64"),
        "{err}"
    );

    // BuildKit's metadata map: refs and the platforms mapping must agree.
    let refs: BTreeMap<String, _> = [
        ("linux/amd64".to_string(), top.clone()),
        ("linux/arm64".to_string(), top.clone()),
    ]
    .into();
    let mismatched = Source::from_buildkit(
        None,
        refs.clone(),
        [(
            "refs.platforms".to_string(),
            br#"{"platforms":[{"id":"linux/amd64","platform":{"os":"linux","architecture":"amd64"}}]}"#
                .to_vec(),
        )]
        .into(),
    );
    let err = mismatched.unwrap_err();
    assert!(
        matches!(err, Error::InvalidSource(ref m) if m.contains("1 platforms") && m.contains("2 refs")),
        "{err}"
    );

    let unmapped = Source::from_buildkit(None, refs, BTreeMap::new());
    let err = unmapped.unwrap_err();
    assert!(
        matches!(err, Error::InvalidSource(ref m) if m.contains("refs.platforms")),
        "{err}"
    );

    // A typed source whose images cannot form an index.
    let mut unplatformed = two.clone();
    unplatformed.images[1].platform = None;
    let err = inst
        .export(unplatformed, Progress::discard())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSource(ref m) if m.contains("no platform")),
        "{err}"
    );
    let twice =
        Source::multi_platform([(amd.clone(), top.clone(), None), (amd, top.clone(), None)]);
    let err = inst.export(twice, Progress::discard()).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidSource(ref m) if m.contains("twice")),
        "{err}"
    );

    let err = image
        .resolve(opts(&[("no-such-option", "true")]))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::UnknownOption { ref key, .. } if key == "no-such-option"),
        "{err}"
    );

    let dest = fx.path("two.tar");
    let docker = DockerExporter::new(fx.ctx())
        .resolve(opts(&[("dest", dest.to_str().unwrap())]))
        .await
        .unwrap();
    let err = docker.export(two, Progress::discard()).await.unwrap_err();
    assert!(
        matches!(err, Error::TooManyPlatforms { count: 2, .. }),
        "{err}"
    );
    assert!(!dest.exists());

    // Nothing was left leased or computed by the failed exports.
    assert!(fx.store.list_leases().await.unwrap().is_empty());
    assert_eq!(fx.calls(), 0);
}

#[tokio::test]
async fn another_compression_is_reused_or_converted_with_force_compression() {
    let fx = Fixture::new().await;
    fx.chain("z", "amd64").await;
    let exporter = ImageExporter::new(fx.ctx());
    let mut layers = Vec::new();
    for options in [
        &[("name", "z:gzip")][..],
        &[("name", "z:zstd"), ("compression", "zstd")][..],
        &[
            ("name", "z:forced"),
            ("compression", "zstd"),
            ("force-compression", "true"),
        ][..],
    ] {
        let resp = exporter
            .resolve(opts(options))
            .await
            .unwrap()
            .export(
                Source::single(Some(fx.load("z-top").await), None),
                Progress::discard(),
            )
            .await
            .unwrap();
        let m = blob_json(&fx, &resp[RESPONSE_IMAGE_DIGEST]).await;
        let cfg = blob_json(&fx, m["config"]["digest"].as_str().unwrap()).await;
        layers.push((m["layers"].clone(), cfg["rootfs"]["diff_ids"].clone()));
    }
    assert_eq!(fx.calls(), 3, "only the first export walks the trees");
    // Without force-compression the existing gzip blobs are used as they are.
    assert_eq!(layers[1], layers[0]);
    // With it they are converted: zstd blobs of the same tars.
    for l in layers[2].0.as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    assert_ne!(layers[2].0, layers[0].0);
    assert_eq!(layers[2].1, layers[0].1, "same diffIDs");
}

/// Records how many compares run at the same time.
struct GaugeComparer {
    inner: std::sync::Arc<dyn strata_differ::Comparer>,
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl strata_differ::Comparer for GaugeComparer {
    async fn compare(
        &self,
        lower: &[strata_snapshotter::Mount],
        upper: &[strata_snapshotter::Mount],
        opts: &strata_differ::CompareOptions,
    ) -> strata_differ::Result<strata_differ::LayerBlob> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        // Give the other layers every chance to start while this one is in flight.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let res = self.inner.compare(lower, upper, opts).await;
        self.now.fetch_sub(1, SeqCst);
        res
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_computations_are_bounded_by_jobs() {
    let fx = Fixture::new().await;
    fx.chain("j1", "amd64").await;
    fx.chain("j2", "arm64").await;
    for jobs in [1usize, 2] {
        let gauge = std::sync::Arc::new(GaugeComparer {
            inner: fx.differ.clone(),
            now: Default::default(),
            max: Default::default(),
        });
        let ctx = strata_exporter::ExportContext {
            differ: gauge.clone(),
            ..fx.ctx()
        }
        .with_jobs(jobs);
        let source = Source::multi_platform([
            (
                Platform::parse("linux/amd64").unwrap(),
                fx.load("j1-top").await,
                None,
            ),
            (
                Platform::parse("linux/arm64").unwrap(),
                fx.load("j2-top").await,
                None,
            ),
        ]);
        // Another source-date-epoch each round: other blobs, so nothing is cached.
        let epoch = (jobs * 1000).to_string();
        ImageExporter::new(ctx)
            .resolve(opts(&[("source-date-epoch", &epoch)]))
            .await
            .unwrap()
            .export(source, Progress::discard())
            .await
            .unwrap();
        let max = gauge.max.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            max >= 1 && max <= jobs,
            "{max} compares at once with jobs={jobs}"
        );
    }
}

#[tokio::test]
async fn buildkit_metadata_gives_the_same_image_as_the_typed_source() {
    let fx = Fixture::new().await;
    fx.chain("k", "amd64").await;
    let top = fx.load("k-top").await;
    let amd = Platform::parse("linux/amd64").unwrap();
    let arm = Platform::parse("linux/arm64").unwrap();
    let arm_config = br#"{"architecture":"arm64","os":"linux","config":{"User":"k"}}"#.to_vec();
    let image = ImageExporter::new(fx.ctx());
    let inst = image.resolve(BTreeMap::new()).await.unwrap();

    let typed = Source::multi_platform([
        (amd.clone(), top.clone(), None),
        (arm.clone(), top.clone(), Some(arm_config.clone())),
    ]);
    let from_typed = inst.export(typed, Progress::discard()).await.unwrap();

    let refs: BTreeMap<String, _> = [
        ("a".to_string(), top.clone()),
        ("b".to_string(), top.clone()),
    ]
    .into();
    let mapping = serde_json::json!({"platforms": [
        {"id": "a", "platform": amd},
        {"id": "b", "platform": arm},
    ]});
    let metadata: BTreeMap<String, Vec<u8>> = [
        (
            "refs.platforms".to_string(),
            serde_json::to_vec(&mapping).unwrap(),
        ),
        (strata_exporter::config_key_for("b"), arm_config.clone()),
    ]
    .into();
    let adapted = Source::from_buildkit(None, refs, metadata).unwrap();
    let from_buildkit = inst.export(adapted, Progress::discard()).await.unwrap();
    assert_eq!(
        from_typed[RESPONSE_IMAGE_DIGEST],
        from_buildkit[RESPONSE_IMAGE_DIGEST]
    );

    // Without refs: the single ref and the config under containerimage.config.
    let single = Source::from_buildkit(
        Some(top.clone()),
        BTreeMap::new(),
        [(strata_exporter::CONFIG_KEY.to_string(), arm_config.clone())].into(),
    )
    .unwrap();
    let a = inst.export(single, Progress::discard()).await.unwrap();
    let b = inst
        .export(
            Source::single(Some(top), Some(arm_config)),
            Progress::discard(),
        )
        .await
        .unwrap();
    assert_eq!(a[RESPONSE_IMAGE_DIGEST], b[RESPONSE_IMAGE_DIGEST]);
    assert_eq!(a[RESPONSE_CONFIG_DIGEST], b[RESPONSE_CONFIG_DIGEST]);
}
