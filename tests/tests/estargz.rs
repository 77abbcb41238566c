//! `compression=estargz`: every layer strata writes verifies with stargz-snapshotter's
//! own reader (the `estargz` Go package BuildKit and the snapshotter use: the TOC
//! against the layer's `containerd.io/snapshot/stargz/toc.digest` annotation, then
//! every chunk's digest), the config's diff_ids are the digests of the decompressed
//! blobs, the same trees give the same image with one or two jobs, umoci and containerd
//! (`ctr images import` + `mount`) unpack the image to the source tree, prioritized
//! files come before the prefetch landmark where the reader looks for it, and Docker
//! media types are refused naming the option.
//!
//! Needs Go and Debian's golang-github-containerd-stargz-snapshotter-dev (the verifier
//! in `tests/go/estargz` is built against it; scripts/test.sh installs both).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use strata_oci::Digest;
use strata_tests::servers::Containerd;
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{run, strata_command, tool, umoci_base};

/// The payload chunk size the test asks for: small, so files span several chunks.
const CHUNK: usize = 64 * 1024;

/// Builds the Go verifier (GOPATH mode against the Debian package) into `dir`.
fn verifier(dir: &Path) -> PathBuf {
    let library =
        Path::new("/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz");
    assert!(
        library.is_dir(),
        "the estargz Go library is not installed: run `apt-get install -y golang-go golang-github-containerd-stargz-snapshotter-dev` (scripts/test.sh does)"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/estargz");
    let bin = dir.join("estargz-verify");
    let gopath = dir.join("gopath");
    run(Command::new(tool("go"))
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display())));
    bin
}

/// Deterministic bytes that compress like real files.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("line {} of {seed}: {}\n", out.len(), x % 1000).as_bytes());
    }
    out.truncate(len);
    out
}

/// Three trees: the shipped examples' base and app, then app plus files of several
/// chunks (one exactly a chunk, one a byte more), an empty file, a hardlink and a
/// symlink.
fn trees(root: &Path) -> Vec<PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rootfs");
    let base = root.join("base");
    let app = root.join("app");
    let big = root.join("big");
    run(Command::new("cp")
        .arg("-a")
        .arg(examples.join("base"))
        .arg(&base));
    run(Command::new("cp")
        .arg("-a")
        .arg(examples.join("app"))
        .arg(&app));
    run(Command::new("cp").arg("-a").arg(&app).arg(&big));
    let data = big.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("many-chunks.txt"), payload(5 * CHUNK + 1234, 1)).unwrap();
    fs::write(data.join("one-chunk.txt"), payload(CHUNK, 2)).unwrap();
    fs::write(data.join("chunk-and-a-byte.txt"), payload(CHUNK + 1, 3)).unwrap();
    fs::write(data.join("empty"), b"").unwrap();
    fs::hard_link(data.join("many-chunks.txt"), data.join("hardlink.txt")).unwrap();
    symlink("many-chunks.txt", data.join("link")).unwrap();
    fs::set_permissions(
        data.join("one-chunk.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    vec![base, app, big]
}

/// Exports `layers` as an OCI layout at `dest` with eStargz, 64 KiB chunks and the
/// `extra` exporter options (each with a leading comma); returns the manifest.
fn export(store: &Path, layers: &[PathBuf], dest: &Path, jobs: &str, extra: &str) -> Value {
    let mut cmd = strata_command(store);
    cmd.arg("export").args(["--jobs", jobs]);
    for l in layers {
        cmd.arg("--layer").arg(l);
    }
    cmd.arg("-o").arg(format!(
        "type=oci,tar=false,dest={},name=example.com/strata/estargz:v1,compression=estargz,estargz-chunk-size={CHUNK}{extra}",
        dest.display()
    ));
    run(&mut cmd);
    let index = read_json(&dest.join("index.json"));
    blob_json(dest, index["manifests"][0]["digest"].as_str().unwrap())
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    read_json(&blob_path(layout, digest))
}

/// `gzip -dc` of `blob`.
fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool("gzip"))
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = blob.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

