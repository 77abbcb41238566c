//! End-to-end tests of `strata tag`, `push`, `save` and `rm` on images an export
//! recorded: a busybox image (the umoci base plus a layer) is tagged, pushed later to
//! a private registry (skopeo reads it; a second push uploads nothing; another
//! repository gets it by cross-repository mounts), saved as a docker archive that a
//! real docker engine loads and runs and as an OCI layout (dir and tar) that umoci
//! unpacks to the exported tree, removed, and collected by `gc` — on the local store
//! and on containerd; `rm --prune` of an `unpack=true` image frees its extracted tree
//! too; a push takes its credentials from the docker config. Bad input (unknown
//! names, bad outputs, an unreachable registry) fails with one line and changes
//! nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use strata_oci::Digest;
use strata_tests::servers::{Containerd, Dockerd, Registry};
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{base_rootfs, run, strata_command, tool, umoci_base, unique_name, BaseLayout};

/// A test's temp dir: the umoci base layout, the app tree (the base's tree plus
/// `/srv/app/hello`) and a store.
struct World {
    tmp: tempfile::TempDir,
    base: BaseLayout,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("strata-verbs-")
            .tempdir()
            .unwrap();
        let base = umoci_base(tmp.path());
        let tree = tmp.path().join("app-tree");
        run(Command::new("cp").arg("-a").arg(base_rootfs()).arg(&tree));
        fs::create_dir_all(tree.join("srv/app")).unwrap();
        fs::write(tree.join("srv/app/hello"), "hello from a stored image\n").unwrap();
        fs::set_permissions(
            tree.join("srv/app/hello"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        World { tmp, base }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn tree(&self) -> PathBuf {
        self.path("app-tree")
    }

    /// `strata --store STORE` with `global` options (`--containerd …`) first.
    fn strata(&self, global: &[&str], args: &[&str]) -> Output {
        strata_command(&self.path("store"))
            .args(global)
            .args(args)
            .output()
            .expect("run strata")
    }

    /// Runs strata, panicking unless it succeeds; (stdout, stderr).
    fn ok(&self, global: &[&str], args: &[&str]) -> (String, String) {
        let out = self.strata(global, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\n{stderr}",
            out.status
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// Runs strata expecting exit code 1 and one line on stderr; returns the line.
    fn fails(&self, global: &[&str], args: &[&str]) -> String {
        let out = self.strata(global, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "strata {args:?} should fail with exit 1:\n{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
        stderr
    }

    /// Exports the app tree on the base as `type=image,name=NAME`; the digest.
    fn export(&self, global: &[&str], name: &str) -> String {
        let base = self.base.oci_reference();
        let tree = self.tree();
        let (out, _) = self.ok(
            global,
            &[
                "export",
                "--base",
                &base,
                "--layer",
                tree.to_str().unwrap(),
                "--progress",
                "quiet",
                "-o",
                &format!("type=image,name={name}"),
            ],
        );
        out.trim().to_string()
    }

    /// The image names `strata images` lists.
    fn images(&self, global: &[&str]) -> Vec<String> {
        let (out, _) = self.ok(global, &["images"]);
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }
}

/// skopeo's raw manifest of `reference`, with plain HTTP.
fn skopeo_raw(reference: &str) -> String {
    run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(reference))
}

/// The `N blobs uploaded, M already present, K mounted` counts strata push reports.
fn push_counts(stderr: &str) -> (usize, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pushed "))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let n = numbers.len();
    assert!(n >= 3, "{line}");
    (numbers[n - 3], numbers[n - 2], numbers[n - 1])
}

/// umoci unpacks `image` (`DIR:TAG`) to the app tree.
fn assert_umoci_unpacks_app(w: &World, image: &str, bundle: &Path) {
    run(Command::new(tool("umoci"))
        .args(["unpack", "--rootless", "--image", image])
        .arg(bundle));
    assert_same_tree(&bundle.join("rootfs"), &w.tree(), Compare::default());
}

/// How many blobs (config and layers) the manifest `raw` references.
fn blob_count(raw: &str) -> usize {
    let manifest: Value = serde_json::from_str(raw).unwrap();
    manifest["layers"].as_array().unwrap().len() + 1
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn an_exported_image_is_tagged_pushed_saved_removed_and_collected() {
    let w = World::new();
    let registry = Registry::start();
    let host = registry.host();
    let repo = unique_name("verbs/app");
    let name = "strata.test/verbs/app:1";
    let digest = w.export(&[], name);

    // tag: more names for the same root.
    let later = format!("{host}/{repo}:later");
    let (out, _) = w.ok(&[], &["tag", name, "strata.test/verbs/app:2", &later]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["strata.test/verbs/app:2", &later]
    );
    let (inspect, _) = w.ok(&[], &["inspect", &later]);
    assert!(inspect.contains(&digest), "{inspect}");
    // A taken name is refused (and left alone) unless --force.
    let err = w.fails(&[], &["tag", name, "strata.test/verbs/app:2"]);
    assert!(
        err.contains("strata.test/verbs/app:2") && err.contains("--force"),
        "{err}"
    );

    // push NAME: to its own name, with the export's progress.
    let insecure = ["--insecure-registry", host.as_str()];
    let (out, err) = w.ok(&insecure, &["push", &later, "--progress", "json"]);
    assert_eq!(out.trim(), digest);
    let raw = skopeo_raw(&format!("docker://{later}"));
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);
    let blobs = blob_count(&raw);
    assert_eq!(push_counts(&err), (blobs, 0, 0), "{err}");
    assert!(
        err.contains(r#""status":"completed""#) && err.contains("push:"),
        "{err}"
    );
    let uploads = registry.blob_uploads(&repo).len();
    // Again: every blob is there already, nothing is uploaded.
    let (_, err) = w.ok(&insecure, &["push", &later, "--progress", "quiet"]);
    assert_eq!(push_counts(&err), (0, blobs, 0), "{err}");
    assert_eq!(registry.blob_uploads(&repo).len(), uploads);
    // push NAME REF: another repository of the registry gets the blobs by mounts.
    let other = unique_name("verbs/other");
    let (out, err) = w.ok(
        &insecure,
        &[
            "push",
            name,
            &format!("{host}/{other}:v1"),
            "--progress",
            "plain",
        ],
    );
    assert_eq!(out.trim(), digest);
    assert_eq!(push_counts(&err), (0, 0, blobs), "{err}");
    assert!(registry.blob_uploads(&other).is_empty());
    let raw = skopeo_raw(&format!("docker://{host}/{other}:v1"));
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);

    // save -o type=oci,tar=false: one layout, each name an entry umoci unpacks.
    let layout = w.path("layout");
    let names = [name, "strata.test/verbs/app:2"];
    w.ok(
        &[],
        &[
            "save",
            names[0],
            names[1],
            "--progress",
            "quiet",
            "-o",
            &format!("type=oci,tar=false,dest={}", layout.display()),
        ],
    );
    let index = read_json(&layout.join("index.json"));
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["1", "2"]);
    assert_umoci_unpacks_app(
        &w,
        &format!("{}:2", layout.display()),
        &w.path("bundle-dir"),
    );
    // Saving into the existing layout again replaces its index.json: only the names
    // saved now are listed; the blobs are kept.
    w.ok(
        &[],
        &[
            "save",
            names[1],
            "-o",
            &format!("type=oci,tar=false,dest={}", layout.display()),
        ],
    );
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);

    // save -o type=oci (tar): skopeo and umoci read it; an existing file is replaced.
    let tar = w.path("app.oci.tar");
    fs::write(&tar, "not an archive").unwrap();
    w.ok(
        &[],
        &[
            "save",
            name,
            "-o",
            &format!("type=oci,dest={}", tar.display()),
        ],
    );
    let raw = skopeo_raw(&format!("oci-archive:{}:1", tar.display()));
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);
    let extracted = w.path("extracted");
    fs::create_dir_all(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&extracted));
    assert_umoci_unpacks_app(
        &w,
        &format!("{}:1", extracted.display()),
        &w.path("bundle-tar"),
    );

