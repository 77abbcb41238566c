//! `compression=zstd:chunked`: every layer strata writes is read the way containers/storage
//! reads it for a partial pull, by a verifier written here from the format's
//! description (not strata's writer): the TOC found only through the layer's
//! annotations (a range of the blob), its checksum, every file's and every chunk's
//! byte range decompressed on its own to the file's bytes with the digest the TOC
//! claims, the tar-split reassembling exactly the tar (the config's diffID); the same
//! trees give the same layers with one or two jobs; containerd unpacks the image to the
//! source tree; Docker media types are refused naming the option. The tar-split is also
//! compared with the one vbatts/tar-split's own Go packer writes for the same tar
//! (`tests/go/tarsplit`, built against Debian's golang-github-vbatts-tar-split-dev).

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use strata_oci::Digest;
use strata_tests::servers::Containerd;
use strata_tests::{run, strata_command, tool, umoci_base};

const ANNOTATION: &str = "io.github.containers.zstd-chunked.";

/// Builds the tar-split generator (GOPATH mode against the Debian package) into `dir`.
fn tar_split_generator(dir: &Path) -> PathBuf {
    let library = Path::new("/usr/share/gocode/src/github.com/vbatts/tar-split/tar/asm");
    assert!(
        library.is_dir(),
        "the tar-split Go library is not installed: run `apt-get install -y golang-go golang-github-vbatts-tar-split-dev` (scripts/test.sh does)"
    );
    let bin = dir.join("tarsplit-gen");
    run(Command::new(tool("go"))
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("go/tarsplit"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("gocache"))
        .env(
            "GOPATH",
            format!("{}:/usr/share/gocode", dir.join("gopath").display()),
        ));
    bin
}

/// What tar-split's own packer writes for `tar`.
fn go_tar_split(generator: &Path, tar: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(generator)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = tar.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "tarsplit-gen failed");
    out.stdout
}

/// Deterministic text that compresses like real files.
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

/// Deterministic bytes with no structure (xorshift): the rolling checksum splits them
/// about every 64 KiB, as it does real binaries.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Three trees: the shipped examples' base and app, then app plus a file of many
/// chunks, one with a long run of zeros in it, an empty file, a hardlink and a symlink.
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
    fs::write(data.join("many-chunks.bin"), noise(3 << 20, 1)).unwrap();
    fs::write(data.join("text.txt"), payload(1 << 20, 4)).unwrap();
    let mut holey = payload(200_000, 2);
    holey.extend(std::iter::repeat_n(0u8, 300_000));
    holey.extend(payload(5000, 3));
    fs::write(data.join("holey.bin"), holey).unwrap();
    fs::write(data.join("empty"), b"").unwrap();
    fs::hard_link(data.join("many-chunks.bin"), data.join("hardlink.bin")).unwrap();
    symlink("many-chunks.bin", data.join("link")).unwrap();
    vec![base, app, big]
}

