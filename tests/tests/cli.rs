//! End-to-end tests of the `strata` command: a three-layer chain with deletions is
//! exported to every output type and read back by skopeo, umoci and containerd; bad
//! input fails with one line and leaves the store as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use strata_oci::Digest;
use strata_tests::servers::Containerd;
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{run, strata_command, tool};

/// A temp dir holding three full trees (base, app, final) and a store.
struct Trees {
    tmp: tempfile::TempDir,
}

fn write(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

impl Trees {
    /// base: a few files, dirs and a symlink; app: base plus an app and a mode
    /// change; final: app minus a file (bin/tool) and a directory (var/cache), with
    /// etc/os-release changed and a file added.
    fn new() -> Trees {
        let tmp = tempfile::Builder::new()
            .prefix("strata-cli-")
            .tempdir()
            .unwrap();
        let base = tmp.path().join("base");
        write(
            &base.join("etc/os-release"),
            "ID=strata\nVERSION_ID=1\n",
            0o644,
        );
        write(
            &base.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
            0o644,
        );
        write(&base.join("bin/tool"), "#!/bin/sh\necho tool\n", 0o755);
        write(
            &base.join("usr/lib/libx.so.1"),
            "not really a library\n",
            0o644,
        );
        symlink("libx.so.1", base.join("usr/lib/libx.so")).unwrap();
        write(&base.join("var/cache/apt/pkgcache.bin"), "cache\n", 0o644);
        fs::create_dir_all(base.join("opt/empty")).unwrap();
        let app = tmp.path().join("app");
        copy_tree(&base, &app);
        write(&app.join("app/run"), "#!/bin/sh\nexec /bin/tool\n", 0o755);
        write(&app.join("app/data/readme"), "hello\n", 0o644);
        fs::set_permissions(app.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
        let fin = tmp.path().join("final");
        copy_tree(&app, &fin);
        fs::remove_file(fin.join("bin/tool")).unwrap();
        fs::remove_dir_all(fin.join("var/cache")).unwrap();
        write(
            &fin.join("etc/os-release"),
            "ID=strata\nVERSION_ID=2\n",
            0o644,
        );
        write(&fin.join("app/data/new"), "added in final\n", 0o644);
        write(
            &tmp.path().join("config.json"),
            r#"{"config":{"Cmd":["/app/run"],"Env":["A=1"],"Labels":{"l":"v"}},"x-unknown":{"kept":true}}"#,
            0o644,
        );
        Trees { tmp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// `strata --store <store> export --layer base --layer app --layer final …`.
    fn export_args(&self, output: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["export".into()];
        for (dir, what) in [
            ("base", "base tree"),
            ("app", "COPY app /app"),
            ("final", "RUN rm -r /bin/tool /var/cache"),
        ] {
            args.push("--layer".into());
            args.push(self.path(dir).display().to_string());
            args.push("--description".into());
            args.push(what.into());
        }
        args.push("--config".into());
        args.push(self.path("config.json").display().to_string());
        args.push("-o".into());
        args.push(output.into());
        args
    }
}

fn copy_tree(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Runs `strata --store <store> <args>` and returns its output, whatever the status.
fn strata(store: &Path, args: &[String], env: &[(&str, &str)]) -> Output {
    strata_command(store)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run strata")
}

/// Like [`strata`] but panics unless it succeeds; returns stdout.
fn strata_ok(store: &Path, args: &[String], env: &[(&str, &str)]) -> (String, String) {
    let out = strata(store, args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}):\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn read_json(path: &Path) -> Value {
    json(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// `umoci unpack`s `image` (`dir:tag`) and checks its rootfs is `expected`.
fn assert_umoci_unpacks_to(image: &str, bundle: &Path, expected: &Path) {
    run(Command::new(tool("umoci"))
        .args(["unpack", "--image", image])
        .arg(bundle));
    assert_same_tree(&bundle.join("rootfs"), expected, Compare::default());
}

/// The progress events (`--progress=json`) in `stderr`, by step id.
fn events_by_id(stderr: &str) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let ev = json(line);
        out.entry(ev["id"].as_str().unwrap().to_string())
            .or_default()
            .push(ev);
    }
    out
}

#[test]
fn oci_outputs_read_back_with_skopeo_umoci_and_containerd() {
    let t = Trees::new();
    let store = t.store();

    // OCI tar, with JSON progress and a metadata file.
    let tar = t.path("image.tar");
    let mut args = t.export_args(&format!(
        "type=oci,dest={},name=example.com/strata/test:v1,annotation.org.opencontainers.image.title=cli test",
        tar.display()
    ));
    args.extend(strs(&["--progress=json", "--metadata-file"]));
    args.push(t.path("metadata.json").display().to_string());
    let (stdout, stderr) = strata_ok(&store, &args, &[]);

    let events = events_by_id(&stderr);
    let layers: Vec<&Vec<Value>> = events
        .iter()
        .filter(|(id, _)| id.starts_with("layer:"))
        .map(|(_, evs)| evs)
        .collect();
    assert_eq!(layers.len(), 3, "one progress step per layer: {events:?}");
    for dir in ["base", "app", "final"] {
        let name = format!("exporting layer {}", t.path(dir).display());
        let evs = layers
            .iter()
            .find(|evs| evs[0]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no progress for layer {dir}: {stderr}"));
        assert_eq!(evs.first().unwrap()["status"], "started", "{evs:?}");
        let last = evs.last().unwrap();
        assert_eq!(last["status"], "completed", "{evs:?}");
        assert!(last["current"].as_u64().unwrap() > 0, "{last}");
    }

    // The metadata file's digests are the layout's.
    let metadata = read_json(&t.path("metadata.json"));
    let index = json(&run(Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("index.json")));
    let root = &index["manifests"][0];
    assert_eq!(metadata["containerimage.digest"], root["digest"]);
    assert_eq!(
        metadata["containerimage.descriptor"]["digest"],
        root["digest"]
    );
    assert_eq!(metadata["image.name"], "example.com/strata/test:v1");
    assert_eq!(stdout.trim(), root["digest"].as_str().unwrap());

    // skopeo reads the manifest and config, and copies the archive.
    let raw = run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", tar.display())));
    assert_eq!(
        Digest::sha256_of(raw.as_bytes()).to_string(),
        metadata["containerimage.digest"].as_str().unwrap()
    );
    let manifest = json(&raw);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["config"]["digest"],
        metadata["containerimage.config.digest"]
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "cli test"
    );
    let config = json(&run(Command::new(tool("skopeo"))
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci-archive:{}", tar.display()))));
    assert_eq!(config["config"]["Cmd"][0], "/app/run");
    assert_eq!(config["config"]["Labels"]["l"], "v");
    assert_eq!(config["x-unknown"]["kept"], true, "unknown fields survive");
    assert!(config["architecture"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));
    let created_by: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by,
        [
            "base tree",
            "COPY app /app",
            "RUN rm -r /bin/tool /var/cache"
        ]
    );
    let copied = t.path("copied");
    run(Command::new(tool("skopeo"))
        .arg("copy")
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("oci:{}:v1", copied.display())));
    assert_umoci_unpacks_to(
        &format!("{}:v1", copied.display()),
        &t.path("bundle-tar"),
        &t.path("final"),
    );

    // OCI directory (tar=false): the same image, read in place.
    let dir = t.path("layout");
    let (stdout_dir, _) = strata_ok(
        &store,
        &t.export_args(&format!(
            "type=oci,tar=false,dest={},name=example.com/strata/test:v1,annotation.org.opencontainers.image.title=cli test",
            dir.display()
        )),
        &[],
    );
    let dir_index = read_json(&dir.join("index.json"));
    assert_eq!(dir_index["manifests"][0]["digest"], root["digest"]);
    assert_eq!(stdout_dir.trim(), root["digest"].as_str().unwrap());
    run(Command::new(tool("skopeo"))
        .arg("inspect")
        .arg(format!("oci:{}:v1", dir.display())));
    let converted = t.path("converted.tar");
    run(Command::new(tool("skopeo"))
        .arg("copy")
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!(
            "docker-archive:{}:strata/converted:v1",
            converted.display()
        )));
    let docker_manifest = json(&run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", converted.display()))));
    assert_eq!(docker_manifest["layers"].as_array().unwrap().len(), 3);
    assert_umoci_unpacks_to(
        &format!("{}:v1", dir.display()),
        &t.path("bundle-dir"),
        &t.path("final"),
    );
    // The same warm export into a new directory on another filesystem (tmpfs): the
    // store's blob files cannot be linked there, so they are copied; the layout is as
    // complete, and the store still verifies after both directory exports.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let far = shm.path().join("layout");
    let (stdout_far, _) = strata_ok(
        &store,
        &t.export_args(&format!(
            "type=oci,tar=false,dest={},name=example.com/strata/test:v1,annotation.org.opencontainers.image.title=cli test",
            far.display()
        )),
        &[],
    );
    assert_eq!(stdout_far, stdout_dir);
    let store_dev = fs::metadata(&store).unwrap().dev();
    let mut far_blobs = 0;
    for e in fs::read_dir(far.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let meta = fs::metadata(&p).unwrap();
        assert!(
            meta.dev() != store_dev && meta.nlink() == 1,
            "{} is a copy",
            p.display()
        );
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(Digest::sha256_of(&fs::read(&p).unwrap()).hex(), name);
        far_blobs += 1;
    }
    assert_eq!(
        far_blobs,
        fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
    );
    assert_umoci_unpacks_to(
        &format!("{}:v1", far.display()),
        &t.path("bundle-far"),
        &t.path("final"),
    );
    let (fsck, _) = strata_ok(&store, &strs(&["fsck"]), &[]);
    assert!(fsck.contains("all verified"), "{fsck}");

    // containerd imports the tar, finds it complete, and unpacks it into its native
    // snapshotter: the mounted rootfs is the final tree.
    Containerd::start().assert_imports_as_tree(
        &tar,
        "example.com/strata/test:v1",
        &t.path("ctr-mount"),
        &t.path("final"),
    );
}

#[test]
fn docker_and_image_outputs_warm_cache_and_store_commands() {
    let t = Trees::new();
    let store = t.store();

    // docker-archive, with SOURCE_DATE_EPOCH from the environment.
    let docker = t.path("docker.tar");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    strata_ok(
        &store,
        &t.export_args(&format!(
            "type=docker,dest={},name=strata/docker-test:v2",
            docker.display()
        )),
        &epoch,
    );
    let archive = format!("docker-archive:{}", docker.display());
    let manifest = json(&run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(&archive)));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let config = json(&run(Command::new(tool("skopeo"))
        .args(["inspect", "--config", "--raw"])
        .arg(&archive)));
    assert_eq!(
        config["created"], "2023-11-14T22:13:20Z",
        "SOURCE_DATE_EPOCH"
    );
    let copied = t.path("from-docker");
    run(Command::new(tool("skopeo"))
        .arg("copy")
        .arg(&archive)
        .arg(format!("oci:{}:v2", copied.display())));
    assert_umoci_unpacks_to(
        &format!("{}:v2", copied.display()),
        &t.path("bundle-docker"),
        &t.path("final"),
    );

    // type=image records the image in the store, which is itself an OCI layout.
    let name = "example.com/strata/image-test:v3";
    let out = format!("type=image,name={name}");
    let mut args = t.export_args(&out);
    args.extend(strs(&["--metadata-file"]));
    args.push(t.path("md1.json").display().to_string());
    strata_ok(&store, &args, &[]);
    let first = read_json(&t.path("md1.json"))["containerimage.digest"].clone();
    let in_store = format!("oci:{}:{name}", store.display());
    let raw = run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(&in_store));
    assert_eq!(
        Digest::sha256_of(raw.as_bytes()).to_string(),
        first.as_str().unwrap()
    );
    run(Command::new(tool("skopeo"))
        .arg("copy")
        .arg(&in_store)
        .arg(format!("oci:{}:v3", t.path("from-store").display())));
    assert_umoci_unpacks_to(
        &format!("{}:v3", t.path("from-store").display()),
        &t.path("bundle-image"),
        &t.path("final"),
    );

    // A warm re-export computes no diff (every layer comes from the cache) and gives
    // the same digest.
    let mut args = t.export_args(&out);
    args.extend(strs(&["--progress=quiet", "--metadata-file"]));
    args.push(t.path("md2.json").display().to_string());
    let (_, log) = strata_ok(&store, &args, &[("RUST_LOG", "strata_exporter=debug")]);
    assert_eq!(
        read_json(&t.path("md2.json"))["containerimage.digest"],
        first
    );
    assert_eq!(
        log.matches("reusing layer blob").count(),
        3,
        "every layer reused:\n{log}"
    );

    // Changing a tree (same size, new content) changes the image: no stale cache.
    write(
        &t.path("final/etc/os-release"),
        "ID=strata\nVERSION_ID=3\n",
        0o644,
    );
    let mut args = t.export_args(&out);
    args.extend(strs(&["--progress=quiet", "--metadata-file"]));
    args.push(t.path("md3.json").display().to_string());
    strata_ok(&store, &args, &[]);
    assert_ne!(
        read_json(&t.path("md3.json"))["containerimage.digest"],
        first
    );

    // images, inspect, gc, fsck.
    let (images, _) = strata_ok(&store, &strs(&["images"]), &[]);
    assert!(images.lines().any(|l| l.starts_with(name)), "{images}");
    let (summary, _) = strata_ok(&store, &strs(&["inspect", name]), &[]);
    assert!(summary.contains("Layers:    3"), "{summary}");
    assert!(
        summary.contains("RUN rm -r /bin/tool /var/cache"),
        "{summary}"
    );
    let (gc, _) = strata_ok(&store, &strs(&["gc"]), &[]);
    assert!(gc.starts_with("removed "), "{gc}");
    // The registration of the tree as it was before the change is stale: pruned.
    assert!(
        gc.contains(", 1 snapshot registrations, 0 extracted snapshots"),
        "{gc}"
    );
    let (fsck, _) = strata_ok(&store, &strs(&["fsck"]), &[]);
    assert!(fsck.contains("all verified"), "{fsck}");
    // The recorded image survived the collection.
    run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(&in_store));
    // A corrupted blob is caught by fsck.
    let layer = json(&raw)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = store
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    bytes[10] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let out = strata(&store, &strs(&["fsck"]), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("1 of"), "{stderr}");
}

#[test]
fn multi_platform_spec_exports_an_index() {
    let t = Trees::new();
    let spec = t.path("spec.json");
    fs::write(
        &spec,
        r#"{"platforms":[
            {"platform":"linux/amd64","layers":["base","app","final"],
             "descriptions":["base","app","final"],"config":"config.json"},
            {"platform":"linux/arm64/v8","layers":["base","app"],
             "config":{"config":{"Cmd":["/bin/tool"]}}}
        ]}"#,
    )
    .unwrap();
    let dir = t.path("layout");
    let args = vec![
        "export".to_string(),
        "--spec".into(),
        spec.display().to_string(),
        "-o".into(),
        format!("type=oci,tar=false,dest={},name=multi:v1", dir.display()),
    ];
    strata_ok(&t.store(), &args, &[]);
    let raw = run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", dir.display())));
    let index = json(&raw);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["variant"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64/-", "linux/arm64/v8"]);
    let arm = json(&run(Command::new(tool("skopeo"))
        .args([
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            "inspect",
            "--config",
            "--raw",
        ])
        .arg(format!("oci:{}:v1", dir.display()))));
    assert_eq!(arm["architecture"], "arm64");
    assert_eq!(arm["config"]["Cmd"][0], "/bin/tool");
    assert_eq!(arm["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

    // docker archives hold one image: refused before anything is written.
    let out = strata(
        &t.path("other-store"),
        &[
            "export".to_string(),
            "--spec".into(),
            spec.display().to_string(),
            "-o".into(),
            format!("type=docker,dest={}", t.path("d.tar").display()),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!t.path("other-store").exists());
}

fn with_progress(mut args: Vec<String>, mode: &str) -> Vec<String> {
    args.push(format!("--progress={mode}"));
    args
}

/// Every file under `dir` with its size and mtime.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (md.len(), md.modified().unwrap()));
        }
    }
    out
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_the_store_unchanged() {
    let t = Trees::new();
    let store = t.store();
    let good = format!("type=oci,dest={}", t.path("ok.tar").display());
    let (_, plain) = strata_ok(&store, &with_progress(t.export_args(&good), "plain"), &[]);
    // BuildKit-style plain progress: `#N <step>` then `#N <step> <size> <secs>s done`.
    for dir in ["base", "app", "final"] {
        let step = format!("exporting layer {}", t.path(dir).display());
        assert!(
            plain.lines().any(|l| l.starts_with('#')
                && l.contains(&format!(" {step} "))
                && l.ends_with("s done")),
            "no plain completion line for {dir}:\n{plain}"
        );
    }
    let before = listing(&store);
    let fresh = t.path("fresh-store");

    write(&t.path("not-a-dir"), "file\n", 0o644);
    write(&t.path("bad-config.json"), "{\"config\": [1,", 0o644);
    write(&t.path("array-config.json"), "[1,2]", 0o644);
    write(
        &t.path("bad-spec.json"),
        r#"{"platforms":[{"platform":"linux"}]}"#,
        0o644,
    );
    write(&t.path("typo-spec.json"), r#"{"platform":[]}"#, 0o644);
    write(
        &t.path("missing-spec.json"),
        r#"{"platforms":[{"platform":"linux/amd64","layers":["nope"]}]}"#,
        0o644,
    );
    let base = t.path("base").display().to_string();
    let layer = |dir: String, output: &str| -> Vec<String> {
        vec![
            "export".into(),
            "--layer".into(),
            dir,
            "-o".into(),
            output.into(),
        ]
    };
    let with = |mut args: Vec<String>, extra: &[String]| {
        args.extend_from_slice(extra);
        args
    };
    let spec = |file: &str| -> Vec<String> {
        vec![
            "export".into(),
            "--spec".into(),
            t.path(file).display().to_string(),
            "-o".into(),
            good.clone(),
        ]
    };
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            layer(t.path("missing").display().to_string(), &good),
            1,
            "missing".into(),
        ),
        (
            layer(t.path("not-a-dir").display().to_string(), &good),
            1,
            "not a directory".into(),
        ),
        (
            layer(base.clone(), "type=tarball"),
            2,
            "unknown type".into(),
        ),
        (
            layer(base.clone(), "type=oci,compression=lz4,dest=/tmp/x.tar"),
            2,
            "compression".into(),
        ),
        (
            layer(base.clone(), "type=oci,bogus=1,dest=/tmp/x.tar"),
            2,
            "bogus".into(),
        ),
        (layer(base.clone(), "type=image"), 2, "name".into()),
        (
            layer(
                base.clone(),
                &format!("type=oci,dest={}/no/such/dir/x.tar", t.path("").display()),
            ),
            1,
            "does not exist".into(),
        ),
        (
            with(
                layer(base.clone(), &good),
                &strs(&["--config", t.path("bad-config.json").to_str().unwrap()]),
            ),
            1,
            "bad-config.json".into(),
        ),
        (
            with(
                layer(base.clone(), &good),
                &strs(&["--config", t.path("array-config.json").to_str().unwrap()]),
            ),
            1,
            "array-config.json".into(),
        ),
        (
            with(layer(base.clone(), &good), &strs(&["--platform", "linux"])),
            2,
            "platform".into(),
        ),
        (spec("bad-spec.json"), 1, "bad-spec.json".into()),
        (spec("typo-spec.json"), 1, "typo-spec.json".into()),
        (spec("missing-spec.json"), 1, "nope".into()),
        (spec("no-such-spec.json"), 1, "no-such-spec.json".into()),
    ];
    for (args, code, needle) in cases {
        for s in [&store, &fresh] {
            let out = strata(s, &args, &[("SOURCE_DATE_EPOCH", "")]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{args:?}: exit status {} ({stderr})",
                out.status
            );
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
            assert!(
                stderr.starts_with("strata: ") && stderr.contains(&needle),
                "{args:?}: {stderr:?} should name {needle:?}"
            );
        }
        assert_eq!(listing(&store), before, "{args:?} changed the store");
        assert!(!fresh.exists(), "{args:?} created a store");
    }

    // A failure while exporting (the tar cannot be created) leaves no blobs behind.
    let out = strata(
        &fresh,
        &t.export_args("type=oci,dest=/proc/strata-cannot-write-here.tar"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("strata: export to oci failed: "),
        "{stderr}"
    );
    assert_eq!(
        fs::read_dir(fresh.join("blobs/sha256")).unwrap().count(),
        0,
        "blobs left by a failed export"
    );

    // A bad SOURCE_DATE_EPOCH is a usage error too; clap's own usage errors exit 2.
    let out = strata(
        &store,
        &t.export_args(&good),
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = strata(&store, &strs(&["export", "--layer", &base]), &[]);
    assert_eq!(out.status.code(), Some(2), "--output is required");
    assert_eq!(listing(&store), before);
}

/// The README's first command, on the example trees shipped in the repo.
#[test]
fn readme_example_exports_the_shipped_trees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("example.tar");
    let mut args = strs(&["export"]);
    for dir in ["base", "app", "final"] {
        args.push("--layer".into());
        args.push(root.join("examples/rootfs").join(dir).display().to_string());
    }
    args.push("--config".into());
    args.push(root.join("examples/config.json").display().to_string());
    args.push("-o".into());
    args.push(format!(
        "type=oci,dest={},name=example.com/strata/example:latest",
        tar.display()
    ));
    let store = tmp.path().join("store");
    let (digest, _) = strata_ok(&store, &args, &[]);
    let (again, _) = strata_ok(&store, &args, &[]);
    assert_eq!(digest, again, "a warm re-export gives the same image");
    let copied = tmp.path().join("copied");
    run(Command::new(tool("skopeo"))
        .arg("copy")
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("oci:{}:latest", copied.display())));
    assert_umoci_unpacks_to(
        &format!("{}:latest", copied.display()),
        &tmp.path().join("bundle"),
        &root.join("examples/rootfs/final"),
    );
    let config = json(&run(Command::new(tool("skopeo"))
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci-archive:{}", tar.display()))));
    assert_eq!(config["config"]["Cmd"][0], "/app/run");
    assert_eq!(config["os"], "linux");
}

#[test]
fn registry_output_pushes_an_image_skopeo_pulls() {
    let t = Trees::new();
    let reg = strata_tests::servers::Registry::start();
    let image = format!("{}/strata/cli:v1", reg.host());
    let mut args = t.export_args(&format!(
        "type=registry,name={image},registry.insecure=true"
    ));
    args.extend(strs(&["--metadata-file"]));
    args.push(t.path("md.json").display().to_string());
    strata_ok(&t.store(), &args, &[]);
    let pushed = read_json(&t.path("md.json"))["containerimage.digest"].clone();
    let raw = run(Command::new(tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}")));
    assert_eq!(
        Digest::sha256_of(raw.as_bytes()).to_string(),
        pushed.as_str().unwrap()
    );
    let copied = t.path("pulled");
    run(Command::new(tool("skopeo"))
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:v1", copied.display())));
    assert_umoci_unpacks_to(
        &format!("{}:v1", copied.display()),
        &t.path("bundle"),
        &t.path("final"),
    );
}

#[tokio::test]
async fn unpack_into_the_local_store_and_canonical_names() {
    let t = Trees::new();
    let store = t.store();
    let metadata = t.path("metadata.json");
    let mut args = t.export_args("type=image,name=example.com/u:1,unpack=true,name-canonical=true");
    args.extend(strs(&["--progress", "quiet", "--metadata-file"]));
    args.push(metadata.display().to_string());
    let (out, _) = strata_ok(&store, &args, &[]);
    let digest = out.trim().to_string();
    let response = read_json(&metadata);

    // The chain is in strata's native snapshotter under the store, by chainID.
    let config: Value = {
        let d: Digest = response["containerimage.config.digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        read_json(&store.join("blobs/sha256").join(d.hex()))
    };
    let native =
        strata_snapshotter::NativeSnapshotter::open(store.join(".strata/snapshots/native"))
            .unwrap();
    let mut parent: Option<Digest> = None;
    for diff_id in config["rootfs"]["diff_ids"].as_array().unwrap() {
        let id = strata_oci::chain_id(parent.as_ref(), &diff_id.as_str().unwrap().parse().unwrap());
        let info = strata_snapshotter::Snapshotter::stat(&native, &id.to_string())
            .await
            .unwrap_or_else(|e| panic!("chain {id}: {e}"));
        assert_eq!(info.parent, parent.as_ref().map(Digest::to_string));
        parent = Some(id);
    }
    assert!(parent.is_some());

    // name-canonical: NAME and NAME@<digest>.
    let (images, _) = strata_ok(&store, &strs(&["images"]), &[]);
    assert!(images.contains("example.com/u:1 "), "{images}");
    assert!(
        images.contains(&format!("example.com/u:1@{digest}")),
        "{images}"
    );

    // --snapshotter is containerd's: a usage error without --containerd.
    let mut args = t.export_args("type=image,name=example.com/u:2,unpack=true");
    args.extend(strs(&["--snapshotter", "overlayfs"]));
    let out = strata(&store, &args, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--containerd"));
    // With --containerd, it needs --snapshot or unpack=true to be about something
    // (refused before containerd is contacted).
    let mut args = strs(&["--containerd", "/nonexistent/containerd.sock"]);
    args.extend(t.export_args("type=image,name=example.com/u:3"));
    args.extend(strs(&["--snapshotter", "native"]));
    let out = strata(&store, &args, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unpack=true"),
        "{out:?}"
    );
}

/// A rewrite that keeps a file's size and mtime (nanoseconds included; an edit followed
/// by `touch -r`) between two `--layer` directories is in the exported layer; with
/// `--fast-change-detection` (containerd's rule) it is not.
#[test]
fn a_rewrite_keeping_size_and_mtime_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    write(&lower.join("etc/app.conf"), "mode=fast\n", 0o644);
    write(&lower.join("etc/other"), "unchanged\n", 0o644);
    let conf = lower.join("etc/app.conf");
    run(Command::new("touch")
        .args(["-d", "2024-01-02 03:04:05.123456789"])
        .arg(&conf));
    copy_tree(&lower, &upper);
    fs::write(upper.join("etc/app.conf"), "mode=slow\n").unwrap();
    run(Command::new("touch")
        .arg("-r")
        .arg(&conf)
        .arg(upper.join("etc/app.conf")));
    let (l, u) = (
        fs::metadata(&conf).unwrap(),
        fs::metadata(upper.join("etc/app.conf")).unwrap(),
    );
    assert_eq!(
        (l.size(), l.mtime(), l.mtime_nsec()),
        (u.size(), u.mtime(), u.mtime_nsec())
    );
    assert_ne!(l.mtime_nsec(), 0);

    // Last, an exact export into the store the fast one used: the layer cached there
    // under containerd's rule is not reused.
    for (fast, expected, store) in [
        (false, "mode=slow\n", "exact"),
        (true, "mode=fast\n", "fast"),
        (false, "mode=slow\n", "fast"),
    ] {
        let name = format!("{store}-{}", if fast { "fast" } else { "exact" });
        let layout = tmp.path().join(format!("layout-{name}"));
        let mut args = strs(&["export", "--layer"]);
        args.push(lower.display().to_string());
        args.push("--layer".into());
        args.push(upper.display().to_string());
        if fast {
            args.push("--fast-change-detection".into());
        }
        args.push("-o".into());
        args.push(format!(
            "type=oci,tar=false,dest={},name=rewrite:v1",
            layout.display()
        ));
        strata_ok(&tmp.path().join(format!("store-{store}")), &args, &[]);
        let bundle = tmp.path().join(format!("bundle-{name}"));
        run(Command::new(tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/app.conf")).unwrap(),
            expected,
            "--fast-change-detection: {fast}"
        );
        if !fast {
            assert_same_tree(&bundle.join("rootfs"), &upper, Compare::default());
        }
    }
}
