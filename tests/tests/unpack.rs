//! End-to-end tests of `strata unpack NAME DIR`: a two-layer image of a tree holding
//! every kind of file (owners, odd modes, xattrs, hardlink groups, devices, FIFOs,
//! nanosecond mtimes, deletions across the layers) is exported into the store and
//! unpacked to a tree equal to the source, by strata and by `umoci unpack` alike, from
//! the local store and from containerd; an image umoci built unpacks as umoci unpacks
//! it; `--rootless` owns everything by the caller; bad input fails with one line and
//! leaves the target as it was.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use strata_content::{read_blob, write_blob, Image, ImageStore, LocalStore};
use strata_oci::{media_types, Descriptor, Digest};
use strata_tests::servers::Containerd;
use strata_tests::tree::{assert_same_mtimes, assert_same_tree, Compare};
use strata_tests::{run, strata_fails, strata_ok, tool, umoci_base};

const EVERYTHING: Compare = Compare {
    mtimes: true,
    xattrs: true,
    hardlinks: true,
};

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path")
}

/// Sets the mtime (and atime) of `path`, not following a symlink.
fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let ts = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = [ts, ts];
    // SAFETY: a valid NUL-terminated path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path(path).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

fn mknod(path: &Path, kind: libc::mode_t, mode: libc::mode_t, dev: libc::dev_t) {
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c_path(path).as_ptr(), kind | mode, dev) };
    assert_eq!(rc, 0, "mknod {}", path.display());
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
}

fn file(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry under `root` (the root too), deepest first.
fn entries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for c in fs::read_dir(&p).unwrap() {
                stack.push(c.unwrap().path());
            }
        }
        out.push(p);
    }
    out.reverse();
    out
}

/// Two full trees in `tmp`: `lower` with every kind of entry, and `upper`, a `cp -a`
/// of it with files and directories deleted, a directory replaced by a file, a
/// directory emptied and refilled, a file rewritten, and new entries (a hardlink
/// group among them, a file in a `0555` directory). Every mtime has nanoseconds.
fn two_trees(tmp: &Path) -> (PathBuf, PathBuf) {
    let lower = tmp.join("lower");
    dir(&lower, 0o755);
    file(&lower.join("etc/conf"), "key=value\n", 0o644);
    xattr::set(lower.join("etc/conf"), "user.note", b"hello\nworld").unwrap();
    xattr::set(lower.join("etc"), "user.dir", b"d").unwrap();
    dir(&lower.join("private"), 0o700);
    lchown(&lower.join("private"), 1000, 1000);
    file(&lower.join("private/key"), "secret", 0o600);
    lchown(&lower.join("private/key"), 1000, 1000);
    dir(&lower.join("tmp"), 0o1777);
    dir(&lower.join("shared"), 0o2775);
    lchown(&lower.join("shared"), 0, 50);
    file(&lower.join("bin/suid"), "#!/bin/sh\n", 0o4755);
    file(&lower.join("ro"), "read only", 0o444);
    file(&lower.join("odd"), "odd", 0o605);
    lchown(&lower.join("odd"), 123, 456);
    file(&lower.join("empty"), "", 0o644);
    let long = "d".repeat(80);
    file(
        &lower.join(format!("{long}/{long}/file-with-a-long-path")),
        "long",
        0o644,
    );
    fs::create_dir_all(lower.join("lib")).unwrap();
    symlink("../etc/conf", lower.join("lib/rel")).unwrap();
    symlink("/etc/conf", lower.join("abs")).unwrap();
    symlink("nowhere", lower.join("dangling")).unwrap();
    lchown(&lower.join("dangling"), 7, 8);
    file(&lower.join("hl/a"), "linked", 0o640);
    fs::hard_link(lower.join("hl/a"), lower.join("hl/b")).unwrap();
    fs::hard_link(lower.join("hl/a"), lower.join("hl/c")).unwrap();
    fs::create_dir_all(lower.join("run")).unwrap();
    mknod(&lower.join("run/fifo"), libc::S_IFIFO, 0o620, 0);
    fs::create_dir_all(lower.join("dev")).unwrap();
    mknod(
        &lower.join("dev/null"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 3),
    );
    mknod(
        &lower.join("dev/loopx"),
        libc::S_IFBLK,
        0o660,
        libc::makedev(7, 200),
    );
    file(&lower.join("gone/file"), "deleted later", 0o644);
    file(&lower.join("gone/kept"), "kept", 0o644);
    file(&lower.join("gone-dir/sub/x"), "x", 0o644);
    file(&lower.join("replaced/inside"), "i", 0o644);
    file(&lower.join("refilled/a"), "a", 0o644);
    file(&lower.join("refilled/b"), "b", 0o644);
    file(
        &lower.join("sealed/inner"),
        "in a read-only directory",
        0o644,
    );
    dir(&lower.join("sealed"), 0o555);
    for (i, p) in entries(&lower).iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64, 123_456_789 + i as i64);
    }

    let upper = tmp.join("upper");
    run(Command::new("cp").arg("-a").arg(&lower).arg(&upper));
    fs::remove_file(upper.join("gone/file")).unwrap();
    fs::remove_dir_all(upper.join("gone-dir")).unwrap();
    fs::remove_dir_all(upper.join("replaced")).unwrap();
    file(&upper.join("replaced"), "now a file", 0o600);
    fs::remove_dir_all(upper.join("refilled")).unwrap();
    file(&upper.join("refilled/c"), "c", 0o644);
    file(&upper.join("etc/conf"), "key=other\n", 0o644);
    xattr::set(upper.join("etc/conf"), "user.note", b"hello\nworld").unwrap();
    file(&upper.join("sealed/added"), "added by root", 0o644);
    file(&upper.join("hl2/x"), "second group", 0o644);
    fs::hard_link(upper.join("hl2/x"), upper.join("hl2/y")).unwrap();
    set_mtime(&upper.join("etc/conf"), 1_700_000_000, 999_999_999);
    set_mtime(&upper.join("hl2/x"), 1_700_000_001, 1);
    (lower, upper)
}

