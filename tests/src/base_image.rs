//! Base images "nobody here wrote": a tiny runnable image built by real tools (umoci
//! from Debian's static busybox), then moved by skopeo, docker and ctr into every form
//! `strata export --base` reads, so tests see what those tools really write.
//!
//! The base is one image, the same bytes in every form and every run (fixed mtimes,
//! fixed timestamps, so its manifest digest does not change between runs):
//!
//! | layer | created_by ([`BASE_HISTORY`]) | adds |
//! |---|---|---|
//! | 1 | `strata-tests: busybox and /etc` | `/bin/busybox` (static, 0755), `/bin/sh -> busybox`, `/etc/base-release` ([`BASE_RELEASE`]), `/etc/base-secret` (0600), `/etc/os-release -> base-release`, `/etc/base-obsolete` |
//! | 2 | `strata-tests: /usr/share/base` | `/usr/share/base/{a.txt,b.txt,docs/readme}`, a whiteout of `/etc/base-obsolete` |
//! | — | `strata-tests: config` (empty layer) | the config: env `PATH=/bin` and [`BASE_ENV`], entrypoint `/bin/busybox`, cmd `cat /etc/base-release`, user `0:0`, working dir `/usr/share/base`, label [`BASE_LABEL`], exposed port `8080/tcp` |
//!
//! Every file is owned by 0:0 and has mtime [`BASE_CREATED`]. Running the image with
//! no arguments prints [`BASE_RELEASE`]. [`base_rootfs`] is the merged tree a
//! container of it sees (before the runtime adds `/dev`, `/proc`, …).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::servers::{Containerd, Dockerd};
use crate::{run, tool};

/// The contents of `/etc/base-release` in the base, what running it prints.
pub const BASE_RELEASE: &str = "strata test base 1\n";
/// The base's creation time, that of every history entry and the mtime of every file.
pub const BASE_CREATED: &str = "2020-09-13T12:26:40Z";
/// [`BASE_CREATED`] in seconds since the epoch.
const BASE_MTIME: i64 = 1_600_000_000;
/// The `created_by` of the base's history entries, oldest first; the last is the
/// config change (an empty layer), the others one layer each.
pub const BASE_HISTORY: [&str; 3] = [
    "strata-tests: busybox and /etc",
    "strata-tests: /usr/share/base",
    "strata-tests: config",
];
/// The label (key, value) in the base's config.
pub const BASE_LABEL: (&str, &str) = ("org.strata.test.base", "1");
/// An environment variable (`KEY=value`) in the base's config besides `PATH=/bin`.
pub const BASE_ENV: &str = "STRATA_BASE=1";
/// The tag of the base in the layouts [`umoci_base`] writes.
pub const BASE_TAG: &str = "base";

