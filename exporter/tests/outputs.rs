//! Output properties: reproducible archives, annotations where BuildKit puts them,
//! and clean cancellation.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{opts, Fixture};
use serde_json::Value;
use strata_content::{ContentStore, GarbageCollector, LeaseManager};
use strata_differ::{CompareOptions, Comparer, LayerBlob};
use strata_exporter::{
    ExportContext, Exporter, OciExporter, Progress, Source, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{Digest, Platform};
use strata_snapshotter::Mount;

fn sha256_file(path: &std::path::Path) -> Digest {
    Digest::sha256_of(&std::fs::read(path).unwrap())
}

#[tokio::test]
async fn oci_tars_are_byte_for_byte_reproducible_across_job_counts() {
    let fx = Fixture::new().await;
    fx.chain("r", "amd64").await;
    let mut tars = Vec::new();
    for (i, jobs) in [1usize, 4, 4].into_iter().enumerate() {
        let dest = fx.path(&format!("r{i}.tar"));
        OciExporter::new(fx.ctx().with_jobs(jobs))
            .resolve(opts(&[("dest", dest.to_str().unwrap()), ("name", "r:1")]))
            .await
            .unwrap()
            .export(
                Source::single(Some(fx.load("r-top").await), None),
                Progress::discard(),
            )
            .await
            .unwrap();
        tars.push(sha256_file(&dest));
    }
    assert_eq!(tars[0], tars[1]);
    assert_eq!(tars[1], tars[2]);
}

fn blob(dir: &std::path::Path, digest: &str) -> Value {
    let d = Digest::parse(digest).unwrap();
    serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(d.hex())).unwrap()).unwrap()
}

#[tokio::test]
async fn annotations_land_where_buildkit_puts_them() {
    let fx = Fixture::new().await;
    fx.chain("a", "amd64").await;
    fx.chain("b", "arm64").await;
    let source = Source::multi_platform([
        (
            Platform::parse("linux/amd64").unwrap(),
            fx.load("a-top").await,
            None,
        ),
        (
            Platform::parse("linux/arm64").unwrap(),
            fx.load("b-top").await,
            None,
        ),
    ]);
    let dir = fx.path("layout");
    let resp = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dir.to_str().unwrap()),
            ("tar", "false"),
            ("name", "ann:1"),
            ("annotation.all", "manifest"),
            ("annotation-manifest[linux/arm64].arm", "only-arm"),
            ("annotation-index.idx", "index"),
            ("annotation-manifest-descriptor.md", "descriptor"),
            ("annotation-index-descriptor.root", "root"),
        ]))
        .await
        .unwrap()
        .export(source, Progress::discard())
        .await
        .unwrap();
    let layout: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let root = &layout["manifests"][0];
    assert_eq!(root["digest"], resp[RESPONSE_IMAGE_DIGEST].as_str());
    assert_eq!(root["annotations"]["root"], "root");
    assert_eq!(
        root["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(root["annotations"]["io.containerd.image.name"], "ann:1");
    let index = blob(&dir, root["digest"].as_str().unwrap());
    assert_eq!(index["annotations"]["idx"], "index");
    for m in index["manifests"].as_array().unwrap() {
        assert_eq!(m["annotations"]["md"], "descriptor");
        let manifest = blob(&dir, m["digest"].as_str().unwrap());
        assert_eq!(manifest["annotations"]["all"], "manifest");
        let arm = m["platform"]["architecture"] == "arm64";
        assert_eq!(manifest["annotations"].get("arm").is_some(), arm);
    }
}

/// Computes nothing until released: lets a test drop an export mid-way.
struct StallingComparer {
    inner: Arc<dyn Comparer>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait]
impl Comparer for StallingComparer {
    async fn compare(
        &self,
        lower: &[Mount],
        upper: &[Mount],
        opts: &CompareOptions,
    ) -> strata_differ::Result<LayerBlob> {
        if lower.is_empty() {
            // The base layer is written; the others stall forever.
            return self.inner.compare(lower, upper, opts).await;
        }
        let _ = self.started.send(());
        futures::future::pending().await
    }
}

#[tokio::test]
async fn dropping_an_export_releases_its_lease_and_leaves_nothing_behind() {
    let fx = Fixture::new().await;
    fx.chain("x", "amd64").await;
    let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ExportContext {
        differ: Arc::new(StallingComparer {
            inner: fx.differ.clone(),
            started: tx,
        }),
        ..fx.ctx()
    };
    let top = fx.load("x-top").await;
    let dest = fx.path("never.tar");
    let inst = OciExporter::new(ctx)
        .resolve(opts(&[("dest", dest.to_str().unwrap())]))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        inst.export(Source::single(Some(top), None), Progress::discard())
            .await
    });
    started.recv().await.unwrap();
    let leases = fx.store.list_leases().await.unwrap();
    assert_eq!(leases.len(), 1, "the export holds a lease");
    assert!(
        leases[0].labels.contains_key("containerd.io/gc.expire"),
        "a temporary lease"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The lease is deleted by the dropped export in the background.
    let mut released = false;
    for _ in 0..500 {
        if fx.store.list_leases().await.unwrap().is_empty() {
            released = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(released, "lease still held after the export was dropped");
    assert!(!dest.exists(), "no partial archive");
    // What the dropped export wrote is collectable.
    fx.store.garbage_collect().await.unwrap();
    assert!(fx
        .store
        .walk(&strata_content::Filter::All)
        .await
        .unwrap()
        .is_empty());
    let statuses = fx.store.list_statuses().await.unwrap();
    assert!(statuses.is_empty(), "ingests left: {statuses:?}");
}

#[tokio::test]
async fn an_empty_source_exports_an_image_without_layers() {
    let fx = Fixture::new().await;
    let dest = fx.path("scratch.tar");
    OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dest.to_str().unwrap()),
            ("name", "scratch:1"),
        ]))
        .await
        .unwrap()
        .export(Source::single(None, None), Progress::discard())
        .await
        .unwrap();
    let archive = format!("oci-archive:{}:1", dest.display());
    let manifest: Value =
        serde_json::from_str(&common::run("skopeo", &["inspect", "--raw", &archive])).unwrap();
    assert_eq!(manifest["layers"], serde_json::json!([]));
    let cfg: Value = serde_json::from_str(&common::run(
        "skopeo",
        &["inspect", "--config", "--raw", &archive],
    ))
    .unwrap();
    assert_eq!(
        cfg["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": []})
    );
    assert_eq!(cfg["history"], serde_json::json!([]));
    assert_eq!(cfg["os"], "linux");
    assert_eq!(fx.calls(), 0);
}

