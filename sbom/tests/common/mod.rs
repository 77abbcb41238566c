//! What the SBOM tests share: the SPDX validator (PyPI's `spdx-tools`, installed by
//! `scripts/test.sh`), real Debian trees, and layer tars made by strata's differ.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use strata_content::{ContentStore, LocalStore};
use strata_differ::{CompareOptions, Comparer, WalkingDiffer};
use strata_oci::{Compression, Digest};
use strata_snapshotter::Mount;

/// `pyspdxtools` from `PATH` (`scripts/test.sh` puts its virtualenv there).
fn pyspdxtools() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("pyspdxtools"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pyspdxtools is not on PATH: run the tests with scripts/test.sh, or \
                 `pip install spdx-tools` (PyPI) into a virtualenv on PATH"
            )
        })
}

/// Validates `document` with spdx-tools; panics with its messages when invalid.
pub fn validate_spdx(document: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sbom.spdx.json");
    fs::write(&file, serde_json::to_vec_pretty(document).expect("json")).expect("write sbom");
    let out = Command::new(pyspdxtools())
        .arg("-i")
        .arg(&file)
        .output()
        .expect("run pyspdxtools");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("invalid") && !stderr.contains("invalid"),
        "spdx-tools rejects the document ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        serde_json::to_string_pretty(document).unwrap_or_default()
    );
}

/// The trees of the Debian chain the benchmark uses (`bench/README.md`), shared with
/// it in `$STRATA_BENCH_CACHE` (default `~/.cache/strata-bench`) and built by the same
/// recipe, `scripts/debian-chain.sh`, when missing (root, debootstrap and a Debian
/// mirror needed): `rootfs` (`debootstrap --variant=minbase bookworm`),
/// `debian/python3` (+ python3 from apt) and `debian/slim` (− `/usr/share/doc`,
/// `/usr/share/man`, apt lists).
pub fn debian_chain() -> [PathBuf; 3] {
    let cache = std::env::var_os("STRATA_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join("strata-bench")
        });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/debian-chain.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&cache)
        .arg("slim")
        .status()
        .expect("run scripts/debian-chain.sh");
    assert!(status.success(), "{script:?} failed ({status})");
    [
        cache.join("rootfs"),
        cache.join("debian/python3"),
        cache.join("debian/slim"),
    ]
}

/// What `dpkg-query -W` lists for `tree`, as `name version arch` lines, less the
/// `config-files` packages (removed; see the crate's dpkg docs).
pub fn dpkg_query(tree: &Path) -> BTreeSet<String> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            tree.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n",
        ])
        .output()
        .expect("run dpkg-query (Debian's dpkg)");
    assert!(
        out.status.success(),
        "dpkg-query: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("config-files "))
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The uncompressed layer tars between consecutive trees (the first against an empty
/// tree), written by strata's differ into `dir`: (diffID, tar path) each.
pub fn layer_tars(trees: &[PathBuf], dir: &Path) -> Vec<(Digest, PathBuf)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).expect("mkdir empty");
    rt.block_on(async {
        let store_dir = dir.join("store");
        let store: Arc<dyn ContentStore> =
            Arc::new(LocalStore::open(&store_dir).await.expect("open store"));
        let differ = WalkingDiffer::new(store);
        let opts = CompareOptions {
            compression: Compression::Uncompressed,
            ..CompareOptions::default()
        };
        let mut lower = empty.clone();
        let mut out = Vec::new();
        for (i, tree) in trees.iter().enumerate() {
            let blob = differ
                .compare(
                    &[Mount::bind(&lower, true)],
                    &[Mount::bind(tree, true)],
                    &opts,
                )
                .await
                .expect("compare trees");
            let path = dir.join(format!("layer{i}.tar"));
            fs::rename(
                store_dir
                    .join("blobs/sha256")
                    .join(blob.descriptor.digest.hex()),
                &path,
            )
            .expect("move the layer tar");
            out.push((blob.diff_id, path));
            lower = tree.clone();
        }
        out
    })
}

/// Writes `files` (path → contents; a `->` prefix makes a symlink) as a tar.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        if let Some(target) = contents.strip_prefix(b"->") {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = std::str::from_utf8(target).expect("utf-8 target");
            builder
                .append_link(&mut header, path, target)
                .expect("append symlink");
        } else if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, path, &[][..])
                .expect("append dir");
        } else {
            header.set_size(contents.len() as u64);
            builder
                .append_data(&mut header, path, *contents)
                .expect("append file");
        }
    }
    builder.into_inner().expect("finish tar")
}

/// Writes `files` (path → contents) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (path, contents) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, contents).expect("write file");
    }
}

/// A digest standing for a layer's diffID in tests whose layers are trees.
pub fn diff_id(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}