/// `strata export --layer lower --layer upper -o OUTPUT` with `global` options first.
fn export(store: &Path, global: &[&str], lower: &Path, upper: &Path, output: &str) {
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["export", "--progress", "quiet", "--layer"]);
    args.push(lower.to_str().unwrap());
    args.push("--layer");
    args.push(upper.to_str().unwrap());
    args.extend(["-o", output]);
    strata_ok(store, &args);
}

#[test]
fn an_unpacked_image_is_its_source_tree_and_what_umoci_unpacks() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = two_trees(tmp.path());
    let store = tmp.path().join("store");
    export(&store, &[], &lower, &upper, "type=image,name=every/kind:1");

    let out = tmp.path().join("out");
    let digest = strata_ok(&store, &["unpack", "every/kind:1", out.to_str().unwrap()]);
    assert!(digest.trim().starts_with("sha256:"), "{digest}");
    assert_same_tree(&upper, &out, EVERYTHING);
    assert_same_mtimes(&upper, &out);

    // The same image as an OCI layout, unpacked by umoci: the same tree.
    let layout = tmp.path().join("layout");
    export(
        &store,
        &[],
        &lower,
        &upper,
        &format!("type=oci,tar=false,dest={},name=kind", layout.display()),
    );
    let bundle = tmp.path().join("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--image"])
        .arg(format!("{}:kind", layout.display()))
        .arg(&bundle));
    assert_same_tree(&bundle.join("rootfs"), &out, EVERYTHING);
    assert_same_mtimes(&bundle.join("rootfs"), &out);

    // An existing empty directory is fine; --force replaces a non-empty one's content.
    let existing = tmp.path().join("existing");
    fs::create_dir(&existing).unwrap();
    strata_ok(
        &store,
        &["unpack", "every/kind:1", existing.to_str().unwrap()],
    );
    assert_same_tree(&upper, &existing, EVERYTHING);
    fs::write(existing.join("stray"), "not in the image").unwrap();
    strata_ok(
        &store,
        &[
            "unpack",
            "--force",
            "every/kind:1",
            existing.to_str().unwrap(),
        ],
    );
    assert_same_tree(&upper, &existing, EVERYTHING);
}

#[test]
fn rootless_owns_everything_by_the_caller_and_skips_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = two_trees(tmp.path());
    let store = tmp.path().join("store");
    export(&store, &[], &lower, &upper, "type=image,name=rootless:1");
    let out = tmp.path().join("out");
    strata_ok(
        &store,
        &["unpack", "--rootless", "rootless:1", out.to_str().unwrap()],
    );

    // What it should be: the source without its devices, every owner the caller's,
    // modes (set-id bits too) and mtimes as they were.
    let expected = tmp.path().join("expected");
    run(Command::new("cp").arg("-a").arg(&upper).arg(&expected));
    fs::remove_file(expected.join("dev/null")).unwrap();
    fs::remove_file(expected.join("dev/loopx")).unwrap();
    let dev = fs::symlink_metadata(upper.join("dev")).unwrap();
    set_mtime(&expected.join("dev"), dev.mtime(), dev.mtime_nsec());
    // SAFETY: geteuid/getegid have no conditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    for p in entries(&expected) {
        let md = fs::symlink_metadata(&p).unwrap();
        lchown(&p, uid, gid);
        if !md.file_type().is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(md.mode() & 0o7777)).unwrap();
        }
        set_mtime(&p, md.mtime(), md.mtime_nsec());
    }
    assert_same_tree(&expected, &out, EVERYTHING);
    assert_same_mtimes(&expected, &out);
    assert_eq!(fs::metadata(out.join("odd")).unwrap().uid(), uid);
}

