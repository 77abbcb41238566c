//! The files of an image that hold its package databases, tracked through a chain of
//! layers without extracting it: [`DbState`] is what those paths hold after a layer,
//! read from a layer's full tree ([`read_tree`]: a handful of `openat2` calls confined
//! to the tree) or built by applying a layer tar's [`Delta`] ([`read_tar_delta`]: one
//! streaming pass that reads the data of the database entries only, honouring
//! whiteouts, opaque directories and entries that replace a directory).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use strata_oci::Digest;

use crate::dpkg::{copyright_license, copyright_package, copyright_path};
use crate::error::SbomError;
use crate::ScanLimits;

pub(crate) const DPKG_STATUS: &str = "var/lib/dpkg/status";
pub(crate) const DPKG_STATUS_DIR: &str = "var/lib/dpkg/status.d";
pub(crate) const APK_INSTALLED: &str = "lib/apk/db/installed";
/// Where rpm keeps `rpmdb.sqlite`, in the order they are looked at (Fedora ≥ 36 and
/// current EL use the first; `var/lib/rpm` is then a symlink to it).
pub(crate) const RPM_DATABASES: [&str; 2] = [
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/rpmdb.sqlite",
];
/// `os-release(5)`: the first one present counts.
pub(crate) const OS_RELEASES: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// Directories above a tracked file: a non-directory entry at one of these paths
/// replaces the directory and everything tracked below it.
const ANCESTORS: &[&str] = &[
    "etc",
    "lib",
    "lib/apk",
    "lib/apk/db",
    "usr",
    "usr/lib",
    "usr/lib/sysimage",
    "usr/lib/sysimage/rpm",
    "usr/share",
    "usr/share/doc",
    "var",
    "var/lib",
    "var/lib/dpkg",
    "var/lib/dpkg/status.d",
    "var/lib/rpm",
];

/// A `status.d` entry that is a package stanza (distroless also keeps `.md5sums` there).
pub(crate) fn is_status_d_file(path: &str) -> bool {
    path.strip_prefix(DPKG_STATUS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums"))
}

/// A package database or `os-release`, whose bytes are kept.
pub(crate) fn is_database(path: &str) -> bool {
    path == DPKG_STATUS
        || path == APK_INSTALLED
        || RPM_DATABASES.contains(&path)
        || OS_RELEASES.contains(&path)
        || is_status_d_file(path)
}

fn doc_dir(package: &str) -> String {
    format!("usr/share/doc/{package}")
}

/// `usr/share/doc/<package>`.
fn is_doc_dir(path: &str) -> bool {
    path.strip_prefix("usr/share/doc/")
        .is_some_and(|p| !p.is_empty() && !p.contains('/'))
}

fn is_ancestor(path: &str) -> bool {
    ANCESTORS.contains(&path) || is_doc_dir(path)
}

/// What one tracked path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A database file's bytes.
    File(Arc<Vec<u8>>),
    /// A symlink's target (as written in the tar).
    Symlink(String),
    /// A copyright file, reduced to its license (`None`: not machine-readable, or
    /// over the size limit).
    License(Option<String>),
    /// A hardlink to another path (a tar entry; resolved when the delta is applied).
    Hardlink(String),
}

/// The tracked paths after some layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct DbState {
    /// Tracked path → what it holds.
    pub files: BTreeMap<String, Entry>,
    /// The layer's full tree, when the state was read from one: copyright files are
    /// read from it on demand instead of being kept.
    pub tree: Option<PathBuf>,
}

impl DbState {
    /// A tracked file's bytes.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        // A symlink to another tracked file is followed (`etc/os-release` →
        // `../usr/lib/os-release`), a few hops at most, as a tree's reads would.
        let mut path = path.to_string();
        for _ in 0..8 {
            match self.files.get(&path) {
                Some(Entry::File(bytes)) => return Some(bytes),
                Some(Entry::Symlink(target)) => path = resolve_symlink(&path, target)?,
                _ => return None,
            }
        }
        None
    }

    /// The contents of the first `os-release` present.
    pub fn os_release(&self) -> Option<&[u8]> {
        OS_RELEASES.into_iter().find_map(|path| self.file(path))
    }

    /// The license of `package`'s machine-readable copyright file.
    pub fn copyright(&self, package: &str, limits: &ScanLimits) -> Option<String> {
        match &self.tree {
            Some(tree) => read_copyright(tree, package, limits),
            None => match self.files.get(&copyright_path(package)) {
                Some(Entry::License(license)) => license.clone(),
                // Debian points a package's doc directory at another package's
                // (`libncursesw6 -> libtinfo6`) when that copyright file applies.
                _ => {
                    let dir = doc_dir(package);
                    let Some(Entry::Symlink(target)) = self.files.get(&dir) else {
                        return None;
                    };
                    let target = resolve_symlink(&dir, target)?;
                    match self.files.get(&format!("{target}/copyright")) {
                        Some(Entry::License(license)) => license.clone(),
                        _ => None,
                    }
                }
            },
        }
    }

    /// Turns a state read from a tree into one a tar can be applied to: the copyright
    /// licenses of `packages` are read from the tree and kept.
    pub fn detach_from_tree<'a>(
        &mut self,
        packages: impl Iterator<Item = &'a str>,
        limits: &ScanLimits,
    ) {
        if let Some(tree) = self.tree.take() {
            for package in packages {
                let license = read_copyright(&tree, package, limits);
                self.files
                    .insert(copyright_path(package), Entry::License(license));
            }
        }
    }

    /// Applies a layer tar's changes: its removals, then what it adds.
    pub fn apply(&mut self, delta: &Delta) {
        for removal in &delta.removals {
            let (exact, below) = match removal {
                Removal::Path(p) => (Some(p), Some(p)),
                Removal::Below(p) => (None, Some(p)),
                Removal::Exact(p) => (Some(p), None),
            };
            if let Some(p) = exact {
                self.files.remove(p);
            }
            if let Some(p) = below {
                if p.is_empty() {
                    self.files.clear();
                } else {
                    let prefix = format!("{p}/");
                    self.files.retain(|k, _| !k.starts_with(&prefix));
                }
            }
        }
        for (path, entry) in &delta.adds {
            let resolved = match entry {
                Entry::Hardlink(target) => {
                    match delta.adds.get(target).or(self.files.get(target)) {
                        Some(Entry::Hardlink(_)) | None => None,
                        Some(other) => Some(other.clone()),
                    }
                }
                other => Some(other.clone()),
            };
            match resolved {
                Some(entry) => self.files.insert(path.clone(), entry),
                None => self.files.remove(path),
            };
        }
    }
}

