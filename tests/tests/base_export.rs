//! `strata export --base`: images built on bases nobody here wrote (made by umoci,
//! pushed by skopeo, saved by a real docker engine, imported by containerd). For each:
//! the base layers in the result are byte for byte the base's, the config and history
//! start with the base's, the result unpacks (umoci, docker, containerd) to the
//! expected tree, and a push to the base's registry uploads no base blob. Bad bases
//! fail with one line naming the base and the blob, leaving the store as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use strata_tests::servers::{Containerd, Dockerd, Registry};
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{
    base_rootfs, containerd_base, docker_save_base, oci_archive_base, push_base, run,
    strata_command, tool, umoci_base, unique_name, BaseLayout, BASE_ENV, BASE_HISTORY,
    BASE_RELEASE,
};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

/// A test's temp dir with the umoci base, a store, and the files a new layer adds.
struct World {
    tmp: tempfile::TempDir,
    base: BaseLayout,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("strata-base-")
            .tempdir()
            .unwrap();
        let base = umoci_base(tmp.path());
        World { tmp, base }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    fn strata(&self) -> Command {
        strata_command(&self.store())
    }

    /// The base's tree plus `/srv/app/hello` (mode 0640): a full tree for `--layer`.
    fn app_tree(&self) -> PathBuf {
        let tree = self.path("app-tree");
        run(Command::new("cp").arg("-a").arg(base_rootfs()).arg(&tree));
        fs::create_dir_all(tree.join("srv/app")).unwrap();
        fs::write(tree.join("srv/app/hello"), "hello from the new layer\n").unwrap();
        fs::set_permissions(
            tree.join("srv/app/hello"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        tree
    }

    /// A directory to `--copy`: `hello` (0640) and `bin/run` (0755).
    fn copy_src(&self) -> PathBuf {
        let src = self.path("copy-src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("hello"), "hello from a copy\n").unwrap();
        fs::set_permissions(src.join("hello"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(src.join("bin/run"), "#!/bin/sh\necho run\n").unwrap();
        fs::set_permissions(src.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        src
    }
}

/// The manifest, config and manifest descriptor of image `tag` of the OCI layout `dir`.
fn read_layout(dir: &Path) -> (Value, Value) {
    let index = json(&fs::read_to_string(dir.join("index.json")).unwrap());
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| json(&fs::read_to_string(dir.join("blobs/sha256").join(&d[7..])).unwrap());
    let manifest = blob(&digest);
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// The base layout's manifest.
fn base_manifest(base: &BaseLayout) -> Value {
    let digest = base.manifest_digest();
    json(&fs::read_to_string(base.layout.join("blobs/sha256").join(&digest[7..])).unwrap())
}

/// The result's first layers are the base's descriptors, byte for byte; its config
/// keeps the base's env and starts its history and diff_ids with the base's.
fn assert_built_on_base(manifest: &Value, config: &Value, base: &BaseLayout, new_layers: usize) {
    let base_layers = base_manifest(base)["layers"].as_array().unwrap().clone();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), base_layers.len() + new_layers, "{manifest}");
    assert_eq!(
        &layers[..base_layers.len()],
        &base_layers[..],
        "base layers as they came"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base.manifest_digest()
    );
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(&diff_ids[..2], &base.diff_ids()[..]);
    let created_by: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(&created_by[..BASE_HISTORY.len()], &BASE_HISTORY[..]);
    assert_eq!(created_by.len(), BASE_HISTORY.len() + new_layers);
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == BASE_ENV), "{env:?}");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox"])
    );
}

#[test]
fn a_registry_base_with_a_layer_reuses_its_blobs_and_pushes_none_of_them() {
    let w = World::new();
    let registry = Registry::start();
    let repo = unique_name("base/busybox");
    let pushed = push_base(&w.base, &registry.host(), &format!("{repo}:1"));
    let tree = w.app_tree();
    let dest = w.path("out");
    let out = w
        .strata()
        .args(["export", "--insecure-registry", &registry.host()])
        .arg("--base")
        .arg(format!("docker://{pushed}"))
        .arg("--layer")
        .arg(&tree)
        .args([
            "--description",
            "COPY hello /srv/app/hello",
            "--progress",
            "plain",
        ])
        .arg("-o")
        .arg(format!(
            "type=oci,tar=false,dest={},name=strata.test/app:1",
            dest.display()
        ))
        .output()
        .unwrap();
    ok(out, "export --base docker://");
    let (manifest, config) = read_layout(&dest);
    assert_built_on_base(&manifest, &config, &w.base, 1);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        pushed.clone() + ""
    );
    // The new layer holds only what the layer added to the base's tree.
    let new_layer = manifest["layers"][2]["digest"].as_str().unwrap();
    let listing = run(Command::new("tar")
        .arg("-tzf")
        .arg(dest.join("blobs/sha256").join(&new_layer[7..])));
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["srv/", "srv/app/", "srv/app/hello"],
        "{listing}"
    );
    // umoci unpacks the whole image to the expected tree.
    let bundle = w.path("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1", dest.display()))
        .arg(&bundle));
    assert_same_tree(&bundle.join("rootfs"), &tree, Compare::default());

    // Pushed to the base's registry (another repository): no base blob is uploaded.
    let app = unique_name("app");
    let out = w
        .strata()
        .args(["export", "--insecure-registry", &registry.host()])
        .arg("--base")
        .arg(format!("docker://{pushed}"))
        .arg("--layer")
        .arg(&tree)
        .arg("-o")
        .arg(format!("type=registry,name={}/{app}:1", registry.host()))
        .output()
        .unwrap();
    ok(out, "export --base to the registry");
    // The new layer and the config were uploaded, nothing else; the base layers were
    // mounted from the base's repository.
    let bodies: Vec<_> = registry
        .blob_uploads(&app)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for layer in w.base.layer_digests() {
        let encoded = layer.replace(':', "%3A");
        assert!(
            !bodies.iter().any(|r| r.uri.contains(&encoded)),
            "base layer {layer} uploaded: {bodies:?}"
        );
    }
    assert_eq!(registry.mounts(&app).len(), 2, "{:?}", registry.requests());
    let inspected = json(&run(Command::new(tool("skopeo")).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/{app}:1", registry.host()),
    ])));
    let layers: Vec<&str> = inspected["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        &layers[..2],
        &w.base
            .layer_digests()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
    );
}

