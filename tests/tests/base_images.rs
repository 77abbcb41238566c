//! The base images the end-to-end tests of `strata export --base` start from are what
//! the harness says they are, checked with the real tools only:
//!
//! - the umoci layout has two layers, three history entries and the documented config
//!   (`umoci stat`, `skopeo inspect --config`), and unpacks (`umoci unpack`) to
//!   [`base_rootfs`] (layer 2's whiteout applied);
//! - pushed to a private registry and written as an OCI archive, it is the same
//!   manifest (`skopeo inspect`);
//! - loaded into a private dockerd it runs (`docker run --network none` prints
//!   `/etc/base-release`), keeps its config and layers (`docker image inspect`), and
//!   `docker save` writes docker.io's legacy archive;
//! - imported into a private containerd it is listed, unpacked (into the native and
//!   the overlayfs snapshotter), and `ctr run` of it prints `/etc/base-release`;
//! - a dropped dockerd leaves no process and no mount behind.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use strata_tests::servers::{Containerd, Dockerd, Registry};
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{
    base_rootfs, containerd_base, docker_save_base, oci_archive_base, push_base, run, tool,
    umoci_base, unique_name, BASE_CREATED, BASE_ENV, BASE_HISTORY, BASE_LABEL, BASE_RELEASE,
};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new(tool("skopeo")).args(args))
}

/// The config says what the module docs of the base say.
fn assert_base_config(config: &Value) {
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/etc/base-release"]));
    assert_eq!(c["Env"], serde_json::json!(["PATH=/bin", BASE_ENV]));
    assert_eq!(c["User"], "0:0");
    assert_eq!(c["WorkingDir"], "/usr/share/base");
    assert_eq!(c["Labels"][BASE_LABEL.0], BASE_LABEL.1);
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert_eq!(config["created"], BASE_CREATED);
    let history = config["history"].as_array().unwrap();
    let created_by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(created_by, BASE_HISTORY);
    let empty: Vec<bool> = history
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(empty, [false, false, true]);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn umoci_layout_has_two_layers_history_config_and_unpacks_to_the_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = umoci_base(tmp.path());

    let stat = json(&run(Command::new(tool("umoci"))
        .args(["stat", "--json", "--image"])
        .arg(base.umoci_image())));
    let history = stat["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{stat}");
    assert_eq!(
        history.iter().filter(|h| !h["layer"].is_null()).count(),
        2,
        "two layers: {stat}"
    );
    let tags = run(Command::new(tool("umoci"))
        .args(["ls", "--layout"])
        .arg(&base.layout));
    assert_eq!(tags.trim(), base.tag);

    assert_base_config(&json(&skopeo(&[
        "inspect",
        "--config",
        &base.oci_reference(),
    ])));

    let bundle = tmp.path().join("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--image"])
        .arg(base.umoci_image())
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_same_tree(
        base_rootfs(),
        &rootfs,
        Compare {
            mtimes: true,
            ..Compare::default()
        },
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/base-release")).unwrap(),
        BASE_RELEASE
    );
    assert!(!rootfs.join("etc/base-obsolete").exists());

    // Built once per process, copied per call: the same image every time.
    let again_dir = tmp.path().join("again");
    std::fs::create_dir(&again_dir).unwrap();
    let again = umoci_base(&again_dir);
    assert_eq!(again.manifest_digest(), base.manifest_digest());
}

#[test]
fn pushed_and_archived_bases_are_the_layout_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let base = umoci_base(tmp.path());
    let digest = base.manifest_digest();

    let registry = Registry::start();
    let repo_tag = format!("{}:1", unique_name("strata-test/base"));
    let pushed = push_base(&base, &registry.host(), &repo_tag);
    assert_eq!(pushed, format!("{}/{repo_tag}", registry.host()));
    let inspect = json(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{pushed}"),
    ]));
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Layers"], serde_json::json!(base.layer_digests()));
    assert_eq!(base.layer_digests().len(), 2);
    assert_eq!(inspect["Labels"][BASE_LABEL.0], BASE_LABEL.1);

    let archive = tmp.path().join("base.oci.tar");
    oci_archive_base(&base, &archive, "v1");
    let inspect = json(&skopeo(&[
        "inspect",
        &format!("oci-archive:{}:v1", archive.display()),
    ]));
    assert_eq!(inspect["Digest"], digest.as_str());
    let listing = run(Command::new("tar").arg("-tf").arg(&archive));
    assert!(listing.lines().any(|l| l == "index.json"), "{listing}");
    assert!(listing.lines().any(|l| l == "oci-layout"), "{listing}");
}

fn tar_member(archive: &Path, member: &str) -> String {
    run(Command::new("tar").arg("-xOf").arg(archive).arg(member))
}