/// `target` of a symlink at `link`, as a path from the root (`None` if it leaves it).
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link.split('/').collect::<Vec<_>>()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// What a layer tar removes from the layers below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// A whiteout, or a non-directory entry replacing a directory: the path and all
    /// below it.
    Path(String),
    /// An opaque directory: everything below it (`""`: the root).
    Below(String),
    /// A directory or special file replacing a tracked file.
    Exact(String),
}

/// A layer tar's changes to the tracked paths.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    pub removals: Vec<Removal>,
    pub adds: BTreeMap<String, Entry>,
}

/// A tar path as a clean path from the root: `./a/b/` → `a/b`; `None` for the root
/// itself or a path with `..`.
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads at most `limit` bytes of `reader`, which claims `size`; `None` if larger.
fn read_bounded(mut reader: impl Read, size: u64, limit: u64) -> io::Result<Option<Vec<u8>>> {
    if size > limit {
        return Ok(None);
    }
    // The size is the image's word: allocate as the bytes arrive.
    let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
    reader.by_ref().take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Streams a layer's uncompressed tar once, keeping what it does to the tracked paths;
/// the data of every other entry is skipped.
pub(crate) fn read_tar_delta(
    reader: impl Read,
    layer: &Digest,
    limits: &ScanLimits,
) -> Result<Delta, SbomError> {
    let tar_error = |source| SbomError::ReadTar {
        layer: layer.clone(),
        source,
    };
    let mut delta = Delta::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let Some(path) = entry.path().ok().as_deref().and_then(clean) else {
            continue;
        };
        let (dir, name) = split_parent(&path);
        if let Some(whited) = name.strip_prefix(".wh.") {
            if whited == ".wh..opq" {
                delta.removals.push(Removal::Below(dir.to_string()));
            } else if !whited.starts_with(".wh.") && !whited.is_empty() {
                delta.removals.push(Removal::Path(join(dir, whited)));
            }
            continue;
        }
        let kind = entry.header().entry_type();
        let database = is_database(&path);
        let copyright = copyright_package(&path).is_some();
        if kind.is_dir() {
            // A directory replacing a tracked file or symlink.
            if database || copyright || is_ancestor(&path) {
                delta.removals.push(Removal::Exact(path));
            }
            continue;
        }
        if is_ancestor(&path) {
            delta.removals.push(Removal::Path(path.clone()));
        }
        if kind.is_symlink() && is_doc_dir(&path) {
            let target = entry.link_name().ok().flatten();
            let target = target.and_then(|t| t.to_str().map(str::to_string));
            delta
                .adds
                .insert(path, Entry::Symlink(target.unwrap_or_default()));
            continue;
        }
        if !database && !copyright {
            continue;
        }
        let size = entry.header().entry_size().unwrap_or(u64::MAX);
        let added = if kind.is_file() {
            if database {
                let bytes = read_bounded(&mut entry, size, limits.max_database_bytes)
                    .map_err(tar_error)?
                    .ok_or_else(|| SbomError::TooLarge {
                        layer: layer.clone(),
                        path: path.clone(),
                        limit: limits.max_database_bytes,
                    })?;
                Entry::File(Arc::new(bytes))
            } else {
                let bytes = read_bounded(&mut entry, size, limits.max_copyright_bytes)
                    .map_err(tar_error)?;
                Entry::License(bytes.and_then(|b| copyright_license(&String::from_utf8_lossy(&b))))
            }
        } else if kind.is_symlink() {
            let target = entry.link_name().ok().flatten();
            Entry::Symlink(
                target
                    .and_then(|t| t.to_str().map(str::to_string))
                    .unwrap_or_default(),
            )
        } else if kind.is_hard_link() {
            match entry.link_name().ok().flatten().as_deref().and_then(clean) {
                Some(target) => Entry::Hardlink(target),
                None => {
                    delta.removals.push(Removal::Exact(path));
                    continue;
                }
            }
        } else {
            delta.removals.push(Removal::Exact(path));
            continue;
        };
        delta.adds.insert(path, added);
    }
    Ok(delta)
}