/// `--rootless` by a caller who is not root (nobody, through `setpriv`): the store
/// and the target's parent are theirs; every file ends up theirs, with the image's
/// modes (set-id bits, read-only files, a `0555` directory the second layer adds a
/// file to), `user.` xattrs and mtimes, and no device nodes.
#[test]
fn rootless_works_for_a_caller_who_is_not_root() {
    const NOBODY: u32 = 65534;
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (lower, upper) = two_trees(tmp.path());
    let store = tmp.path().join("store");
    export(&store, &[], &lower, &upper, "type=image,name=nobody:1");
    let theirs = tmp.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(&store)
        .arg(&theirs));
    let out = theirs.join("rootfs");
    let ids = NOBODY.to_string();
    let result = Command::new(tool("setpriv"))
        .args(["--reuid", &ids, "--regid", &ids, "--clear-groups", "--"])
        .arg(strata_tests::strata_bin())
        .arg("--store")
        .arg(&store)
        .args(["unpack", "--rootless", "nobody:1"])
        .arg(&out)
        .env_remove("STRATA_CONTAINERD")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let expected = tmp.path().join("expected");
    run(Command::new("cp").arg("-a").arg(&upper).arg(&expected));
    fs::remove_file(expected.join("dev/null")).unwrap();
    fs::remove_file(expected.join("dev/loopx")).unwrap();
    let dev = fs::symlink_metadata(upper.join("dev")).unwrap();
    set_mtime(&expected.join("dev"), dev.mtime(), dev.mtime_nsec());
    for p in entries(&expected) {
        let md = fs::symlink_metadata(&p).unwrap();
        lchown(&p, NOBODY, NOBODY);
        if !md.file_type().is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(md.mode() & 0o7777)).unwrap();
        }
        set_mtime(&p, md.mtime(), md.mtime_nsec());
    }
    assert_same_tree(&expected, &out, EVERYTHING);
    assert_same_mtimes(&expected, &out);
}

#[test]
fn an_image_built_by_umoci_unpacks_as_umoci_unpacks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let base = umoci_base(tmp.path());
    let store = tmp.path().join("store");
    strata_ok(&store, &["pull", &base.oci_reference()]);
    let name = strata_ok(&store, &["images"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| *n != "NAME" && *n != "REF")
        .expect("the pulled image's record")
        .to_string();
    let out = tmp.path().join("out");
    strata_ok(&store, &["unpack", &name, out.to_str().unwrap()]);
    let bundle = tmp.path().join("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--image", &base.umoci_image()])
        .arg(&bundle));
    assert_same_tree(&bundle.join("rootfs"), &out, EVERYTHING);
    assert_same_mtimes(&bundle.join("rootfs"), &out);
    assert!(!out.join("etc/base-obsolete").exists());
}