#[test]
fn docker_runs_the_base_and_saves_it_as_a_legacy_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let base = umoci_base(tmp.path());
    let dockerd = Dockerd::start();
    let name = format!("{}:1", unique_name("strata.test/base"));
    let saved = docker_save_base(&base, &dockerd, tmp.path(), &name);

    // Entrypoint + cmd of the config: cat /etc/base-release.
    let out = dockerd.docker(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(out, BASE_RELEASE);
    let out = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
        &name,
        "stat",
        "-c",
        "%a %u:%g %N",
        "/etc/base-secret",
        "/etc/os-release",
    ]);
    assert_eq!(
        out,
        "600 0:0 /etc/base-secret\n777 0:0 '/etc/os-release' -> 'base-release'\n"
    );
    let gone = dockerd
        .docker_command()
        .args(["run", "--rm", "--network", "none", "--entrypoint"])
        .args(["/bin/busybox", &name, "ls", "/etc/base-obsolete"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "layer 2's whiteout hides the file");

    let inspect = json(&dockerd.docker(&["image", "inspect", &name]));
    let image = &inspect[0];
    assert_eq!(image["RepoTags"], serde_json::json!([name]));
    assert_eq!(
        image["RootFS"]["Layers"],
        serde_json::json!(base.diff_ids())
    );
    assert_eq!(base.diff_ids().len(), 2);
    assert_eq!(image["Config"]["Labels"][BASE_LABEL.0], BASE_LABEL.1);
    assert_eq!(
        image["Config"]["Env"],
        serde_json::json!(["PATH=/bin", BASE_ENV])
    );
    // `docker history` lists the newest entry first.
    let history: Vec<String> = dockerd
        .docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &name])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(history, [BASE_HISTORY[2], BASE_HISTORY[1], BASE_HISTORY[0]]);

    // docker.io 20.10's format: manifest.json naming the config and <id>/layer.tar.
    let manifest = json(&tar_member(&saved, "manifest.json"));
    let entry = &manifest[0];
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(entry["RepoTags"], serde_json::json!([name]));
    let config_name = entry["Config"].as_str().unwrap();
    let image_id = image["Id"].as_str().unwrap();
    assert_eq!(format!("sha256:{config_name}"), format!("{image_id}.json"));
    assert_base_config(&json(&tar_member(&saved, config_name)));
    let layers: Vec<&str> = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert!(layer.ends_with("/layer.tar"), "{layer}");
        let listing = run(Command::new("tar").arg("-tf").arg(&saved));
        assert!(listing.lines().any(|l| l == layer), "{layer} in {listing}");
    }
}

/// Imports the base unpacked into `snapshotter` and runs it from there.
fn containerd_imports_unpacks_and_runs_the_base(snapshotter: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let base = umoci_base(tmp.path());
    let containerd = Containerd::start();
    let ns = unique_name("base");
    let name = format!("{}:1", unique_name("strata.test/base"));
    assert_eq!(
        containerd_base(&base, &containerd, &ns, &name, snapshotter),
        name
    );

    let listed = containerd.ctr(&["-n", &ns, "images", "ls", "-q"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), [name.as_str()]);
    let check = containerd.ctr(&["-n", &ns, "images", "check", "--snapshotter", snapshotter]);
    let line = check.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(line.contains("complete (3/3)"), "{check}");
    assert!(line.trim_end().ends_with("true"), "unpacked: {check}");
    let snapshots = containerd.ctr(&["-n", &ns, "snapshots", "--snapshotter", snapshotter, "ls"]);
    assert_eq!(
        snapshots
            .lines()
            .filter(|l| l.contains("Committed"))
            .count(),
        2,
        "{snapshots}"
    );

    let out = containerd.ctr(&[
        "-n",
        &ns,
        "run",
        "--rm",
        "--snapshotter",
        snapshotter,
        &name,
        &unique_name("run"),
        "/bin/busybox",
        "cat",
        "/etc/base-release",
    ]);
    assert_eq!(out, BASE_RELEASE);
}

#[test]
fn containerd_runs_the_base_from_the_native_snapshotter() {
    containerd_imports_unpacks_and_runs_the_base("native");
}

#[test]
fn containerd_runs_the_base_from_the_overlayfs_snapshotter() {
    containerd_imports_unpacks_and_runs_the_base("overlayfs");
}

#[test]
fn dropped_dockerd_leaves_no_process_or_mount() {
    let dockerd = Dockerd::start();
    let dir = dockerd.socket().parent().unwrap().to_path_buf();
    let pid: i32 = std::fs::read_to_string(dir.join("docker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    dockerd.docker(&["info", "--format", "{{.ServerVersion}}"]);
    drop(dockerd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dockerd {pid} is gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*dir.to_string_lossy()),
        "mounts left under {}:\n{mounts}",
        dir.display()
    );
    assert!(!dir.exists(), "{} removed", dir.display());
}
