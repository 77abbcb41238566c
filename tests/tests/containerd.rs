//! strata's containerd backends against a real containerd (Debian's package), private
//! to each test: root, state and socket in a temp dir, stopped by PID.
//!
//! - the content and snapshotter conformance suites, unchanged, on containerd;
//! - an `image` export into containerd, checked with `ctr`: the image is complete, the
//!   manifest carries the `containerd.io/gc.ref.content.*` labels, containerd's GC
//!   keeps the image's blobs while the record exists and removes them once it is gone,
//!   and a blob written under a lease survives GC until the lease is deleted;
//! - a chain prepared and committed with `ctr snapshots` exported by key;
//! - snapshots made through a leased snapshotter kept by containerd's GC until the
//!   lease goes;
//! - a socket that does not exist and a namespace that does not exist: one typed error
//!   each.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use strata_cache::ImmutableRef;
use strata_containerd::{ContainerdConnection, ContainerdSnapshotter, ContainerdStore};
use strata_content::{
    write_blob, ContentStore, Error, GarbageCollector, ImageStore, Labels, LeaseManager,
};
use strata_differ::WalkingDiffer;
use strata_exporter::{
    ExportContext, Exporter, ImageExporter, Progress, Source, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{media_types, Descriptor, Digest};
use strata_snapshotter::{DirectorySnapshotter, OverlaySnapshotter, Snapshotter, TempMount};
use strata_tests::servers::Containerd;
use strata_tests::tree::write_files;

/// containerd's GC scheduler collects on its own shortly after startup and after every
/// 100 changes, and what no lease, image or label holds goes then (containerd's own
/// clients write under a lease for that reason; strata's exporter does too). The
/// conformance suites write plain blobs and snapshots and check them afterwards, so
/// their containerd collects only when asked (a lease delete with `sync`, which
/// `garbage_collect` sends and which runs at once whatever these thresholds say).
const GC_ON_DEMAND: &str = r#"
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "24h"
  mutation_threshold = 1000000000
  deletion_threshold = 0
"#;

fn start() -> Containerd {
    Containerd::start_with_config(GC_ON_DEMAND)
}

async fn connect(ctd: &Containerd, namespace: &str) -> ContainerdStore {
    let conn = ContainerdConnection::connect_or_create(ctd.socket(), namespace)
        .await
        .unwrap_or_else(|e| panic!("connecting to containerd: {e}\n{}", ctd.log()));
    ContainerdStore::new(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_store_conforms() {
    let ctd = start();
    // Every check gets a store in a namespace of its own, so it starts empty.
    let n = AtomicUsize::new(0);
    conformance_run(&ctd, &n).await;
    let s = connect(&ctd, "reopen").await;
    let socket = ctd.socket().to_path_buf();
    strata_content::conformance::check_reopen(s, |s| async move {
        drop(s);
        ContainerdStore::connect(&socket, "reopen")
            .await
            .expect("reconnecting")
    })
    .await;
}

async fn conformance_run(ctd: &Containerd, n: &AtomicUsize) {
    strata_content::conformance::run(|| {
        let ns = format!("conformance-{}", n.fetch_add(1, Ordering::SeqCst));
        async move { connect(ctd, &ns).await }
    })
    .await;
}

/// A containerd namespace name for a conformance root (namespaces are identifiers:
/// letters and digits, `.`/`_`/`-` between them).
fn namespace_for(root: &Path) -> String {
    let name: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("snap-{name}")
}

async fn snapshotter_conforms(snapshotter: &'static str) {
    let ctd = start();
    let socket = ctd.socket().to_path_buf();
    strata_snapshotter::conformance::run(|root| {
        let socket = socket.clone();
        async move {
            let conn = ContainerdConnection::connect_or_create(&socket, &namespace_for(&root))
                .await
                .map_err(|e| strata_snapshotter::Error::InvalidArgument(e.to_string()))?;
            Ok(Arc::new(ContainerdSnapshotter::new(conn, snapshotter)) as Arc<dyn Snapshotter>)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_snapshotter_conforms() {
    snapshotter_conforms("native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlayfs_snapshotter_conforms() {
    let probe = tempfile::tempdir().expect("temp dir");
    if let Err(reason) = OverlaySnapshotter::supported(probe.path()) {
        eprintln!("skipping containerd's overlayfs snapshotter: overlay mounts: {reason}");
        return;
    }
    snapshotter_conforms("overlayfs").await;
}

/// `ctr -n NS content ls` as digest → labels text.
fn content_ls(ctd: &Containerd, ns: &str) -> BTreeMap<String, String> {
    ctd.ctr(&["-n", ns, "content", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let digest = cols.next()?.to_string();
            let labels = l.split_whitespace().last().unwrap_or("").to_string();
            Some((digest, labels))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_into_containerd_is_kept_by_its_gc_exactly_as_labelled() {
    let ctd = start();
    let ns = "strata";
    let store = Arc::new(connect(&ctd, ns).await);

    // A two-layer chain of plain directories.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (base, top) = (tmp.path().join("base"), tmp.path().join("top"));
    write_files(
        &base,
        &[("etc/os-release", "ID=strata\n"), ("bin/tool", "tool\n")],
    );
    write_files(
        &top,
        &[
            ("etc/os-release", "ID=strata\n"),
            ("bin/tool", "tool\n"),
            ("app/hello", "hi\n"),
        ],
    );
    let dirs = Arc::new(DirectorySnapshotter::open(tmp.path().join("meta")).expect("open"));
    dirs.register("base", None, &base, Labels::new())
        .await
        .expect("register base");
    dirs.register("top", Some("base"), &top, Labels::new())
        .await
        .expect("register top");
    let top_ref = ImmutableRef::load(dirs.clone(), "top").await.expect("load");

    let ctx = ExportContext::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(WalkingDiffer::new(store.clone())),
    );
    let name = "example.com/strata/app:1";
    let resp = ImageExporter::new(ctx)
        .resolve(BTreeMap::from([("name".to_string(), name.to_string())]))
        .await
        .expect("resolve")
        .export(Source::single(Some(top_ref), None), Progress::discard())
        .await
        .unwrap_or_else(|e| panic!("export into containerd: {e}\n{}", ctd.log()));
    let manifest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).expect("digest");

    // containerd sees a complete image under the name.
    assert!(ctd
        .ctr(&["-n", ns, "images", "ls", "-q"])
        .lines()
        .any(|l| l == name));
    let check = ctd.ctr(&["-n", ns, "images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} not in `ctr images check`:\n{check}"));
    assert!(line.contains("complete (3/3)"), "not complete: {line}");

    // The manifest's GC labels name its config and both layers, as `ctr` shows them.
    let m: serde_json::Value = serde_json::from_slice(
        &strata_content::read_blob(
            store.as_ref(),
            &Descriptor::new(media_types::OCI_MANIFEST, manifest.clone(), 0),
            1 << 20,
        )
        .await
        .expect("read manifest"),
    )
    .expect("manifest json");
    let mut referenced = vec![m["config"]["digest"].as_str().expect("config").to_string()];
    for l in m["layers"].as_array().expect("layers") {
        referenced.push(l["digest"].as_str().expect("layer digest").to_string());
    }
    assert_eq!(referenced.len(), 3);
    let listed = content_ls(&ctd, ns);
    let labels = &listed[manifest.as_str()];
    for (i, d) in referenced.iter().enumerate() {
        // strata labels a manifest like BuildKit: .0 is the config, .N layer N.
        assert!(
            labels
                .split(',')
                .any(|l| l == format!("containerd.io/gc.ref.content.{i}={d}")),
            "manifest labels {labels} do not reference {d} as .{i}"
        );
    }
    assert_eq!(
        listed.len(),
        4,
        "manifest, config and two layers: {listed:?}"
    );

    // containerd's GC keeps everything the image record reaches.
    let report = store.garbage_collect().await.expect("gc");
    assert!(report.removed.is_empty(), "GC removed {:?}", report.removed);
    assert_eq!(content_ls(&ctd, ns).len(), 4);

    // A blob under a lease survives GC until the lease is deleted.
    store
        .create_lease(Some("hold"), Labels::new())
        .await
        .expect("lease");
    let bytes = b"held by a lease";
    let held = Descriptor::new(
        "application/octet-stream",
        Digest::sha256_of(bytes),
        bytes.len() as u64,
    );
    write_blob(
        store.with_lease("hold").as_ref(),
        "held",
        bytes,
        &held,
        Labels::new(),
    )
    .await
    .expect("write under lease");
    assert!(ctd.ctr(&["-n", ns, "leases", "ls"]).contains("hold"));
    assert!(store
        .garbage_collect()
        .await
        .expect("gc")
        .removed
        .is_empty());
    assert!(content_ls(&ctd, ns).contains_key(held.digest.as_str()));

    // Removing the image (with ctr) and collecting removes exactly its blobs.
    ctd.ctr(&["-n", ns, "images", "rm", name]);
    let report = store.garbage_collect().await.expect("gc");
    let mut want: Vec<String> = referenced.clone();
    want.push(manifest.to_string());
    want.sort();
    let removed: Vec<String> = report.removed.iter().map(|d| d.to_string()).collect();
    // containerd's own GC scheduler may collect some of them first (it runs by itself
    // on a loaded machine); what our collection removes must be the image's blobs,
    // and afterwards exactly the leased blob is left.
    assert!(
        removed.iter().all(|d| want.contains(d)),
        "GC after removing the image removed {removed:?}; the image's blobs are {want:?}"
    );
    let left = content_ls(&ctd, ns);
    assert_eq!(left.keys().collect::<Vec<_>>(), [held.digest.as_str()]);

    store.delete_lease("hold").await.expect("delete lease");
    // Deleting a lease wakes containerd's own GC scheduler too, which may collect the
    // blob before our collection does: either removes it, nothing else is removed.
    let removed = store.garbage_collect().await.expect("gc").removed;
    assert!(
        removed.is_empty() || removed == vec![held.digest.clone()],
        "GC after the lease went removed {removed:?}"
    );
    assert!(content_ls(&ctd, ns).is_empty());
    assert!(store.list_images().await.expect("images").is_empty());
}

/// containerd collecting after every single change: anything not held by a lease, an
/// image record or a label goes at once.
/// (Debug logging, so the test can see that collections ran.)
const GC_AFTER_EVERY_CHANGE: &str = r#"
[debug]
  level = "debug"
[plugins."io.containerd.gc.v1.scheduler"]
  pause_threshold = 0.5
  startup_delay = "0s"
  schedule_delay = "0s"
  mutation_threshold = 1
  deletion_threshold = 1
"#;

fn collections(ctd: &Containerd) -> usize {
    ctd.log().matches("garbage collected").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_leased_until_recorded_while_containerd_collects() {
    let ctd = Containerd::start_with_config(GC_AFTER_EVERY_CHANGE);
    let ns = "busy";
    let store = Arc::new(connect(&ctd, ns).await);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = Arc::new(DirectorySnapshotter::open(tmp.path().join("meta")).expect("open"));
    let mut parent = None;
    for i in 0..4 {
        let dir = tmp.path().join(format!("l{i}"));
        for j in 0..=i {
            write_files(&dir, &[(&format!("f{j}"), &"x".repeat(1000 * (j + 1)))]);
        }
        let key = format!("l{i}");
        dirs.register(&key, parent.as_deref(), &dir, Labels::new())
            .await
            .expect("register");
        parent = Some(key);
    }
    let top = ImmutableRef::load(dirs.clone(), "l3").await.expect("load");
    let before = collections(&ctd);
    let ctx = ExportContext::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(WalkingDiffer::new(store.clone())),
    );
    ImageExporter::new(ctx)
        .resolve(BTreeMap::from([("name".to_string(), "busy:1".to_string())]))
        .await
        .expect("resolve")
        .export(Source::single(Some(top), None), Progress::discard())
        .await
        .unwrap_or_else(|e| panic!("export under GC pressure: {e}\n{}", ctd.log()));
    let check = ctd.ctr(&["-n", ns, "images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with("busy:1") && l.contains("complete (5/5)")),
        "{check}"
    );
    assert!(
        collections(&ctd) > before,
        "containerd collected nothing during the export:\n{}",
        ctd.log()
    );
    // The export's lease is gone: the image record alone holds its blobs now.
    assert!(store.list_leases().await.expect("leases").is_empty());
    assert!(store
        .garbage_collect()
        .await
        .expect("gc")
        .removed
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_committed_with_ctr_exports_by_key() {
    let ctd = start();
    let ns = "built";
    let store = Arc::new(connect(&ctd, ns).await);
    let snaps = Arc::new(ContainerdSnapshotter::new(
        store.connection().clone(),
        "native",
    ));
    // A containerd user's chain: `ctr snapshots prepare`, fill its mounts, `commit`.
    for (key, parent, files) in [
        ("layer-1", None, &[("etc/motd", "one\n")][..]),
        ("layer-2", Some("layer-1"), &[("app/run", "two\n")][..]),
    ] {
        let active = format!("{key}-active");
        let mut args = vec![
            "-n",
            ns,
            "snapshots",
            "--snapshotter",
            "native",
            "prepare",
            &active,
        ];
        if let Some(p) = parent {
            args.push(p);
        }
        ctd.ctr(&args);
        let mounts = snaps
            .mounts(&active)
            .await
            .expect("mounts of the ctr snapshot");
        {
            let m = TempMount::mount(&mounts).expect("mount");
            write_files(m.path(), files);
        }
        ctd.ctr(&[
            "-n",
            ns,
            "snapshots",
            "--snapshotter",
            "native",
            "commit",
            key,
            &active,
        ]);
    }
    let top = ImmutableRef::load(snaps.clone(), "layer-2")
        .await
        .expect("load the committed chain");
    assert_eq!(top.parent().map(|p| p.id()), Some("layer-1"));

    let ctx = ExportContext::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(WalkingDiffer::new(store.clone())),
    );
    let resp = ImageExporter::new(ctx)
        .resolve(BTreeMap::from([
            ("name".to_string(), "built:1".to_string()),
            ("compression".to_string(), "uncompressed".to_string()),
        ]))
        .await
        .expect("resolve")
        .export(Source::single(Some(top), None), Progress::discard())
        .await
        .expect("export");
    let check = ctd.ctr(&["-n", ns, "images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with("built:1") && l.contains("complete (3/3)")),
        "{check}"
    );
    // The layers hold exactly each snapshot's own files (read back with tar).
    let manifest = Digest::parse(&resp[RESPONSE_IMAGE_DIGEST]).expect("digest");
    let m: serde_json::Value =
        serde_json::from_str(&ctd.ctr(&["-n", ns, "content", "get", manifest.as_str()]))
            .expect("manifest");
    let layers: Vec<String> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    // The blob computed for each snapshot is recorded in containerd's snapshot
    // labels, so a later export (any process) reuses it.
    let info = ctd.ctr(&[
        "-n",
        ns,
        "snapshots",
        "--snapshotter",
        "native",
        "info",
        "layer-2",
    ]);
    assert!(info.contains(layers[1].as_str()), "{info}");
    let mut listings = Vec::new();
    for d in &layers {
        listings.push(ctd.layer_listing(ns, d));
    }
    assert_eq!(listings[0], ["etc", "etc/motd"]);
    // Layer 2 adds app/run and does not ship layer 1's file again.
    assert!(
        listings[1].contains(&"app/run".to_string())
            && !listings[1].contains(&"etc/motd".to_string()),
        "{listings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_socket_or_namespace_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("containerd.sock");
    match ContainerdStore::connect(&socket, "default").await {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains(&socket.display().to_string()), "{m}");
            assert!(m.contains("does not exist"), "{m}");
        }
        other => panic!("a missing socket gave {other:?}"),
    }
    let ctd = start();
    match ContainerdStore::connect(ctd.socket(), "no-such-namespace").await {
        Err(Error::NotFound(m)) => {
            assert!(m.contains("\"no-such-namespace\""), "{m}");
            assert!(m.contains("namespace"), "{m}");
        }
        other => panic!("a missing namespace gave {other:?}"),
    }
    // Nothing was created by asking.
    assert!(!ctd
        .ctr(&["namespaces", "ls", "-q"])
        .lines()
        .any(|l| l == "no-such-namespace"));
    // An invalid namespace name is refused by containerd with a typed error too.
    assert!(matches!(
        ContainerdConnection::connect_or_create(ctd.socket(), "bad/name").await,
        Err(Error::InvalidArgument(_))
    ));
}

/// What a leased snapshotter creates joins the lease, as containerd's unpacker relies
/// on (`unpack=true` extracts through one): containerd's GC keeps it, active or
/// committed, until the lease goes, and collects a snapshot nothing holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_leased_snapshotter_survive_gc_until_the_lease_goes() {
    let ctd = start();
    let store = connect(&ctd, "leased").await;
    let conn = ContainerdConnection::connect(ctd.socket(), "leased")
        .await
        .unwrap();
    let plain = ContainerdSnapshotter::new(conn, "native");
    let lease = store.create_lease(None, Labels::new()).await.unwrap();
    let leased = plain
        .with_lease(&lease.id)
        .expect("containerd takes leases");
    leased.prepare("a1", None, Labels::new()).await.unwrap();
    leased.commit("c1", "a1", Labels::new()).await.unwrap();
    leased
        .prepare("a2", Some("c1"), Labels::new())
        .await
        .unwrap();
    plain
        .prepare("unleased", None, Labels::new())
        .await
        .unwrap();
    let resources = store.list_resources(&lease.id).await.unwrap();
    for key in ["c1", "a2"] {
        assert!(
            resources.iter().any(|r| r.id == key
                && r.kind == strata_content::ResourceKind::Snapshot("native".into())),
            "{key} not in the lease: {resources:?}"
        );
    }

    store.garbage_collect().await.unwrap();
    assert!(plain.stat("c1").await.is_ok() && plain.stat("a2").await.is_ok());
    let err = plain.stat("unleased").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    store.delete_lease(&lease.id).await.unwrap();
    store.garbage_collect().await.unwrap();
    for key in ["a2", "c1"] {
        let err = plain.stat(key).await.unwrap_err();
        assert!(err.is_not_found(), "{key}: {err}");
    }
}