    // save -o type=docker: docker loads both names and runs the image.
    let archive = w.path("app.docker.tar");
    w.ok(
        &[],
        &[
            "save",
            names[0],
            names[1],
            "-o",
            &format!("type=docker,dest={}", archive.display()),
        ],
    );
    let dockerd = Dockerd::start();
    let loaded = dockerd.docker(&["load", "--input", archive.to_str().unwrap()]);
    for n in names {
        assert!(loaded.contains(n), "{loaded}");
    }
    let hello = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
        names[1],
        "cat",
        "/srv/app/hello",
    ]);
    assert_eq!(hello, "hello from a stored image\n");
    drop(dockerd);

    // rm: an unknown name among known ones removes nothing.
    let before = w.images(&[]);
    let err = w.fails(&[], &["rm", name, "strata.test/no/such:1"]);
    assert!(err.contains("strata.test/no/such:1"), "{err}");
    assert_eq!(w.images(&[]), before);
    // Removing every name, then gc, collects the image's blobs.
    let layer_blobs: Vec<PathBuf> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| w.path("store/blobs/sha256").join(e.unwrap().file_name()))
        .collect();
    assert!(layer_blobs.iter().all(|b| b.is_file()));
    let (out, _) = w.ok(&[], &["rm", name, "strata.test/verbs/app:2"]);
    assert_eq!(out.lines().count(), 2);
    assert!(
        layer_blobs.iter().all(|b| b.is_file()),
        "rm alone keeps content"
    );
    let (out, _) = w.ok(&[], &["rm", &later, "--prune"]);
    assert!(out.contains("removed"), "{out}");
    assert!(w.images(&[]).is_empty());
    let left: Vec<&PathBuf> = layer_blobs.iter().filter(|b| b.exists()).collect();
    assert!(left.is_empty(), "gc left {left:?}");
    // The pushed image is unaffected.
    skopeo_raw(&format!("docker://{later}"));
}

