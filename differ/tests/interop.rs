//! Interop with a tool nobody here wrote (umoci): strata's layers unpack with
//! `umoci unpack` to the tree they were computed from, and umoci's layers applied by
//! strata give the tree `umoci unpack` gives.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use strata_content::{write_blob, ContentStore};
use strata_differ::{Applier, CompareOptions, Comparer, WalkingDiffer};
use strata_oci::{media_types, Descriptor, Digest};
use strata_snapshotter::Mount;

fn umoci(args: &[&str]) {
    let out = Command::new("umoci")
        .args(args)
        .output()
        .expect("umoci is not installed: install it (e.g. `apt-get install umoci`) to run the interop tests");
    assert!(
        out.status.success(),
        "umoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lower_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("var/cache/apt")).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/conf.d/a"), b"a=1\n").unwrap();
    fs::write(root.join("usr/bin/tool"), vec![0x7fu8; 40_000]).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    symlink("../etc/passwd", root.join("usr/passwd-link")).unwrap();
    fs::write(root.join("var/cache/apt/pkg1"), b"p1").unwrap();
    fs::write(root.join("var/cache/apt/pkg2"), b"p2").unwrap();
    let long = format!("usr/{}", "l".repeat(140));
    fs::write(root.join(&long), b"long").unwrap();
    xattr::set(root.join("etc/passwd"), "user.origin", b"strata").unwrap();
    std::os::unix::fs::chown(root.join("etc/conf.d/a"), Some(1000), Some(3_000_000)).unwrap();
    nix::unistd::mkfifo(
        &root.join("var/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    for p in [
        "etc/passwd",
        "etc/conf.d/a",
        "usr/bin/tool",
        &long,
        "var/fifo",
    ] {
        set_mtime(&root.join(p), 1_650_000_000, 123_456_789);
    }
    fix_dir_times(root);
}

/// Gives every directory under `root` a fixed mtime (after its children exist).
fn fix_dir_times(root: &Path) {
    fn visit(p: &Path) {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                visit(&e.path());
                set_mtime(&e.path(), 1_650_000_001, 5);
            }
        }
    }
    visit(root);
}

fn change_tree(root: &Path) {
    fs::remove_file(root.join("etc/conf.d/a")).unwrap();
    fs::write(root.join("etc/conf.d/b"), b"b=2\n").unwrap();
    fs::remove_dir_all(root.join("var/cache/apt")).unwrap();
    fs::create_dir(root.join("var/cache/apt")).unwrap(); // emptied and recreated
    fs::write(root.join("var/cache/apt/fresh"), b"fresh").unwrap();
    fs::remove_file(root.join("usr/passwd-link")).unwrap();
    fs::create_dir(root.join("usr/passwd-link")).unwrap(); // symlink → dir
    fs::write(root.join("usr/bin/tool2"), b"now separate").unwrap();
    fs::remove_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("etc/conf.d"), b"dir to file").unwrap();
    fix_dir_times(root);
}

fn write_json_blob(layout: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

#[test]
fn umoci_unpacks_strata_layers_to_the_same_tree() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    lower_tree(&lower);
    copy_tree(&lower, &upper);
    change_tree(&upper);

    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let opts = CompareOptions::default();
    let base = rt
        .block_on(differ.compare(&[], &[Mount::bind(&lower, true)], &opts))
        .unwrap();
    let diff = rt
        .block_on(differ.compare(
            &[Mount::bind(&lower, true)],
            &[Mount::bind(&upper, true)],
            &opts,
        ))
        .unwrap();

    let layout = tmp.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut layers = Vec::new();
    for blob in [&base, &diff] {
        let bytes = rt
            .block_on(strata_content::read_blob(
                &*store,
                &blob.descriptor,
                1 << 30,
            ))
            .unwrap();
        write_json_blob(&layout, &bytes);
        layers.push(serde_json::json!({
            "mediaType": blob.descriptor.media_type,
            "digest": blob.descriptor.digest.to_string(),
            "size": blob.descriptor.size,
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [base.diff_id.to_string(), diff.diff_id.to_string()]},
    }))
    .unwrap();
    let config_digest = write_json_blob(&layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let manifest_digest = write_json_blob(&layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_types::OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "t"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let bundle = tmp.path().join("bundle");
    umoci(&[
        "unpack",
        "--image",
        &format!("{}:t", layout.display()),
        &bundle.to_string_lossy(),
    ]);
    assert_same_tree(&upper, &bundle.join("rootfs"));
}

async fn apply_layout_layers(
    differ: &WalkingDiffer,
    store: &Arc<dyn ContentStore>,
    layout: &Path,
    target: &Path,
) -> usize {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        let d = Digest::parse(d).unwrap();
        fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap()
    };
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(manifest_digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        let bytes = blob(digest);
        let desc = Descriptor::new(
            layer["mediaType"].as_str().unwrap(),
            Digest::parse(digest).unwrap(),
            bytes.len() as u64,
        );
        write_blob(&**store, digest, &bytes, &desc, Default::default())
            .await
            .unwrap();
        differ
            .apply(&desc, &[Mount::bind(target, false)])
            .await
            .unwrap();
    }
    layers.len()
}

#[test]
fn strata_applies_umoci_layers_to_the_tree_umoci_unpacks() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = format!("{}:t", layout.display());
    let b = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    umoci(&["init", "--layout", &layout.to_string_lossy()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, &b("b1")]);
    lower_tree(&tmp.path().join("b1/rootfs"));
    umoci(&["repack", "--image", &image, &b("b1")]);
    umoci(&["unpack", "--image", &image, &b("b2")]);
    change_tree(&tmp.path().join("b2/rootfs"));
    umoci(&["repack", "--image", &image, &b("b2")]);
    umoci(&["unpack", "--image", &image, &b("b3")]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let n = rt.block_on(apply_layout_layers(&differ, &store, &layout, &target));
    assert!(n >= 2, "umoci wrote {n} layers");
    assert_same_tree(&tmp.path().join("b3/rootfs"), &target);
}

#[test]
fn strata_applies_a_gnu_tar_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    let long = format!("d/e/{}", "g".repeat(150)); // a GNU 'L' long-name header
    fs::write(src.join(&long), b"long").unwrap();
    fs::write(src.join("d/f"), vec![5u8; 3000]).unwrap();
    symlink(format!("../{}", "t".repeat(120)), src.join("d/l")).unwrap(); // 'K' header
    fs::hard_link(src.join("d/f"), src.join("hl")).unwrap();
    std::os::unix::fs::chown(src.join("d/f"), Some(1234), Some(5678)).unwrap();
    for p in [long.as_str(), "d/f", "d/l", "d/e", "d"] {
        set_mtime(&src.join(p), 1_600_000_000, 0); // GNU format keeps whole seconds
    }
    let layer = tmp.path().join("layer.tar");
    let out = Command::new("tar")
        .args(["--format=gnu", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .output()
        .expect("GNU tar is not installed: install it to run this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let bytes = fs::read(&layer).unwrap();
    let desc = Descriptor::new(
        media_types::OCI_LAYER,
        Digest::sha256_of(&bytes),
        bytes.len() as u64,
    );
    rt.block_on(write_blob(
        &*store,
        "gnu",
        &bytes,
        &desc,
        Default::default(),
    ))
    .unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let diff_id = rt
        .block_on(differ.apply(&desc, &[Mount::bind(&target, false)]))
        .unwrap();
    assert_eq!(
        diff_id, desc.digest,
        "an uncompressed layer's diffID is its digest"
    );
    assert_same_tree(&src, &target);
}