#[test]
fn containerd_records_unpack_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = two_trees(tmp.path());
    let store = tmp.path().join("store");
    let ctd = Containerd::start();
    let socket = ctd.socket().to_str().unwrap().to_string();
    let global = ["--containerd", socket.as_str()];
    export(
        &store,
        &global,
        &lower,
        &upper,
        "type=image,name=ctd/kind:1",
    );
    let out = tmp.path().join("out");
    strata_ok(
        &store,
        &[
            "--containerd",
            &socket,
            "unpack",
            "ctd/kind:1",
            out.to_str().unwrap(),
        ],
    );
    assert_same_tree(&upper, &out, EVERYTHING);
    assert_same_mtimes(&upper, &out);
    let line = strata_fails(
        &store,
        &[
            "--containerd",
            &socket,
            "unpack",
            "ctd/missing:1",
            tmp.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(
        line.contains("ctd/missing:1") && line.contains("ctd/kind:1"),
        "{line}"
    );
    assert!(!tmp.path().join("none").exists());
}

/// Records `new_name` in the store at `store_dir`: the image `name` (its manifest, or
/// an index's first) with its last layer's diff_id replaced by the
/// digest of nothing. Returns the layer's digest and the two diff_ids.
async fn record_wrong_diff_id(store_dir: &Path, name: &str, new_name: &str) -> [String; 3] {
    let store = LocalStore::open(store_dir).await.unwrap();
    let image = store.get_image(name).await.unwrap();
    let json = |bytes: &[u8]| -> Value { serde_json::from_slice(bytes).unwrap() };
    let desc_of = |v: &Value| -> Descriptor { serde_json::from_value(v.clone()).unwrap() };
    let manifest_desc = if media_types::is_index(&image.target.media_type) {
        let index = json(&read_blob(&store, &image.target, 1 << 20).await.unwrap());
        desc_of(&index["manifests"][0])
    } else {
        image.target.clone()
    };
    let mut manifest = json(&read_blob(&store, &manifest_desc, 1 << 20).await.unwrap());
    let mut config = json(
        &read_blob(&store, &desc_of(&manifest["config"]), 1 << 20)
            .await
            .unwrap(),
    );
    let diff_ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
    let real = diff_ids.last().unwrap().as_str().unwrap().to_string();
    let wrong = Digest::sha256_of(b"").to_string();
    *diff_ids.last_mut().unwrap() = wrong.clone().into();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let put = |media_type: &str, value: &Value| {
        let bytes = serde_json::to_vec(value).unwrap();
        let desc = Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as u64);
        (bytes, desc)
    };
    let (config_bytes, config_desc) = put(media_types::OCI_CONFIG, &config);
    write_blob(
        &store,
        "crafted-config",
        &config_bytes,
        &config_desc,
        Default::default(),
    )
    .await
    .unwrap();
    manifest["config"] = serde_json::to_value(&config_desc).unwrap();
    let (manifest_bytes, manifest_desc) = put(media_types::OCI_MANIFEST, &manifest);
    write_blob(
        &store,
        "crafted-manifest",
        &manifest_bytes,
        &manifest_desc,
        Default::default(),
    )
    .await
    .unwrap();
    store
        .create_image(Image {
            name: new_name.to_string(),
            target: manifest_desc,
            labels: Default::default(),
            created_at: std::time::SystemTime::now(),
            updated_at: std::time::SystemTime::now(),
        })
        .await
        .unwrap();
    [layer, wrong, real]
}

#[tokio::test]
async fn bad_input_fails_with_one_line_and_leaves_the_target_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = two_trees(tmp.path());
    let store = tmp.path().join("store");
    export(&store, &[], &lower, &upper, "type=image,name=good:1");
    let new_dir = tmp.path().join("new/nested");
    let target = new_dir.to_str().unwrap();

    // An unknown name: the names there are.
    let line = strata_fails(&store, &["unpack", "nope:1", target]);
    assert!(line.contains("nope:1") && line.contains("good:1"), "{line}");
    // A platform the image lacks: the platforms it has.
    let line = strata_fails(
        &store,
        &["unpack", "--platform", "linux/s390x", "good:1", target],
    );
    assert!(line.contains("linux/s390x"), "{line}");
    let host = strata_oci::Platform::host();
    assert!(
        line.contains(&format!("{}/{}", host.os, host.architecture)),
        "{line}"
    );
    assert!(!tmp.path().join("new").exists());

    // A non-empty target is refused and left alone.
    let full = tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("mine"), "keep me").unwrap();
    let line = strata_fails(&store, &["unpack", "good:1", full.to_str().unwrap()]);
    assert!(
        line.contains("not empty") && line.contains("full"),
        "{line}"
    );
    assert_eq!(fs::read_to_string(full.join("mine")).unwrap(), "keep me");
    assert_eq!(fs::read_dir(&full).unwrap().count(), 1);
    // A file as the target.
    let line = strata_fails(
        &store,
        &["unpack", "good:1", full.join("mine").to_str().unwrap()],
    );
    assert!(line.contains("not a directory"), "{line}");

    // A layer whose content is not its diff_id: named with both digests, after the
    // layers below were written; what was written is removed again.
    let [layer, wrong, real] = record_wrong_diff_id(&store, "good:1", "bad:1").await;
    let line = strata_fails(&store, &["unpack", "bad:1", target]);
    for part in [&layer, &wrong, &real] {
        assert!(line.contains(part.as_str()), "{part} not in {line}");
    }
    assert!(
        !tmp.path().join("new").exists(),
        "a created target is removed"
    );
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o710)).unwrap();
    set_mtime(&empty, 1_234_567_890, 42);
    strata_fails(&store, &["unpack", "bad:1", empty.to_str().unwrap()]);
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "left empty");
    let md = fs::metadata(&empty).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.mtime(), md.mtime_nsec()),
        (0o710, 1_234_567_890, 42)
    );
}