/// Exports `top` as an OCI layout directory at `dest`; returns the image digest.
async fn export_dir(fx: &Fixture, top: &str, dest: &std::path::Path) -> String {
    let resp = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dest.to_str().unwrap()),
            ("tar", "false"),
            ("name", "warm:1"),
        ]))
        .await
        .unwrap()
        .export(
            Source::single(Some(fx.load(top).await), None),
            Progress::discard(),
        )
        .await
        .unwrap();
    resp[RESPONSE_IMAGE_DIGEST].clone()
}

/// Checks a layout directory the way its users read it: skopeo finds the image under
/// its tag, umoci unpacks it to `expected`, and every blob file hashes to its name.
/// Returns the blob files.
fn assert_layout_reads_back(
    dir: &std::path::Path,
    digest: &str,
    bundle: &std::path::Path,
    expected: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    let raw = common::run(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:1", dir.display())],
    );
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);
    common::assert_umoci_unpacks_to(&format!("{}:1", dir.display()), bundle, expected);
    let mut blobs = Vec::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256_file(&p).hex(), name, "{} is complete", p.display());
        blobs.push(p);
    }
    blobs.sort();
    blobs
}

#[tokio::test]
async fn warm_directory_exports_share_the_store_files_and_leave_the_store_intact() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new().await;
    let top = fx.chain("w", "amd64").await;
    let cold = fx.path("cold");
    let digest = export_dir(&fx, "w-top", &cold).await;
    let calls = fx.calls();
    // Warm: same refs (cached blobs), a new destination on the store's filesystem.
    let warm = fx.path("warm");
    assert_eq!(export_dir(&fx, "w-top", &warm).await, digest);
    assert_eq!(fx.calls(), calls, "a warm export computes no layer");
    let blobs = assert_layout_reads_back(&warm, &digest, &fx.path("bundle-warm"), &top);
    assert_eq!(blobs.len(), 5, "manifest, config and three layers");
    assert!(!std::fs::read_dir(warm.join("blobs/sha256"))
        .unwrap()
        .any(|e| e.unwrap().path().extension().is_some()));
    // A destination on another filesystem (tmpfs) gets its own copies.
    let shm = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
    let store_dev = std::fs::metadata(fx.store.root()).unwrap().dev();
    assert_ne!(std::fs::metadata(shm.path()).unwrap().dev(), store_dev);
    let far = shm.path().join("layout");
    assert_eq!(export_dir(&fx, "w-top", &far).await, digest);
    for p in assert_layout_reads_back(&far, &digest, &fx.path("bundle-far"), &top) {
        let meta = std::fs::metadata(&p).unwrap();
        assert_ne!(meta.dev(), store_dev, "{} is on tmpfs", p.display());
        assert_eq!(meta.nlink(), 1, "{} is a copy", p.display());
    }
    // The exports left every blob of the store verifiable.
    let report = strata_content::fsck(fx.store.as_ref()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.checked >= 5);
    // The documented trade-off of a hard link: a dest blob edited in place is the
    // store's blob, and fsck names it. (A reflinked blob has its own inode: the
    // store is untouched.)
    let layer = blobs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let name = layer.file_name().unwrap().to_str().unwrap();
    let in_store = fx.store.root().join("blobs/sha256").join(name);
    let shared =
        std::fs::metadata(layer).unwrap().ino() == std::fs::metadata(&in_store).unwrap().ino();
    let mut bytes = std::fs::read(layer).unwrap();
    bytes[0] ^= 0xff;
    std::fs::OpenOptions::new()
        .write(true)
        .open(layer)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    let report = strata_content::fsck(fx.store.as_ref()).await.unwrap();
    if shared {
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].0.hex(), name);
    } else {
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}