/// Opens `path` inside `root` (symlinks resolved as if `root` were `/`). `None` when
/// it is not there (missing, under a non-directory, a symlink loop).
fn open_in(root: &File, path: &str, flags: OFlags) -> io::Result<Option<File>> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a path inside a tree holds, for reading.
enum TreeFile {
    /// Missing, or not a regular file.
    Absent,
    /// A regular file's bytes.
    Bytes(Vec<u8>),
    /// A regular file over the limit.
    TooLarge,
}

/// A regular file's bytes inside `root`, at most `limit` of them.
fn read_in(root: &File, path: &str, limit: u64) -> io::Result<TreeFile> {
    let Some(file) = open_in(root, path, OFlags::RDONLY)? else {
        return Ok(TreeFile::Absent);
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(TreeFile::Absent);
    }
    Ok(match read_bounded(&file, meta.len(), limit)? {
        Some(bytes) => TreeFile::Bytes(bytes),
        None => TreeFile::TooLarge,
    })
}

fn open_root(tree: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        tree,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Reads the tracked databases of the full tree `tree` (a layer's filesystem).
pub(crate) fn read_tree(
    tree: &Path,
    layer: &Digest,
    limits: &ScanLimits,
) -> Result<DbState, SbomError> {
    let read_error = |path: &str, source| SbomError::ReadTree {
        layer: layer.clone(),
        path: tree.join(path),
        source,
    };
    let root = open_root(tree).map_err(|e| read_error("", e))?;
    let mut paths: Vec<String> = [DPKG_STATUS, APK_INSTALLED]
        .into_iter()
        .chain(RPM_DATABASES)
        .chain(OS_RELEASES)
        .map(str::to_string)
        .collect();
    if let Some(dir) = open_in(&root, DPKG_STATUS_DIR, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| read_error(DPKG_STATUS_DIR, e))?
    {
        // The directory as opened (confined), listed through its descriptor.
        let listing =
            rustix::fs::Dir::new(dir).map_err(|e| read_error(DPKG_STATUS_DIR, e.into()))?;
        for item in listing {
            let item = item.map_err(|e| read_error(DPKG_STATUS_DIR, e.into()))?;
            let Ok(name) = item.file_name().to_str() else {
                continue;
            };
            let path = join(DPKG_STATUS_DIR, name);
            if name != "." && name != ".." && is_status_d_file(&path) {
                paths.push(path);
            }
        }
    }
    let mut state = DbState {
        files: BTreeMap::new(),
        tree: Some(tree.to_path_buf()),
    };
    for path in paths {
        match read_in(&root, &path, limits.max_database_bytes).map_err(|e| read_error(&path, e))? {
            TreeFile::Absent => {}
            TreeFile::Bytes(bytes) => {
                state.files.insert(path, Entry::File(Arc::new(bytes)));
            }
            TreeFile::TooLarge => {
                return Err(SbomError::TooLarge {
                    layer: layer.clone(),
                    path,
                    limit: limits.max_database_bytes,
                })
            }
        }
    }
    Ok(state)
}

/// The license of `package`'s copyright file in `tree`; `None` when absent, not
/// machine-readable, unreadable or over the limit (a license is best effort).
fn read_copyright(tree: &Path, package: &str, limits: &ScanLimits) -> Option<String> {
    let root = open_root(tree).ok()?;
    match read_in(&root, &copyright_path(package), limits.max_copyright_bytes).ok()? {
        TreeFile::Bytes(bytes) => copyright_license(&String::from_utf8_lossy(&bytes)),
        TreeFile::Absent | TreeFile::TooLarge => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_between_os_release_paths_resolve() {
        assert_eq!(
            resolve_symlink("etc/os-release", "../usr/lib/os-release").as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(
            resolve_symlink("etc/os-release", "/usr/lib/os-release").as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(resolve_symlink("etc/os-release", "../../x"), None);
    }

    #[test]
    fn tracked_paths() {
        assert!(is_database("var/lib/dpkg/status"));
        assert!(is_database("var/lib/dpkg/status.d/tzdata"));
        assert!(!is_database("var/lib/dpkg/status.d/tzdata.md5sums"));
        assert!(!is_database("var/lib/dpkg/status-old"));
        assert!(is_ancestor("usr/share/doc/bash"));
        assert!(!is_ancestor("usr/share/doc/bash/copyright"));
        assert_eq!(
            clean(Path::new("./var/lib/dpkg/")).as_deref(),
            Some("var/lib/dpkg")
        );
        assert_eq!(clean(Path::new("a/../b")), None);
    }
}
