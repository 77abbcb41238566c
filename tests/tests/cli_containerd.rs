//! End-to-end tests of `strata --containerd SOCKET [--namespace NS]` against a real
//! containerd private to each test: directory layers exported as an image record that
//! `ctr` sees complete; `images`, `inspect` and `gc` through containerd; a chain a
//! containerd user prepared and committed with `ctr snapshots` exported by key; and
//! bad input (a missing socket, namespace or snapshot) failing with one line.

use std::path::Path;

use strata_tests::servers::Containerd;
use strata_tests::tree::write_files;
use strata_tests::{strata, strata_fails, strata_ok};

/// The `ctr images check` line of `name` in `ns`.
fn check_line(ctd: &Containerd, ns: &str, name: &str) -> String {
    let check = ctd.ctr(&["-n", ns, "images", "check"]);
    check
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in `ctr -n {ns} images check`:\n{check}"))
        .to_string()
}

/// The layer digests of the manifest `digest` in `ns`.
fn manifest_layers(ctd: &Containerd, ns: &str, digest: &str) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_str(&ctd.ctr(&["-n", ns, "content", "get", digest])).expect("manifest");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn directory_layers_export_into_containerd_and_store_commands_use_it() {
    let ctd = Containerd::start();
    let sock = ctd.socket().to_str().expect("socket path").to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let (base, app) = (tmp.path().join("base"), tmp.path().join("app"));
    write_files(
        &base,
        &[("etc/os-release", "ID=strata\n"), ("bin/tool", "t\n")],
    );
    write_files(
        &app,
        &[
            ("etc/os-release", "ID=strata\n"),
            ("bin/tool", "t\n"),
            ("app/run", "run\n"),
        ],
    );
    let (base_s, app_s) = (base.to_str().expect("path"), app.to_str().expect("path"));
    let ns = "strata-cli";
    ctd.ctr(&["namespaces", "create", ns]);
    let name = "example.com/a:1";
    let out = strata_ok(
        &store,
        &[
            "--containerd",
            &sock,
            "--namespace",
            ns,
            "export",
            "--layer",
            base_s,
            "--layer",
            app_s,
            "--description",
            "base",
            "--description",
            "COPY app",
            "--progress",
            "quiet",
            "-o",
            &format!("type=image,name={name}"),
        ],
    );
    let digest = out.trim().to_string();
    assert!(digest.starts_with("sha256:"), "printed {out:?}");

    // containerd has the record, complete, in that namespace (and only there).
    assert!(ctd
        .ctr(&["-n", ns, "images", "ls", "-q"])
        .lines()
        .any(|l| l == name));
    let line = check_line(&ctd, ns, name);
    assert!(line.contains("complete (3/3)"), "not complete: {line}");
    assert!(line.contains(&digest), "{line} does not name {digest}");
    assert!(!ctd
        .ctr(&["-n", "default", "images", "ls", "-q"])
        .lines()
        .any(|l| l == name));
    // The blobs are containerd's; the local store holds none.
    assert!(!store.join("blobs").exists());
    let layers = manifest_layers(&ctd, ns, &digest);
    assert_eq!(layers.len(), 2);
    let top = ctd.layer_listing(ns, &layers[1]);
    assert!(
        top.contains(&"app/run".to_string()) && !top.contains(&"bin/tool".to_string()),
        "{top:?}"
    );

    // images, inspect and gc work on containerd's records.
    let cd = ["--containerd", sock.as_str(), "--namespace", ns];
    let images = strata_ok(&store, &[&cd[..], &["images"]].concat());
    let row = images
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{images}"));
    assert!(row.contains(&digest) && row.contains("manifest"), "{row}");
    let inspect = strata_ok(&store, &[&cd[..], &["inspect", name]].concat());
    assert!(
        inspect.contains(&format!("Digest:    {digest}")),
        "{inspect}"
    );
    assert!(inspect.contains("Layers:    2"), "{inspect}");
    assert!(inspect.contains("COPY app"), "{inspect}");
    let gc = strata_ok(&store, &[&cd[..], &["gc"]].concat());
    assert!(gc.starts_with("removed 0 blobs"), "{gc}");
    assert!(check_line(&ctd, ns, name).contains("complete (3/3)"));

    // After the record is removed, gc through strata removes its blobs.
    ctd.ctr(&["-n", ns, "images", "rm", name]);
    strata_ok(&store, &[&cd[..], &["gc"]].concat());
    assert_eq!(ctd.ctr(&["-n", ns, "content", "ls", "-q"]).trim(), "");

    // fsck refuses: containerd verifies its own content.
    let err = strata_fails(&store, &[&cd[..], &["fsck"]].concat());
    assert!(err.contains("containerd"), "{err}");

    // Without --namespace: containerd's "default", created when missing.
    assert!(!ctd
        .ctr(&["namespaces", "ls", "-q"])
        .lines()
        .any(|l| l == "default"));
    strata_ok(
        &store,
        &[
            "--containerd",
            &sock,
            "export",
            "--layer",
            base_s,
            "--progress",
            "quiet",
            "-o",
            "type=image,name=example.com/default:1",
        ],
    );
    assert!(check_line(&ctd, "default", "example.com/default:1").contains("complete (2/2)"));
}