/// Whether a file under `store` holds `needle`.
fn store_mentions(store: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
        }
    }
    false
}

/// The entry names of a tar of short ASCII names (PAX records skipped), in order.
fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let header = &tar[at..at + 512];
        let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        if header[156] != b'x' {
            names.push(String::from_utf8_lossy(&header[..end]).into_owned());
        }
        let size = std::str::from_utf8(&header[124..136])
            .unwrap()
            .trim_matches(|c: char| c == '\0' || c == ' ');
        let size = u64::from_str_radix(size, 8).unwrap() as usize;
        at += 512 + size.div_ceil(512) * 512;
    }
    names
}

/// Checks every layer of `manifest` in `layout`: eStargz by the Go reader (TOC digest
/// from the annotation, every chunk), its config diffID the digest of the decompressed
/// blob, its uncompressed-size annotation that blob's size. Returns the number of
/// `chunk` TOC entries (chunks past a file's first).
fn assert_estargz_layers(layout: &Path, manifest: &Value, verify: &Path) -> usize {
    let config = blob_json(layout, manifest["config"]["digest"].as_str().unwrap());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let descs = manifest["layers"].as_array().unwrap();
    assert_eq!(descs.len(), diff_ids.len());
    let mut chunk_entries = 0;
    for (desc, diff_id) in descs.iter().zip(diff_ids) {
        assert_eq!(
            desc["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let toc = desc["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no TOC digest annotation on {desc}"));
        let blob = blob_path(layout, desc["digest"].as_str().unwrap());
        let out = run(Command::new(verify).arg(&blob).arg(toc));
        assert!(out.starts_with("ok entries="), "{out}");

        let tar = gunzip(&fs::read(&blob).unwrap());
        assert_eq!(diff_id.as_str().unwrap(), Digest::sha256_of(&tar).as_str());
        assert_eq!(
            desc["annotations"]["io.containers.estargz.uncompressed-size"],
            tar.len().to_string()
        );
        chunk_entries += String::from_utf8_lossy(&tar)
            .matches("\"type\": \"chunk\"")
            .count();
    }
    chunk_entries
}

#[test]
fn estargz_layers_verify_with_the_stargz_library_and_unpack_to_the_tree() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-estargz-")
        .tempdir()
        .unwrap();
    let verify = verifier(tmp.path());
    let layers = trees(tmp.path());
    let layout = tmp.path().join("layout");
    let manifest = export(&tmp.path().join("store"), &layers, &layout, "2", "");

    let descs = manifest["layers"].as_array().unwrap();
    assert_eq!(descs.len(), 3);
    let chunk_entries = assert_estargz_layers(&layout, &manifest, &verify);
    // many-chunks (5 more), chunk-and-a-byte (1 more); hardlink.txt is a link.
    assert_eq!(chunk_entries, 6, "chunks past the first of each file");

    // A tampered TOC digest is refused by the verifier: the check above can fail.
    let first = blob_path(&layout, descs[0]["digest"].as_str().unwrap());
    let wrong = Command::new(&verify)
        .arg(&first)
        .arg(Digest::sha256_of(b"not the toc").as_str())
        .output()
        .unwrap();
    assert!(!wrong.status.success());

    // One job or two: the same layers (the config's history has the export's time).
    let again = tmp.path().join("layout-jobs1");
    let manifest1 = export(&tmp.path().join("store-jobs1"), &layers, &again, "1", "");
    assert_eq!(manifest1["layers"], manifest["layers"]);

    // The default chunk size in the same store: the big layer is not the cached
    // 64 KiB-chunk blob.
    let default_chunks = tmp.path().join("layout-default");
    let mut cmd = strata_command(&tmp.path().join("store"));
    cmd.arg("export");
    for l in &layers {
        cmd.arg("--layer").arg(l);
    }
    cmd.arg("-o").arg(format!(
        "type=oci,tar=false,dest={},name=example.com/strata/estargz:v1,compression=estargz",
        default_chunks.display()
    ));
    run(&mut cmd);
    let index = read_json(&default_chunks.join("index.json"));
    let other = blob_json(
        &default_chunks,
        index["manifests"][0]["digest"].as_str().unwrap(),
    );
    assert_ne!(
        other["layers"][2]["digest"],
        manifest["layers"][2]["digest"]
    );
    assert_eq!(assert_estargz_layers(&default_chunks, &other, &verify), 0);

    let bundle = tmp.path().join("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    assert_same_tree(&bundle.join("rootfs"), &layers[2], Compare::default());
}

#[test]
fn containerd_imports_and_unpacks_an_estargz_image_to_the_tree() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-estargz-ctr-")
        .tempdir()
        .unwrap();
    let layers = trees(tmp.path());
    let tar = tmp.path().join("image.tar");
    let mut cmd = strata_command(&tmp.path().join("store"));
    cmd.arg("export");
    for l in &layers {
        cmd.arg("--layer").arg(l);
    }
    cmd.arg("-o").arg(format!(
        "type=oci,dest={},name=example.com/strata/estargz:v1,compression=estargz,estargz-chunk-size={CHUNK}",
        tar.display()
    ));
    run(&mut cmd);

    // containerd reads the layers as the gzip they are (its own differ, not the
    // stargz snapshotter): imported complete, unpacked, the rootfs is the last tree.
    Containerd::start().assert_imports_as_tree(
        &tar,
        "example.com/strata/estargz:v1",
        &tmp.path().join("ctr-mount"),
        &layers[2],
    );
}

#[test]
fn prioritized_files_come_before_the_prefetch_landmark_in_each_layer() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-estargz-prefetch-")
        .tempdir()
        .unwrap();
    let verify = verifier(tmp.path());
    let layers = trees(tmp.path());
    let layout = tmp.path().join("layout");
    // As `ctr-remote optimize` records them: from the root, in access order; a name in
    // no layer is ignored.
    let files = [
        "/bin/hello",
        "data/chunk-and-a-byte.txt",
        "./data/many-chunks.txt",
        "etc/absent",
    ];
    let option = format!(",estargz-prioritized-files={}", files.join(":"));
    let manifest = export(&tmp.path().join("store"), &layers, &layout, "2", &option);
    assert_estargz_layers(&layout, &manifest, &verify);
    let mut seen = Vec::new();
    for desc in manifest["layers"].as_array().unwrap() {
        let blob = blob_path(&layout, desc["digest"].as_str().unwrap());
        let toc = desc["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .unwrap();
        let lookups = [
            "bin/hello",
            "data/chunk-and-a-byte.txt",
            "data/many-chunks.txt",
            "data/one-chunk.txt",
            "app/settings.json",
        ];
        let out = run(Command::new(&verify)
            .arg("-prefetch")
            .arg(&blob)
            .arg(toc)
            .args(lookups));
        seen.push(out.lines().skip(1).collect::<Vec<_>>().join("; "));

        // The landmark is the layer's first entry after the prioritized files and
        // their directories.
        let names = tar_names(&gunzip(&fs::read(&blob).unwrap()));
        let landmark = names
            .iter()
            .position(|n| n.ends_with("prefetch.landmark"))
            .expect("a landmark entry");
        seen.push(names[..=landmark].join(" "));
    }
    assert_eq!(
        seen,
        [
            // base: bin/hello (after its directory), then the landmark.
            "landmark .prefetch.landmark; bin/hello before; data/chunk-and-a-byte.txt absent; \
             data/many-chunks.txt absent; data/one-chunk.txt absent; app/settings.json absent",
            "bin/ bin/hello .prefetch.landmark",
            // app: bin/hello again (the copied tree's is newer).
            "landmark .prefetch.landmark; bin/hello before; data/chunk-and-a-byte.txt absent; \
             data/many-chunks.txt absent; data/one-chunk.txt absent; app/settings.json after",
            "bin/ bin/hello .prefetch.landmark",
            // big: the two data files in the list's order; the others after.
            "landmark .prefetch.landmark; bin/hello absent; data/chunk-and-a-byte.txt before; \
             data/many-chunks.txt before; data/one-chunk.txt after; app/settings.json absent",
            "data/ data/chunk-and-a-byte.txt data/many-chunks.txt .prefetch.landmark",
        ]
    );

    // The refs record the blobs under a key naming the chunk size and the list (in
    // the snapshotter's metadata), so the same options again in the same store reuse
    // them; another list, or none, gives other blobs.
    assert!(
        store_mentions(
            &tmp.path().join("store"),
            b"strata.io/blob.estargz.chunk-65536.prefetch-"
        ),
        "the blobs are recorded on their refs"
    );
    let again = export(
        &tmp.path().join("store"),
        &layers,
        &tmp.path().join("again"),
        "2",
        &option,
    );
    assert_eq!(again["layers"], manifest["layers"]);
    // Written afresh with one job: the same layers.
    let fresh = export(
        &tmp.path().join("store-jobs1"),
        &layers,
        &tmp.path().join("fresh"),
        "1",
        &option,
    );
    assert_eq!(fresh["layers"], manifest["layers"]);
    // A list naming nothing in any layer: every layer starts with the no-prefetch
    // landmark (other blobs again).
    let none = tmp.path().join("none");
    let nothing = export(
        &tmp.path().join("store"),
        &layers,
        &none,
        "2",
        ",estargz-prioritized-files=etc/absent",
    );
    assert_estargz_layers(&none, &nothing, &verify);
    for (a, b) in nothing["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(manifest["layers"].as_array().unwrap())
    {
        assert_ne!(a["digest"], b["digest"]);
        let blob = blob_path(&none, a["digest"].as_str().unwrap());
        let toc = a["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .unwrap();
        let out = run(Command::new(&verify)
            .arg("-prefetch")
            .arg(&blob)
            .arg(toc)
            .arg("bin/hello"));
        assert!(out.contains("landmark .no.prefetch.landmark\n"), "{out}");
        let names = tar_names(&gunzip(&fs::read(&blob).unwrap()));
        assert_eq!(names[0], ".no.prefetch.landmark");
    }
    let plain = export(
        &tmp.path().join("store"),
        &layers,
        &tmp.path().join("plain"),
        "2",
        "",
    );
    for (a, b) in plain["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(manifest["layers"].as_array().unwrap())
    {
        assert_ne!(a["digest"], b["digest"], "no landmarks: another blob");
    }
}

#[test]
fn estargz_with_docker_media_types_is_refused_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rootfs/base");
    let out = strata_command(&tmp.path().join("store"))
        .arg("export")
        .arg("--layer")
        .arg(&examples)
        .arg("-o")
        .arg(format!(
            "type=docker,dest={},name=x:y,compression=estargz",
            tmp.path().join("out.tar").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("compression=estargz") && stderr.contains("oci-mediatypes"),
        "{stderr}"
    );
}

#[test]
fn force_compression_converts_a_base_image_to_estargz() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-estargz-base-")
        .tempdir()
        .unwrap();
    let verify = verifier(tmp.path());
    let base = umoci_base(tmp.path());
    let src = tmp.path().join("copy-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.txt"), payload(3 * CHUNK, 9)).unwrap();
    let layout = tmp.path().join("layout");
    let mut cmd = strata_command(&tmp.path().join("store"));
    cmd.args(["export", "--base", &base.oci_reference(), "--copy"])
        .arg(format!("{}:/srv", src.display()))
        .arg("-o")
        .arg(format!(
            "type=oci,tar=false,dest={},name=example.com/strata/estargz:v1,compression=estargz,force-compression=true,estargz-chunk-size={CHUNK}",
            layout.display()
        ));
    run(&mut cmd);
    let index = read_json(&layout.join("index.json"));
    let manifest = blob_json(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    let base_layers = base.layer_digests();
    assert_eq!(layers.len(), base_layers.len() + 1);
    for (converted, original) in layers.iter().zip(&base_layers) {
        assert_ne!(
            converted["digest"].as_str().unwrap(),
            original,
            "the base layer was converted"
        );
    }
    // data.txt: 3 chunks, 2 past its first.
    assert!(assert_estargz_layers(&layout, &manifest, &verify) >= 2);
}
