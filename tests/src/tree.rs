//! Comparing two directory trees the way a user of an image cares about: types,
//! modes, owners, contents, link targets, device numbers, xattrs, hardlink groups and
//! (optionally) mtimes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What to compare besides types, modes, owners, contents, link targets and devices.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compare {
    /// Compare mtimes of non-directories (to the second).
    pub mtimes: bool,
    /// Compare extended attributes.
    pub xattrs: bool,
    /// Compare which paths are hardlinked together.
    pub hardlinks: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: Option<i64>,
    link: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn scan(root: &Path, opts: Compare) -> (BTreeMap<PathBuf, Entry>, Vec<Vec<PathBuf>>) {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let md =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        if ft.is_dir() {
            for child in fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                let child = child.expect("dir entry");
                stack.push(rel.join(child.file_name()));
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        if ft.is_file() && md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        let xattrs = if opts.xattrs && !ft.is_symlink() {
            xattrs_of(&path)
        } else {
            BTreeMap::new()
        };
        entries.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                rdev: if ft.is_char_device() || ft.is_block_device() {
                    md.rdev()
                } else {
                    0
                },
                size: if ft.is_file() { md.len() } else { 0 },
                mtime: (opts.mtimes && !ft.is_dir()).then(|| md.mtime()),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(&path).expect("readlink")),
                xattrs,
            },
        );
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    (entries, groups)
}

fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let names = xattr::list(path).unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display()));
    names
        .filter_map(|name| {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("security.selinux") {
                return None;
            }
            let value = xattr::get(path, &name).ok().flatten().unwrap_or_default();
            Some((name, value))
        })
        .collect()
}

/// Panics with a list of differences when the trees under `a` and `b` differ.
pub fn assert_same_tree(a: &Path, b: &Path, opts: Compare) {
    let (ea, ga) = scan(a, opts);
    let (eb, gb) = scan(b, opts);
    let mut diffs = Vec::new();
    for (path, x) in &ea {
        match eb.get(path) {
            None => diffs.push(format!("only in {}: {}", a.display(), path.display())),
            Some(y) if x != y => diffs.push(format!("{}: {x:?} != {y:?}", path.display())),
            Some(_) if x.kind == "file" => {
                let ca = fs::read(a.join(path)).expect("read file");
                let cb = fs::read(b.join(path)).expect("read file");
                if ca != cb {
                    diffs.push(format!("{}: contents differ", path.display()));
                }
            }
            Some(_) => {}
        }
    }
    for path in eb.keys() {
        if !ea.contains_key(path) {
            diffs.push(format!("only in {}: {}", b.display(), path.display()));
        }
    }
    if opts.hardlinks && ga != gb {
        diffs.push(format!("hardlink groups differ: {ga:?} != {gb:?}"));
    }
    assert!(
        diffs.is_empty(),
        "trees {} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

/// Writes `files` (relative path, content) under `dir`, creating parents, each with the
/// same fixed mtime: a file written with the same content in two trees is then the same
/// file to the differ (containerd's rule compares mtimes to the nanosecond), whatever
/// the clock ticked between the writes.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for (rel, contents) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, contents).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(mtime))
            .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", p.display()));
    }
}

/// Panics with a list of differences unless every entry under `a` has the same mtime
/// (seconds and nanoseconds) as the same path under `b`: directories and symlinks
/// included, the roots not. Use beside [`assert_same_tree`], which compares seconds.
pub fn assert_same_mtimes(a: &Path, b: &Path) {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (i64, i64)>) {
        let path = root.join(rel);
        let md =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if !rel.as_os_str().is_empty() {
            out.insert(rel.to_path_buf(), (md.mtime(), md.mtime_nsec()));
        }
        if md.is_dir() {
            for child in fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                walk(root, &rel.join(child.expect("dir entry").file_name()), out);
            }
        }
    }
    let (mut ta, mut tb) = (BTreeMap::new(), BTreeMap::new());
    walk(a, Path::new(""), &mut ta);
    walk(b, Path::new(""), &mut tb);
    let diffs: Vec<String> = ta
        .iter()
        .filter(|(p, t)| tb.get(*p) != Some(t))
        .map(|(p, t)| format!("{}: {t:?} != {:?}", p.display(), tb.get(p)))
        .collect();
    assert!(
        diffs.is_empty() && ta.len() == tb.len(),
        "mtimes under {} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}