#[test]
fn oci_layout_and_archive_bases_with_a_copy_layer_never_extract_the_base() {
    let w = World::new();
    let src = w.copy_src();
    let archive = w.path("base.oci.tar");
    oci_archive_base(&w.base, &archive, "v1");
    for (n, base) in [
        w.base.oci_reference(),
        format!("oci-archive:{}:v1", archive.display()),
    ]
    .into_iter()
    .enumerate()
    {
        let dest = w.path(&format!("out-{n}"));
        let out = w
            .strata()
            .args(["export", "--base", &base, "--copy"])
            .arg(format!("{}:/srv/app", src.display()))
            .args(["--chown", "1000:1000", "-o"])
            .arg(format!(
                "type=oci,tar=false,dest={},name=strata.test/copy:1",
                dest.display()
            ))
            .output()
            .unwrap();
        ok(out, &format!("export --base {base} --copy"));
        let (manifest, config) = read_layout(&dest);
        assert_built_on_base(&manifest, &config, &w.base, 1);
        let last = config["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            last["created_by"],
            format!("COPY {} /srv/app", src.display()),
            "the source as given"
        );
        // Nothing was extracted: the base's tree never existed.
        let extracted = w.store().join(".strata/snapshots/native");
        let snapshots: Vec<_> = fs::read_dir(extracted.join("snapshots"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(snapshots.is_empty(), "extracted: {snapshots:?}");
        // umoci sees the copied files under /srv/app, owned 1000:1000, modes kept.
        let bundle = w.path(&format!("bundle-{n}"));
        run(Command::new(tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:1", dest.display()))
            .arg(&bundle));
        let hello = bundle.join("rootfs/srv/app/hello");
        let meta = fs::metadata(&hello).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1000, 0o640)
        );
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/base-release")).unwrap(),
            BASE_RELEASE
        );
    }

    // Pushed to a repository that has the base already: the base layers are found
    // there (HEAD), read from the layout never, uploaded never.
    let registry = Registry::start();
    let repo = unique_name("layout/base");
    push_base(&w.base, &registry.host(), &format!("{repo}:1"));
    let before = registry.blob_uploads(&repo).len();
    let out = w
        .strata()
        .args(["export", "--insecure-registry", &registry.host()])
        .args(["--base", &w.base.oci_reference(), "--copy"])
        .arg(format!("{}:/srv/app", src.display()))
        .arg("-o")
        .arg(format!("type=registry,name={}/{repo}:app", registry.host()))
        .output()
        .unwrap();
    ok(out, "export --base oci: to the base's repository");
    // Only strata's requests: skopeo's push of the base came before.
    let bodies: Vec<_> = registry
        .blob_uploads(&repo)
        .into_iter()
        .skip(before)
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(bodies.len(), 2, "the copy layer and the config: {bodies:?}");
    for layer in w.base.layer_digests() {
        let encoded = layer.replace(':', "%3A");
        assert!(
            !bodies.iter().any(|r| r.uri.contains(&encoded)),
            "base layer {layer} uploaded: {bodies:?}"
        );
    }
}