#[test]
fn a_chain_committed_with_ctr_snapshots_exports_by_key() {
    let ctd = Containerd::start();
    let sock = ctd.socket().to_str().expect("socket path").to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let ns = "built";
    ctd.ctr(&["namespaces", "create", ns]);
    let snap = |args: &[&str]| {
        let mut all = vec!["-n", ns, "snapshots", "--snapshotter", "native"];
        all.extend_from_slice(args);
        ctd.ctr(&all)
    };
    for (key, parent, files) in [
        ("layer-1", None, &[("etc/motd", "one\n")][..]),
        ("layer-2", Some("layer-1"), &[("app/run", "two\n")][..]),
    ] {
        let active = format!("{key}-active");
        let mut prepare = vec!["prepare", active.as_str()];
        prepare.extend(parent);
        snap(&prepare);
        // native's mount is a bind of the snapshot's directory:
        // `mount -t bind SOURCE TARGET -o rbind,rw`.
        let mounts = snap(&["mounts", "/mnt", &active]);
        let words: Vec<&str> = mounts.split_whitespace().collect();
        let source = words
            .iter()
            .position(|w| *w == "bind")
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("no bind mount in {mounts:?}"));
        write_files(Path::new(source), files);
        snap(&["commit", key, &active]);
    }
    snap(&["label", "layer-2", "strata.io/description=RUN build app"]);

    let out = strata_ok(
        &store,
        &[
            "--containerd",
            &sock,
            "--namespace",
            ns,
            "export",
            "--snapshot",
            "layer-2",
            "--snapshotter",
            "native",
            "--progress",
            "quiet",
            "-o",
            "type=image,name=built:1,compression=uncompressed",
        ],
    );
    let digest = out.trim().to_string();
    assert!(check_line(&ctd, ns, "built:1").contains("complete (3/3)"));
    let layers = manifest_layers(&ctd, ns, &digest);
    assert_eq!(layers.len(), 2);
    assert_eq!(ctd.layer_listing(ns, &layers[0]), ["etc", "etc/motd"]);
    let top = ctd.layer_listing(ns, &layers[1]);
    assert!(
        top.contains(&"app/run".to_string()) && !top.contains(&"etc/motd".to_string()),
        "{top:?}"
    );
    let cd = ["--containerd", sock.as_str(), "--namespace", ns];
    let inspect = strata_ok(&store, &[&cd[..], &["inspect", "built:1"]].concat());
    assert!(inspect.contains("RUN build app"), "{inspect}");

    // A key that is not there, or only active: one line naming it.
    let err = strata_fails(
        &store,
        &[
            &cd[..],
            &[
                "export",
                "--snapshot",
                "no-such-key",
                "--snapshotter",
                "native",
                "-o",
                "type=image,name=x:1",
            ],
        ]
        .concat(),
    );
    assert!(err.contains("no-such-key"), "{err}");
    snap(&["prepare", "still-active", "layer-2"]);
    let err = strata_fails(
        &store,
        &[
            &cd[..],
            &[
                "export",
                "--snapshot",
                "still-active",
                "--snapshotter",
                "native",
                "-o",
                "type=image,name=x:1",
            ],
        ]
        .concat(),
    );
    assert!(err.contains("still-active"), "{err}");
    assert!(!ctd
        .ctr(&["-n", ns, "images", "ls", "-q"])
        .lines()
        .any(|l| l == "x:1"));
}

