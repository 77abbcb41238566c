//! Shared fixture of the exporter's end-to-end tests: a real on-disk content store
//! (LocalStore), the directory snapshotter over real trees, and the real walking
//! differ behind a wrapper that counts compare calls.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use strata_cache::ImmutableRef;
use strata_content::LocalStore;
use strata_differ::{CompareOptions, Comparer, LayerBlob, WalkingDiffer};
use strata_exporter::ExportContext;
use strata_snapshotter::{DirectorySnapshotter, Labels, Mount, Snapshotter};

/// A comparer that counts the diffs it computes.
pub struct CountingComparer {
    inner: WalkingDiffer,
    pub calls: AtomicUsize,
}

#[async_trait]
impl Comparer for CountingComparer {
    async fn compare(
        &self,
        lower: &[Mount],
        upper: &[Mount],
        opts: &CompareOptions,
    ) -> strata_differ::Result<LayerBlob> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.compare(lower, upper, opts).await
    }
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub store: Arc<LocalStore>,
    pub snapshotter: Arc<DirectorySnapshotter>,
    pub differ: Arc<CountingComparer>,
}

/// One file of a tree: a path and its content (`None` for a directory).
pub type TreeSpec<'a> = &'a [(&'a str, Option<&'a str>)];

impl Fixture {
    pub async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(tmp.path().join("store")).await.unwrap());
        let snapshotter =
            Arc::new(DirectorySnapshotter::open(tmp.path().join("snapshots")).unwrap());
        let differ = Arc::new(CountingComparer {
            inner: WalkingDiffer::new(store.clone()),
            calls: AtomicUsize::new(0),
        });
        Fixture {
            tmp,
            store,
            snapshotter,
            differ,
        }
    }

    pub fn ctx(&self) -> ExportContext {
        ExportContext::new(
            self.store.clone(),
            self.store.clone(),
            self.store.clone(),
            self.differ.clone(),
        )
        .with_jobs(2)
    }

    pub fn calls(&self) -> usize {
        self.differ.calls.load(Ordering::SeqCst)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes `spec` as the full tree `trees/<name>` and registers it as snapshot
    /// `name` on `parent`, described as `description`.
    pub async fn layer(
        &self,
        name: &str,
        parent: Option<&str>,
        description: &str,
        spec: TreeSpec<'_>,
    ) -> PathBuf {
        let dir = self.path("trees").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, content) in spec {
            let p = dir.join(path);
            match content {
                None => std::fs::create_dir_all(&p).unwrap(),
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
            }
        }
        let mut labels = Labels::new();
        labels.insert(
            strata_cache::LABEL_DESCRIPTION.to_string(),
            description.to_string(),
        );
        self.snapshotter
            .register(name, parent, &dir, labels)
            .await
            .unwrap();
        dir
    }

    pub async fn load(&self, name: &str) -> ImmutableRef {
        let s: Arc<dyn Snapshotter> = self.snapshotter.clone();
        ImmutableRef::load(s, name).await.unwrap()
    }

    /// A three-layer chain with a deletion: base, +app, -base file. Returns the top
    /// tree's directory.
    pub async fn chain(&self, prefix: &str, arch: &str) -> PathBuf {
        let base = format!("{prefix}-base");
        let app = format!("{prefix}-app");
        let top = format!("{prefix}-top");
        let base_spec: Vec<(&str, Option<&str>)> = vec![
            ("etc", None),
            ("etc/os-release", Some("ID=strata\n")),
            ("bin/tool", Some("#!/bin/sh\necho tool\n")),
        ];
        self.layer(&base, None, "base tree", &base_spec).await;
        let arch_file = format!("arch {arch}\n");
        let mut app_spec = base_spec.clone();
        app_spec.push(("app/arch", Some(&arch_file)));
        app_spec.push(("app/data/readme", Some("hello\n")));
        self.layer(&app, Some(&base), "COPY app /app", &app_spec)
            .await;
        let top_spec: Vec<(&str, Option<&str>)> = vec![
            ("etc", None),
            ("etc/os-release", Some("ID=strata\nVERSION=2\n")),
            ("app/arch", Some(&arch_file)),
            ("app/data/readme", Some("hello\n")),
        ];
        self.layer(&top, Some(&app), "RUN rm /bin/tool", &top_spec)
            .await
    }
}

pub fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a tool, panicking with its output if it fails; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Relative paths and file contents of a tree (directories as `None`).
pub fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Unpacks image `image` (an `oci:` layout reference `dir:tag`) with umoci and checks
/// its rootfs equals `expected`.
pub fn assert_umoci_unpacks_to(image: &str, bundle: &Path, expected: &Path) {
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            image,
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        tree(&bundle.join("rootfs")),
        tree(expected),
        "rootfs of {image}"
    );
}