#[test]
fn a_docker_save_archive_base_runs_in_docker_with_the_copied_files() {
    let w = World::new();
    let dockerd = Dockerd::start();
    let name = format!("{}:1", unique_name("strata.test/base"));
    let saved = docker_save_base(&w.base, &dockerd, w.tmp.path(), &name);
    let src = w.copy_src();
    let out_tar = w.path("app.docker.tar");
    let app = format!("{}:1", unique_name("strata.test/app"));
    let out = w
        .strata()
        .arg("export")
        .arg("--base")
        .arg(format!("docker-archive:{}", saved.display()))
        .arg("--copy")
        .arg(format!("{}:/srv/app", src.display()))
        .args(["--chown", "1000:1000", "-o"])
        .arg(format!("type=docker,dest={},name={app}", out_tar.display()))
        .output()
        .unwrap();
    ok(out, "export --base docker-archive:");
    // The base layers are docker's own uncompressed tars, byte for byte.
    let listing = run(Command::new("tar")
        .arg("-xOf")
        .arg(&out_tar)
        .arg("manifest.json"));
    let entry = &json(&listing)[0];
    let layers = entry["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{entry}");
    for (layer, diff_id) in layers.iter().zip(w.base.diff_ids()) {
        assert!(
            layer.as_str().unwrap().contains(&diff_id[7..]),
            "{layer} is not the base's {diff_id}"
        );
    }
    dockerd.docker(&["load", "--input", &out_tar.to_string_lossy()]);
    let shown = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
        &app,
        "stat",
        "-c",
        "%u:%g %a %n",
        "/srv/app/hello",
        "/srv/app/bin/run",
    ]);
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        [
            "1000:1000 640 /srv/app/hello",
            "1000:1000 755 /srv/app/bin/run"
        ]
    );
    // The base's entrypoint and command still run.
    let release = dockerd.docker(&["run", "--rm", "--network", "none", &app]);
    assert_eq!(release, BASE_RELEASE);
}

#[test]
fn a_containerd_base_exports_into_containerd_and_runs() {
    let w = World::new();
    let containerd = Containerd::start();
    let ns = unique_name("ns");
    let name = format!("{}:1", unique_name("strata.test/base"));
    containerd_base(&w.base, &containerd, &ns, &name, "native");
    let src = w.copy_src();
    let app = format!("{}:1", unique_name("strata.test/app"));
    let out = w
        .strata()
        .arg("--containerd")
        .arg(containerd.socket())
        .args([
            "--namespace",
            &ns,
            "export",
            "--base",
            &format!("containerd:{name}"),
        ])
        .arg("--copy")
        .arg(format!("{}:/srv/app", src.display()))
        .arg("-o")
        .arg(format!("type=image,name={app}"))
        .output()
        .unwrap();
    ok(out, "export --base containerd:");
    let printed = containerd.ctr(&[
        "-n",
        &ns,
        "run",
        "--rm",
        "--snapshotter",
        "native",
        &app,
        &unique_name("c"),
        "/bin/busybox",
        "cat",
        "/srv/app/hello",
        "/etc/base-release",
    ]);
    assert_eq!(printed, format!("hello from a copy\n{BASE_RELEASE}"));
}