#[test]
fn a_missing_socket_or_namespace_fails_with_one_line_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let layer = tmp.path().join("layer");
    write_files(&layer, &[("f", "x\n")]);
    let layer_s = layer.to_str().expect("path");
    let missing = tmp.path().join("no-containerd.sock");
    let missing_s = missing.to_str().expect("path");
    for cmd in [
        &["export", "--layer", layer_s, "-o", "type=image,name=a:1"][..],
        &["images"][..],
    ] {
        let err = strata_fails(&store, &[&["--containerd", missing_s][..], cmd].concat());
        assert!(err.contains(missing_s), "{err}");
    }
    // The layer was never registered: nothing touched the store.
    assert!(!store.exists(), "a failed connection created the store");

    let ctd = Containerd::start();
    let sock = ctd.socket().to_str().expect("socket path");
    for cmd in [
        &["export", "--layer", layer_s, "-o", "type=image,name=a:1"][..],
        &["images"][..],
        &["gc"][..],
    ] {
        let err = strata_fails(
            &store,
            &[&["--containerd", sock, "--namespace", "nope"][..], cmd].concat(),
        );
        assert!(
            err.contains("\"nope\"") && err.contains("namespace"),
            "{err}"
        );
    }
    // Asking created nothing.
    assert!(!ctd
        .ctr(&["namespaces", "ls", "-q"])
        .lines()
        .any(|l| l == "nope"));

    // --namespace and --snapshot need --containerd: usage errors.
    let out = strata(&store, &["--namespace", "x", "images"]);
    assert_eq!(out.status.code(), Some(2));
    let out = strata(
        &store,
        &["export", "--snapshot", "k", "-o", "type=image,name=a:1"],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// The static busybox of Debian's `busybox-static` (scripts/test.sh installs it).
const STATIC_BUSYBOX: &str = "/bin/busybox";

#[test]
fn unpack_true_lets_ctr_run_the_image_without_unpacking_it_again() {
    let busybox = Path::new(STATIC_BUSYBOX);
    assert!(
        busybox.is_file(),
        "{STATIC_BUSYBOX} is missing: install Debian's busybox-static (scripts/test.sh does)"
    );
    let ctd = Containerd::start();
    let sock = ctd.socket().to_str().expect("socket path").to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let rootfs = tmp.path().join("rootfs");
    write_files(&rootfs, &[("etc/hostname", "strata\n")]);
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir bin");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    let ns = "unpack";
    ctd.ctr(&["namespaces", "create", ns]);
    // containerd's default snapshotter when overlay mounts work here, else native.
    let probe = tempfile::tempdir().expect("temp dir");
    let snapshotter = match strata_snapshotter::OverlaySnapshotter::supported(probe.path()) {
        Ok(()) => "overlayfs",
        Err(reason) => {
            eprintln!("overlay mounts do not work here ({reason}): unpacking into native");
            "native"
        }
    };
    let name = "example.com/busybox:1";
    let metadata = tmp.path().join("metadata.json");
    strata_ok(
        &store,
        &[
            "--containerd",
            &sock,
            "--namespace",
            ns,
            "export",
            "--layer",
            rootfs.to_str().expect("path"),
            "--snapshotter",
            snapshotter,
            "--progress",
            "quiet",
            "--metadata-file",
            metadata.to_str().expect("path"),
            "-o",
            &format!("type=image,name={name},unpack=true"),
        ],
    );
    let response: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).expect("metadata")).expect("json");
    let config_digest = response["containerimage.config.digest"]
        .as_str()
        .expect("config digest");
    let config: serde_json::Value =
        serde_json::from_str(&ctd.ctr(&["-n", ns, "content", "get", config_digest]))
            .expect("config");
    // One layer: its chainID is its diffID.
    let chain_id = config["rootfs"]["diff_ids"][0]
        .as_str()
        .expect("diff_id")
        .to_string();

    // The snapshot is containerd's, named by the chainID, committed; no extraction
    // snapshot is left behind.
    let snapshots = ctd.ctr(&["-n", ns, "snapshots", "--snapshotter", snapshotter, "ls"]);
    assert!(
        snapshots
            .lines()
            .any(|l| l.split_whitespace().next() == Some(chain_id.as_str())
                && l.contains("Committed")),
        "{chain_id} not committed in:\n{snapshots}"
    );
    assert_eq!(snapshots.lines().count(), 2, "{snapshots}");
    // The export's lease, which held the snapshots until the label did, is gone.
    let leases = ctd.ctr(&["-n", ns, "leases", "ls"]);
    assert_eq!(leases.lines().count(), 1, "{leases}");
    // The config's label keeps it: a garbage collection leaves it there.
    let label = format!("containerd.io/gc.ref.snapshot.{snapshotter}={chain_id}");
    let content = ctd.ctr(&["-n", ns, "content", "ls"]);
    assert!(
        content
            .lines()
            .any(|l| l.starts_with(config_digest) && l.contains(&label)),
        "no {label} on {config_digest}:\n{content}"
    );
    strata_ok(&store, &["--containerd", &sock, "--namespace", ns, "gc"]);
    let after_gc = ctd.ctr(&["-n", ns, "snapshots", "--snapshotter", snapshotter, "ls"]);
    assert!(after_gc.contains(&chain_id), "collected:\n{after_gc}");

    // ctr runs it as it is.
    let out = ctd.ctr(&[
        "-n",
        ns,
        "run",
        "--rm",
        "--snapshotter",
        snapshotter,
        name,
        "strata-unpack-test",
        "/bin/busybox",
        "echo",
        "hello-from-inside",
    ]);
    assert_eq!(out.trim(), "hello-from-inside", "{}", ctd.log());
    let after_run = ctd.ctr(&["-n", ns, "snapshots", "--snapshotter", snapshotter, "ls"]);
    assert_eq!(
        after_run, snapshots,
        "ctr run unpacked again or left a snapshot"
    );
}