/// An OCI image layout holding the base under one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseLayout {
    /// The layout directory (with `oci-layout`, `index.json` and `blobs/`).
    pub layout: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`) of the base in it.
    pub tag: String,
}

impl BaseLayout {
    /// `oci:<layout>:<tag>`, the image as skopeo names it.
    pub fn oci_reference(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }

    /// `<layout>:<tag>`, the image as umoci's `--image` names it.
    pub fn umoci_image(&self) -> String {
        format!("{}:{}", self.layout.display(), self.tag)
    }

    /// The digest (`sha256:…`) of the base's manifest, from the layout's index.json
    /// entry tagged [`BaseLayout::tag`]. Panics if there is none.
    pub fn manifest_digest(&self) -> String {
        let index = self.read_json(&self.layout.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *self.tag)
            .unwrap_or_else(|| panic!("no manifest tagged {} in {index}", self.tag));
        entry["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("index entry without digest: {entry}"))
            .to_string()
    }

    /// The digests of the base's layer blobs (gzip), bottom first, from its manifest.
    pub fn layer_digests(&self) -> Vec<String> {
        let manifest = self.read_blob_json(&self.manifest_digest());
        manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|layer| layer["digest"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The base's diff IDs (digests of the uncompressed layers), bottom first, from its
    /// config.
    pub fn diff_ids(&self) -> Vec<String> {
        let manifest = self.read_blob_json(&self.manifest_digest());
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("manifest without config digest: {manifest}"))
            .to_string();
        let config = self.read_blob_json(&config_digest);
        config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d.as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn read_blob_json(&self, digest: &str) -> serde_json::Value {
        let (algorithm, hex) = digest
            .split_once(':')
            .unwrap_or_else(|| panic!("not a digest: {digest}"));
        self.read_json(&self.layout.join("blobs").join(algorithm).join(hex))
    }

    fn read_json(&self, path: &Path) -> serde_json::Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// A name unique in this machine's run of tests, `<prefix>-<pid>-<n>`: for image
/// names, repositories, namespaces and container ids of one test.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The base's layout and merged tree, built once per test process.
struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("bundle").join("rootfs")
    }
}

static BUILT: OnceLock<Built> = OnceLock::new();

/// Removes the per-process build when the test binary exits (statics are not dropped).
extern "C" fn remove_built() {
    if let Some(built) = BUILT.get() {
        let _ = std::fs::remove_dir_all(built.dir.path());
    }
}

fn built() -> &'static Built {
    BUILT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("strata-base-")
            .tempdir()
            .expect("temp dir for the base image");
        let built = Built { dir };
        build_with_umoci(&built.layout(), &built.dir.path().join("bundle"));
        // SAFETY: registering a plain function with atexit(3) has no conditions.
        unsafe { libc::atexit(remove_built) };
        built
    })
}

/// The root filesystem of the base with its layers applied (what umoci built the
/// layers from), to compare unpacked or exported trees with
/// ([`crate::tree::assert_same_tree`]). Built once per process; do not modify it.
pub fn base_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| built().rootfs())
}

/// Writes the base as an OCI layout built by umoci at `dir/base` (which must not
/// exist) and returns it, tagged [`BASE_TAG`]. umoci builds it once per process
/// (`init`, `new`, `unpack`, two `repack`s, `config`, `gc`); each call copies that
/// layout.
pub fn umoci_base(dir: &Path) -> BaseLayout {
    let layout = dir.join("base");
    run(Command::new("cp")
        .arg("-a")
        .arg("--no-target-directory")
        .arg(built().layout())
        .arg(&layout));
    BaseLayout {
        layout,
        tag: BASE_TAG.to_string(),
    }
}

fn build_with_umoci(layout: &Path, bundle: &Path) {
    let umoci = || Command::new(tool("umoci"));
    let image = format!("{}:{BASE_TAG}", layout.display());
    // As root, umoci keeps real owners (root); otherwise it maps the user to 0:0.
    // SAFETY: geteuid(2) has no conditions.
    let rootless: &[&str] = if unsafe { libc::geteuid() } == 0 {
        &[]
    } else {
        &["--rootless"]
    };
    run(umoci().args(["init", "--layout"]).arg(layout));
    run(umoci().args(["new", "--image", &image]));
    run(umoci()
        .arg("unpack")
        .args(rootless)
        .args(["--image", &image])
        .arg(bundle));
    let rootfs = bundle.join("rootfs");

    write_layer_one(&rootfs);
    set_mtimes(&rootfs);
    run(umoci()
        .arg("repack")
        .arg("--refresh-bundle")
        .args(history_flags(BASE_HISTORY[0]))
        .args(["--image", &image])
        .arg(bundle));

    write_layer_two(&rootfs);
    set_mtimes(&rootfs);
    run(umoci()
        .arg("repack")
        .arg("--refresh-bundle")
        .args(history_flags(BASE_HISTORY[1]))
        .args(["--image", &image])
        .arg(bundle));

    let label = format!("{}={}", BASE_LABEL.0, BASE_LABEL.1);
    run(umoci()
        .arg("config")
        .args(history_flags(BASE_HISTORY[2]))
        .args(["--created", BASE_CREATED, "--author", "strata-tests"])
        .args(["--config.env", "PATH=/bin", "--config.env", BASE_ENV])
        .args(["--config.entrypoint", "/bin/busybox"])
        .args(["--config.cmd", "cat", "--config.cmd", "/etc/base-release"])
        .args([
            "--config.user",
            "0:0",
            "--config.workingdir",
            "/usr/share/base",
        ])
        .args([
            "--config.label",
            &label,
            "--config.exposedports",
            "8080/tcp",
        ])
        .args(["--image", &image]));
    run(umoci().args(["gc", "--layout"]).arg(layout));
}

fn history_flags(created_by: &str) -> Vec<String> {
    [
        "--history.created",
        BASE_CREATED,
        "--history.author",
        "strata-tests",
        "--history.created_by",
        created_by,
    ]
    .map(String::from)
    .to_vec()
}

fn write_layer_one(rootfs: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let busybox = PathBuf::from("/bin/busybox");
    let elf = std::fs::read(&busybox)
        .unwrap_or_else(|e| panic!("/bin/busybox: {e}; run `apt-get install -y busybox-static`"));
    assert!(
        !has_interpreter(&elf),
        "/bin/busybox is linked dynamically (Debian's busybox); the base image needs the \
         static one: run `apt-get install -y busybox-static`"
    );
    let file = |rel: &str, contents: &str, mode: u32| {
        let path = rootfs.join(rel);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    };
    for dir in ["bin", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("mkdir in the base rootfs");
    }
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    std::fs::set_permissions(
        rootfs.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod busybox");
    symlink("busybox", rootfs.join("bin/sh")).expect("symlink /bin/sh");
    file("etc/base-release", BASE_RELEASE, 0o644);
    file("etc/base-secret", "not for everyone\n", 0o600);
    file("etc/base-obsolete", "removed by layer 2\n", 0o644);
    symlink("base-release", rootfs.join("etc/os-release")).expect("symlink /etc/os-release");
}

/// Whether the 64-bit little-endian ELF `elf` names a program interpreter (is linked
/// dynamically); false for anything else.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..6] != b"\x7fELF\x02\x01" {
        return false;
    }
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let phoff = elf
        .get(0x20..0x28)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|o| usize::try_from(o).ok());
    let (Some(phoff), Some(entsize), Some(count)) = (phoff, u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count)).any(|i| {
        let at = phoff + i * usize::from(entsize);
        elf.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .is_some_and(|b| u32::from_le_bytes(b) == PT_INTERP)
    })
}

fn write_layer_two(rootfs: &Path) {
    std::fs::remove_file(rootfs.join("etc/base-obsolete")).expect("rm /etc/base-obsolete");
    std::fs::create_dir_all(rootfs.join("usr/share/base/docs")).expect("mkdir /usr/share/base");
    for (rel, contents) in [
        ("usr/share/base/a.txt", "a\n"),
        ("usr/share/base/b.txt", "b\n"),
        ("usr/share/base/docs/readme", "the base's docs\n"),
    ] {
        std::fs::write(rootfs.join(rel), contents).expect("write a base file");
    }
}

/// Gives every entry under `root` (itself included, symlinks not followed) the mtime
/// [`BASE_MTIME`], so the layers are the same bytes in every run.
fn set_mtimes(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let md = std::fs::symlink_metadata(&path).expect("stat a base file");
        if md.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read a base dir") {
                stack.push(entry.expect("dir entry").path());
            }
        }
        let time = libc::timespec {
            tv_sec: BASE_MTIME,
            tv_nsec: 0,
        };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .expect("a path without NUL");
        // SAFETY: c_path is NUL-terminated and times points at two timespecs, both
        // alive for the call.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                [time, time].as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(
            rc,
            0,
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Pushes the base to the registry at `registry` (`host:port`, plain HTTP, such as
/// [`crate::servers::Registry::host`]) as `repo_tag` (`repository:tag`) with
/// `skopeo copy --dest-tls-verify=false`, and returns the pushed reference
/// `registry/repo_tag`. skopeo keeps the OCI manifest, so its digest is the layout's.
pub fn push_base(base: &BaseLayout, registry: &str, repo_tag: &str) -> String {
    let reference = format!("{registry}/{repo_tag}");
    run(Command::new(tool("skopeo"))
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
        .arg(base.oci_reference())
        .arg(format!("docker://{reference}")));
    reference
}

/// Writes the base as an OCI archive (a tar of an OCI layout) at `archive` with
/// `skopeo copy … oci-archive:<archive>:<reference>`; `reference` becomes the image's
/// `org.opencontainers.image.ref.name` (a tag, or a full name).
pub fn oci_archive_base(base: &BaseLayout, archive: &Path, reference: &str) {
    run(Command::new(tool("skopeo"))
        .args(["copy", "--insecure-policy"])
        .arg(base.oci_reference())
        .arg(format!("oci-archive:{}:{reference}", archive.display())));
}

/// Loads the base into `dockerd` as `name` (`repository:tag`): skopeo writes it as a
/// docker archive, then `docker load` reads that. Returns `name`.
pub fn docker_load_base(base: &BaseLayout, dockerd: &Dockerd, name: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir for a docker archive");
    let archive = dir.path().join("base.docker.tar");
    run(Command::new(tool("skopeo"))
        .args(["copy", "--insecure-policy"])
        .arg(base.oci_reference())
        .arg(format!("docker-archive:{}:{name}", archive.display())));
    dockerd.docker(&["load", "--input", &archive.to_string_lossy()]);
    name.to_string()
}

/// Loads the base into `dockerd` as `name` ([`docker_load_base`]) and returns the
/// path of `docker save name` written in `dir`: what a real Docker engine writes.
/// docker.io 20.10 writes the legacy docker archive: `manifest.json` (one entry:
/// `Config`, `RepoTags`, `Layers`), `<config-digest-hex>.json` (the image config),
/// `<id>/layer.tar` (+ `VERSION`, `json`) per layer, uncompressed, and `repositories`.
/// The image stays in `dockerd`.
pub fn docker_save_base(base: &BaseLayout, dockerd: &Dockerd, dir: &Path, name: &str) -> PathBuf {
    docker_load_base(base, dockerd, name);
    let file_name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let saved = dir.join(format!("{file_name}.docker-save.tar"));
    dockerd.docker(&["save", "--output", &saved.to_string_lossy(), name]);
    saved
}

/// Imports the base into `containerd` in namespace `namespace` as `name`
/// (`repository:tag`) and returns `name`: skopeo writes an OCI archive with the tag
/// as its ref name, then `ctr images import --base-name <repository> --snapshotter
/// <snapshotter>` reads it. ctr (containerd 1.6) also unpacks it into `snapshotter`
/// (`"native"`, as strata's containerd tests use, or `"overlayfs"`), so
/// `ctr run --snapshotter <snapshotter>` works at once and the image's two layers are
/// committed snapshots keyed by chain ID there. Panics if `name` has no tag.
pub fn containerd_base(
    base: &BaseLayout,
    containerd: &Containerd,
    namespace: &str,
    name: &str,
    snapshotter: &str,
) -> String {
    let (repository, tag) = split_tag(name)
        .unwrap_or_else(|| panic!("containerd_base needs a repository:tag name, not {name}"));
    let dir = tempfile::tempdir().expect("temp dir for an OCI archive");
    let archive = dir.path().join("base.oci.tar");
    oci_archive_base(base, &archive, tag);
    containerd.ctr(&[
        "-n",
        namespace,
        "images",
        "import",
        "--base-name",
        repository,
        "--snapshotter",
        snapshotter,
        &archive.to_string_lossy(),
    ]);
    name.to_string()
}

/// `("repo", "tag")` of `repo:tag` (a `:` after the last `/`, so `host:port/repo`
/// without a tag has none).
fn split_tag(name: &str) -> Option<(&str, &str)> {
    let (repository, tag) = name.rsplit_once(':')?;
    (!tag.contains('/') && !repository.is_empty() && !tag.is_empty()).then_some((repository, tag))
}