#[test]
fn bad_bases_fail_naming_the_base_and_the_blob_and_leave_the_store_as_it_was() {
    let w = World::new();
    let tree = w.app_tree();
    let export = |base: &str| {
        w.strata()
            .args(["export", "--progress", "quiet", "--base", base, "--layer"])
            .arg(&tree)
            .arg("-o")
            .arg(format!("type=oci,dest={}", w.path("bad.tar").display()))
            .output()
            .unwrap()
    };
    // A tag the layout does not have.
    let err = failed(
        export(&format!("oci:{}:nope", w.base.layout.display())),
        "a missing tag",
    );
    assert!(
        err.contains("nope") && err.contains(&w.base.layout.display().to_string()),
        "{err}"
    );

    // A layer that does not match its diff_id (the layout's blob rewritten in place).
    let layers = w.base.layer_digests();
    let blob = w.base.layout.join("blobs/sha256").join(&layers[1][7..]);
    let tampered = w.path("tampered");
    run(Command::new("cp")
        .arg("-a")
        .arg(&w.base.layout)
        .arg(&tampered));
    let tampered_blob = tampered.join("blobs/sha256").join(&layers[1][7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    fs::write(&tampered_blob, &bytes).unwrap();
    let err = failed(
        export(&format!("oci:{}:base", tampered.display())),
        "a tampered layer",
    );
    assert!(err.contains(&layers[1]), "{err}");
    assert!(!w.path("bad.tar").exists());
    let store_before = list_blobs(&w.store());

    // A registry that has no such image: 404, naming the reference.
    let registry = Registry::start();
    let out = w
        .strata()
        .args(["export", "--progress", "quiet"])
        .args(["--insecure-registry", &registry.host(), "--base"])
        .arg(format!("docker://{}/nobody/here:1", registry.host()))
        .arg("--layer")
        .arg(&tree)
        .arg("-o")
        .arg(format!("type=oci,dest={}", w.path("bad.tar").display()))
        .output()
        .unwrap();
    let err = failed(out, "a missing registry image");
    assert!(err.contains("nobody/here"), "{err}");

    // A registry that wants credentials nobody gave: 401, naming the registry.
    let locked = Registry::start_with_auth("user", "secret");
    let pushed = format!("{}/locked/base:1", locked.host());
    let out = w
        .strata()
        .env("DOCKER_CONFIG", w.path("no-docker-config"))
        .args(["export", "--progress", "quiet"])
        .args(["--insecure-registry", &locked.host(), "--base"])
        .arg(format!("docker://{pushed}"))
        .arg("--layer")
        .arg(&tree)
        .arg("-o")
        .arg(format!("type=oci,dest={}", w.path("bad.tar").display()))
        .output()
        .unwrap();
    let err = failed(out, "a registry that wants credentials");
    assert!(err.contains(&locked.host()), "{err}");
    assert!(
        err.contains("not authorized") && err.contains("locked/base"),
        "{err}"
    );
    assert_eq!(list_blobs(&w.store()), store_before, "nothing half-written");
}

/// The blob files of a local store.
fn list_blobs(store: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(store.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_pulled_base_exports_offline_from_the_store() {
    let w = World::new();
    let registry = Registry::start();
    let repo = unique_name("base/pulled");
    let pushed = push_base(&w.base, &registry.host(), &format!("{repo}:1"));
    let out = w
        .strata()
        .args(["pull", "--insecure-registry", &registry.host()])
        .arg(format!("docker://{pushed}"))
        .output()
        .unwrap();
    let digest = ok(out, "pull");
    assert_eq!(digest.trim(), w.base.manifest_digest());
    let images = ok(w.strata().arg("images").output().unwrap(), "images");
    assert!(images.contains(&pushed), "{images}");
    // Every blob is in the store: the registry is no longer needed.
    drop(registry);
    let src = w.copy_src();
    let dest = w.path("out");
    let out = w
        .strata()
        .args(["export", "--base", &format!("store:{pushed}"), "--copy"])
        .arg(format!("{}:/srv/app", src.display()))
        .arg("-o")
        .arg(format!(
            "type=oci,tar=false,dest={},name=strata.test/offline:1",
            dest.display()
        ))
        .output()
        .unwrap();
    ok(out, "export --base store: without the registry");
    let (manifest, config) = read_layout(&dest);
    assert_built_on_base(&manifest, &config, &w.base, 1);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        pushed
    );
}

#[test]
fn a_spec_gives_each_platform_its_base_and_copies() {
    let w = World::new();
    let src = w.copy_src();
    let spec = w.path("spec.json");
    fs::write(
        &spec,
        serde_json::json!({"platforms": [{
            "platform": "linux/amd64",
            "base": w.base.oci_reference(),
            "copy": [format!("{}:/srv/app", src.display())],
            "config": {"config": {"Env": ["EXTRA=1"]}}
        }]})
        .to_string(),
    )
    .unwrap();
    let dest = w.path("out");
    let out = w
        .strata()
        .args(["export", "--spec"])
        .arg(&spec)
        .arg("-o")
        .arg(format!(
            "type=oci,tar=false,dest={},name=strata.test/spec:1",
            dest.display()
        ))
        .output()
        .unwrap();
    ok(out, "export --spec with a base");
    let index = json(&fs::read_to_string(dest.join("index.json")).unwrap());
    let root = index["manifests"][0]["digest"].as_str().unwrap();
    let blob =
        |d: &str| json(&fs::read_to_string(dest.join("blobs/sha256").join(&d[7..])).unwrap());
    let image_index = blob(root);
    let entry = &image_index["manifests"][0];
    assert_eq!(entry["platform"]["architecture"], "amd64");
    let manifest = blob(entry["digest"].as_str().unwrap());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    assert_built_on_base(&manifest, &config, &w.base, 1);
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "EXTRA=1"), "{env:?}");
}