#[test]
fn bad_input_names_what_is_wrong_and_changes_nothing() {
    let w = World::new();
    let name = "strata.test/verbs/bad:1";
    w.export(&[], name);
    let listing = || {
        let mut all: Vec<String> = fs::read_dir(w.path("store/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        (w.images(&[]), all)
    };
    let before = listing();
    let dest = w.path("out.tar");
    let dest_opt = format!("type=oci,dest={}", dest.display());
    for (args, needle) in [
        (vec!["rm", "nope:1"], "nope:1"),
        (vec!["tag", "nope:1", "x:1"], "nope:1"),
        (vec!["push", "nope:1", "127.0.0.1:9/x:1"], "nope:1"),
        (vec!["save", name, "nope:1", "-o", &dest_opt], "nope:1"),
    ] {
        let err = w.fails(&[], &args);
        assert!(
            err.contains(needle) && err.contains("strata images"),
            "{args:?}: {err}"
        );
    }
    assert!(!dest.exists(), "a failed save writes nothing");
    // Outputs save cannot write are usage errors (exit 2) naming the option.
    for (spec, needle) in [
        ("type=image,dest=x", "type"),
        ("type=oci,dest=x,name=a", "name"),
        ("type=docker,tar=false,dest=x", "tar"),
        ("type=oci", "dest"),
    ] {
        let out = w.strata(&[], &["save", name, "-o", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{spec}: {err}");
    }
    // A push to an unreachable registry fails naming it.
    let err = w.fails(
        &["--insecure-registry", "127.0.0.1:9"],
        &["push", name, "127.0.0.1:9/x:1", "--progress", "quiet"],
    );
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert_eq!(listing(), before);
}

#[test]
fn tag_push_save_and_rm_work_on_containerd() {
    let w = World::new();
    let ctd = Containerd::start();
    let registry = Registry::start();
    let host = registry.host();
    let sock = ctd.socket().to_str().unwrap().to_string();
    let ns = unique_name("verbs");
    ctd.ctr(&["namespaces", "create", &ns]);
    let global = ["--containerd", sock.as_str(), "--namespace", ns.as_str()];
    let name = "strata.test/verbs/ctd:1";
    let digest = w.export(&global, name);

    let pushed = format!("{host}/{}:1", unique_name("verbs/ctd"));
    w.ok(&global, &["tag", name, &pushed]);
    let listed = ctd.ctr(&["-n", &ns, "images", "ls", "-q"]);
    assert!(listed.lines().any(|l| l == pushed), "{listed}");
    let check = ctd.ctr(&["-n", &ns, "images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(&pushed) && l.contains("complete")),
        "{check}"
    );

    let mut with_registry = global.to_vec();
    with_registry.extend(["--insecure-registry", host.as_str()]);
    let (out, err) = w.ok(&with_registry, &["push", &pushed, "--progress", "quiet"]);
    assert_eq!(out.trim(), digest);
    let raw = skopeo_raw(&format!("docker://{pushed}"));
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);
    let blobs = blob_count(&raw);
    assert_eq!(push_counts(&err), (blobs, 0, 0), "{err}");
    let (_, err) = w.ok(&with_registry, &["push", &pushed, "--progress", "quiet"]);
    assert_eq!(push_counts(&err), (0, blobs, 0), "{err}");

    // save reads containerd's content through the same code.
    let layout = w.path("ctd-layout");
    w.ok(
        &global,
        &[
            "save",
            name,
            "-o",
            &format!("type=oci,tar=false,dest={}", layout.display()),
        ],
    );
    assert_umoci_unpacks_app(&w, &format!("{}:1", layout.display()), &w.path("bundle"));

    // rm: all or nothing, then gone from containerd.
    let err = w.fails(&global, &["rm", name, "nope:1"]);
    assert!(err.contains("nope:1") && err.contains(&ns), "{err}");
    assert_eq!(w.images(&global).len(), 2);
    w.ok(&global, &["rm", name, &pushed]);
    assert!(w.images(&global).is_empty());
    assert!(ctd
        .ctr(&["-n", &ns, "images", "ls", "-q"])
        .trim()
        .is_empty());
}

#[tokio::test]
async fn rm_prune_removes_an_unpacked_image_and_its_extracted_chain_in_one_pass() {
    let w = World::new();
    let tree = w.tree();
    let name = "strata.test/verbs/unpacked:1";
    w.ok(
        &[],
        &[
            "export",
            "--layer",
            tree.to_str().unwrap(),
            "--progress",
            "quiet",
            "-o",
            &format!("type=image,name={name},unpack=true"),
        ],
    );
    let native =
        strata_snapshotter::NativeSnapshotter::open(w.path("store/.strata/snapshots/native"))
            .unwrap();
    let snapshots = || async {
        strata_snapshotter::Snapshotter::walk(&native, &strata_snapshotter::Filter::All)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(snapshots().await, 1, "the unpacked layer");
    // A gc keeps what the record references.
    w.ok(&[], &["gc"]);
    assert_eq!(snapshots().await, 1);
    w.ok(&[], &["rm", name, "--prune"]);
    assert_eq!(snapshots().await, 0, "the chain outlived its image");
    let blobs = fs::read_dir(w.path("store/blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "blobs outlived their image");
}

#[test]
fn push_takes_credentials_from_the_docker_config() {
    use base64::Engine as _;
    let w = World::new();
    let name = "strata.test/verbs/auth:1";
    let digest = w.export(&[], name);
    let locked = Registry::start_with_auth("alice", "s3cret");
    let host = locked.host();
    let target = format!("{host}/{}:1", unique_name("verbs/auth"));
    let push = |config: &Path| {
        strata_command(&w.path("store"))
            .env("DOCKER_CONFIG", config)
            .args(["--insecure-registry", &host, "push", name, &target])
            .args(["--progress", "quiet"])
            .output()
            .expect("run strata")
    };
    // No credentials: refused, naming the registry, one line.
    let out = push(&w.path("no-docker-config"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&host) && err.contains("not authorized"),
        "{err}"
    );
    // The docker config's auths entry: pushed.
    let config = w.path("docker-config");
    fs::create_dir_all(&config).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    fs::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let out = push(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
}