/// Exports `layers` as an OCI layout at `dest` with zstd:chunked; returns the manifest.
fn export(store: &Path, layers: &[PathBuf], dest: &Path, jobs: &str) -> Value {
    let mut cmd = strata_command(store);
    cmd.arg("export").args(["--jobs", jobs]);
    for l in layers {
        cmd.arg("--layer").arg(l);
    }
    cmd.arg("-o").arg(format!(
        "type=oci,tar=false,dest={},name=example.com/strata/zchunk:v1,compression=zstd:chunked",
        dest.display()
    ));
    run(&mut cmd);
    let index = read_json(&dest.join("index.json"));
    read_json(&blob_path(
        dest,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
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

/// Decompresses one byte range of a blob on its own.
fn unzstd(blob: &[u8], range: Range<u64>) -> Vec<u8> {
    let bytes = &blob[range.start as usize..range.end as usize];
    zstd::decode_all(bytes).unwrap_or_else(|e| panic!("range {range:?} is not zstd: {e}"))
}

/// `a:b:c[:d]` of an annotation.
fn numbers(desc: &Value, key: &str) -> Vec<u64> {
    let value = desc["annotations"][format!("{ANNOTATION}{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} annotation on {desc}"));
    value.split(':').map(|n| n.parse().unwrap()).collect()
}

/// CRC-64/ISO as Go's hash/crc64 (tar-split's payload checksum).
fn crc64(bytes: &[u8]) -> u64 {
    let mut crc = !0u64;
    for &b in bytes {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xD800_0000_0000_0000
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Verifies one layer as a partial pull would; `tree` is the layer's source tree when
/// known (each file's range must then be its bytes; either way the tar-split must
/// reassemble the diffID's tar from the ranges). Returns the chunk entries, the zeros
/// chunks, the tar and the tar-split.
fn verify_layer(
    layout: &Path,
    desc: &Value,
    diff_id: &str,
    tree: Option<&Path>,
) -> (usize, usize, Vec<u8>, Vec<u8>) {
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let blob = fs::read(blob_path(layout, desc["digest"].as_str().unwrap())).unwrap();
    let size = blob.len() as u64;

    // The TOC, through the annotations only.
    let m = numbers(desc, "manifest-position");
    assert_eq!(m[3], 1, "manifest type");
    let compressed = &blob[m[0] as usize..(m[0] + m[1]) as usize];
    let checksum = desc["annotations"][format!("{ANNOTATION}manifest-checksum")]
        .as_str()
        .unwrap();
    assert_eq!(Digest::sha256_of(compressed).as_str(), checksum);
    let json = zstd::decode_all(compressed).unwrap();
    assert_eq!(json.len() as u64, m[2]);
    let toc: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(toc["version"], 1);
    let entries = toc["entries"].as_array().unwrap();

    // Every file's range and every chunk's range, each decompressed alone.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut chunk_entries, mut zeros) = (0, 0);
    let mut i = 0;
    while i < entries.len() {
        let e = &entries[i];
        i += 1;
        if e["type"] != "reg" {
            assert_ne!(e["type"], "chunk", "a chunk entry without its file");
            continue;
        }
        let name = e["name"].as_str().unwrap().to_string();
        let size = e["size"].as_u64().unwrap_or(0);
        if size == 0 {
            assert!(
                e.get("digest").is_none() && e.get("offset").is_none(),
                "{e}"
            );
            files.insert(name, Vec::new());
            continue;
        }
        let (offset, end) = (
            e["offset"].as_u64().unwrap(),
            e["endOffset"].as_u64().unwrap(),
        );
        assert!(offset < end && end <= m[0], "{e}");
        let want = unzstd(&blob, offset..end);
        assert_eq!(want.len() as u64, size, "{name}");
        if let Some(tree) = tree {
            assert!(
                fs::read(tree.join(&name)).unwrap() == want,
                "{name}: its range is not its bytes"
            );
        }
        assert_eq!(
            e["digest"].as_str().unwrap(),
            Digest::sha256_of(&want).as_str()
        );
        // Its chunks: the file entry first, then `chunk` entries.
        let mut chunks = vec![e];
        while i < entries.len() && entries[i]["type"] == "chunk" {
            assert_eq!(entries[i]["name"], e["name"]);
            chunks.push(&entries[i]);
            i += 1;
        }
        if chunks.len() > 1 {
            chunk_entries += chunks.len() - 1;
            let mut at = 0u64;
            for (k, c) in chunks.iter().enumerate() {
                let start = c["offset"].as_u64().unwrap();
                let stop = chunks
                    .get(k + 1)
                    .map_or(end, |n| n["offset"].as_u64().unwrap());
                let chunk_offset = c["chunkOffset"].as_u64().unwrap_or(0);
                let chunk_size = c["chunkSize"].as_u64().unwrap();
                assert_eq!(chunk_offset, at, "{name}: chunks are contiguous");
                at += chunk_size;
                let bytes = unzstd(&blob, start..stop);
                let range = chunk_offset as usize..(chunk_offset + chunk_size) as usize;
                assert!(bytes == want[range], "{name}: chunk at {chunk_offset}");
                assert_eq!(
                    c["chunkDigest"].as_str().unwrap(),
                    Digest::sha256_of(&bytes).as_str()
                );
                if c["chunkType"] == "zeros" {
                    zeros += 1;
                    assert!(bytes.len() >= 1024 && bytes.iter().all(|&b| b == 0));
                }
            }
            assert_eq!(at, want.len() as u64, "{name}: chunks cover the file");
        }
        files.insert(name, want);
    }

    // The tar-split: its digest in the TOC, and it reassembles the exact tar.
    let t = numbers(desc, "tarsplit-position");
    let ts_compressed = &blob[t[0] as usize..(t[0] + t[1]) as usize];
    assert_eq!(
        toc["tarSplitDigest"].as_str().unwrap(),
        Digest::sha256_of(ts_compressed).as_str()
    );
    let ts = zstd::decode_all(ts_compressed).unwrap();
    assert_eq!(ts.len() as u64, t[2]);
    let mut tar = Vec::new();
    for (position, line) in ts
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let entry: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(entry["position"], position as u64);
        match entry["type"].as_u64().unwrap() {
            2 => tar.extend(b64(entry["payload"].as_str().unwrap())),
            1 => {
                let size = entry["size"].as_u64().unwrap_or(0);
                if size > 0 {
                    let name = entry["name"].as_str().unwrap();
                    let bytes = &files[name];
                    let crc = b64(entry["payload"].as_str().unwrap());
                    assert_eq!(crc, crc64(bytes).to_be_bytes(), "{name}");
                    tar.extend_from_slice(bytes);
                }
            }
            other => panic!("tar-split entry type {other}"),
        }
    }
    assert_eq!(
        Digest::sha256_of(&tar).as_str(),
        diff_id,
        "tar-split reassembles the tar"
    );
    // Plain zstd of the whole blob is the same tar.
    assert!(unzstd(&blob, 0..size) == tar);

    // The footer: the same positions, and the magic.
    let footer = &blob[blob.len() - 64..];
    let field = |k: usize| u64::from_le_bytes(footer[k * 8..k * 8 + 8].try_into().unwrap());
    assert_eq!(
        &blob[blob.len() - 72..blob.len() - 64],
        &[0x50, 0x2a, 0x4d, 0x18, 64, 0, 0, 0]
    );
    assert_eq!(
        [field(0), field(1), field(2), field(3)],
        [m[0], m[1], m[2], m[3]]
    );
    assert_eq!([field(4), field(5), field(6)], [t[0], t[1], t[2]]);
    assert_eq!(&footer[56..], b"GNUlInUx");
    (chunk_entries, zeros, tar, ts)
}

#[test]
fn zstd_chunked_layers_read_by_their_toc_and_unpack_in_containerd() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-zchunk-")
        .tempdir()
        .unwrap();
    let layers = trees(tmp.path());
    let layout = tmp.path().join("layout");
    let manifest = export(&tmp.path().join("store"), &layers, &layout, "2");
    let config = read_json(&blob_path(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let descs = manifest["layers"].as_array().unwrap();
    assert_eq!(descs.len(), 3);
    let generator = tar_split_generator(tmp.path());
    let mut totals = (0, 0);
    for ((desc, diff_id), tree) in descs.iter().zip(diff_ids).zip(&layers) {
        let (c, z, tar, ours) = verify_layer(&layout, desc, diff_id.as_str().unwrap(), Some(tree));
        totals = (totals.0 + c, totals.1 + z);
        // Byte for byte what tar-split writes. Debian's tar-split (0.11) ends with an
        // empty segment that the current one (which containers/storage uses) no longer
        // writes: that line alone may differ.
        let theirs = go_tar_split(&generator, &tar);
        let theirs = String::from_utf8(theirs).unwrap();
        let ours = String::from_utf8(ours).unwrap();
        let last = theirs.trim_end().rsplit('\n').next().unwrap_or_default();
        let theirs = match last.starts_with(r#"{"type":2,"payload":"","#) {
            true => &theirs[..theirs.len() - last.len() - 1],
            false => &theirs[..],
        };
        assert!(ours == theirs, "the tar-split differs from tar-split's own");
    }
    // 3 MiB of noise cuts into about 48 rollsum chunks; holey.bin has one run of zeros.
    assert!(totals.0 > 20, "chunk entries: {totals:?}");
    assert_eq!(totals.1, 1, "zeros chunks");

    // One job or two: the same layers.
    let again = tmp.path().join("layout-jobs1");
    let manifest1 = export(&tmp.path().join("store-jobs1"), &layers, &again, "1");
    assert_eq!(manifest1["layers"], manifest["layers"]);

    // containerd imports the layout and unpacks it to the last tree.
    let archive = tmp.path().join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    Containerd::start().assert_imports_as_tree(
        &archive,
        "example.com/strata/zchunk:v1",
        &tmp.path().join("ctr-mount"),
        &layers[2],
    );
}

#[test]
fn zstd_chunked_with_docker_media_types_is_refused_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rootfs/base");
    let out = strata_command(&tmp.path().join("store"))
        .arg("export")
        .arg("--layer")
        .arg(&examples)
        .arg("-o")
        .arg(format!(
            "type=docker,dest={},name=x:y,compression=zstd:chunked",
            tmp.path().join("out.tar").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("compression=zstd:chunked") && stderr.contains("oci-mediatypes"),
        "{stderr}"
    );
}

#[test]
fn force_compression_converts_a_base_image_to_zstd_chunked() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-zchunk-base-")
        .tempdir()
        .unwrap();
    let base = umoci_base(tmp.path());
    let src = tmp.path().join("copy-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.bin"), noise(1 << 20, 9)).unwrap();
    let layout = tmp.path().join("layout");
    let mut cmd = strata_command(&tmp.path().join("store"));
    cmd.args(["export", "--base", &base.oci_reference(), "--copy"])
        .arg(format!("{}:/srv", src.display()))
        .arg("-o")
        .arg(format!(
            "type=oci,tar=false,dest={},name=example.com/strata/zchunk:v1,compression=zstd:chunked,force-compression=true",
            layout.display()
        ));
    run(&mut cmd);
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob_path(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = read_json(&blob_path(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let (base_layers, base_diff_ids) = (base.layer_digests(), base.diff_ids());
    assert_eq!(layers.len(), base_layers.len() + 1);
    for (i, desc) in layers.iter().enumerate() {
        if let Some(original) = base_layers.get(i) {
            assert_ne!(
                desc["digest"].as_str().unwrap(),
                original,
                "base layer {i} converted"
            );
            // Converting keeps the tar: the base's diffID.
            assert_eq!(diff_ids[i].as_str().unwrap(), base_diff_ids[i]);
        }
        verify_layer(&layout, desc, diff_ids[i].as_str().unwrap(), None);
    }
}
