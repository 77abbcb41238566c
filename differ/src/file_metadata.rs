//! What the differ reads of a file: its `lstat` fields, its xattrs (without
//! overlayfs' own), a directory's sorted names, and whether two files are the same for
//! a layer ([`same_file`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{io_err, Result};

/// The `lstat` fields the differ compares and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// The file type bits of a mode.
pub(crate) const S_IFMT: u32 = libc::S_IFMT;

impl Stat {
    /// `lstat` of `path`, never following a final symlink.
    pub(crate) fn lstat(path: &Path) -> Result<Stat> {
        let m = fs::symlink_metadata(path).map_err(|e| io_err(path, e))?;
        Ok(Stat::from_metadata(&m))
    }

    /// `lstat` of `path`, `None` when it does not exist.
    pub(crate) fn lstat_opt(path: &Path) -> Result<Option<Stat>> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(Stat::from_metadata(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// The fields of `m`.
    pub(crate) fn from_metadata(m: &fs::Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
        }
    }

    /// The file type bits.
    pub(crate) fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
    /// A directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    /// A regular file.
    pub(crate) fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
    /// A symlink.
    pub(crate) fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }
    /// An overlay whiteout: a character device with device number 0/0.
    pub(crate) fn is_overlay_whiteout(&self) -> bool {
        self.kind() == libc::S_IFCHR && self.rdev == 0
    }
    /// A regular file with more than one name.
    pub(crate) fn is_hardlinked(&self) -> bool {
        self.is_file() && self.nlink > 1
    }
}

/// True for xattrs that belong to overlayfs itself and never to the tree.
pub(crate) fn is_overlay_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"trusted.overlay.") || b.starts_with(b"user.overlay.")
}

/// The xattrs of `path` (not following symlinks), sorted by name, without overlayfs'
/// own attributes.
pub(crate) fn xattrs(path: &Path) -> Result<BTreeMap<OsString, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) => return Ok(out),
        Err(e) => return Err(io_err(path, e)),
    };
    for name in names {
        if is_overlay_xattr(&name) {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(v)) => {
                out.insert(name, v);
            }
            Ok(None) => {}
            Err(e) if is_unsupported(&e) => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    Ok(out)
}

/// An xattr call that failed only because the filesystem has no xattrs or the
/// attribute is absent.
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// The sorted names in directory `dir`.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        names.push(entry.map_err(|e| io_err(dir, e))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// How [`same_file`] tells whether two regular files with the same metadata (size,
/// mtime with nanoseconds, mode, owner, xattrs) hold the same bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ContentCheck {
    /// containerd's rule: equal metadata means equal content, except when neither mtime
    /// has a sub-second part (coarse timestamps), where the bytes are compared.
    #[default]
    Metadata,
    /// The bytes of every such pair are compared, unless both names are the same inode
    /// on the same device (a hardlinked or bind-mounted tree costs nothing).
    Exact,
}

/// Whether two entries are the same file for the layer (containerd `sameFile`, plus
/// every xattr rather than only `security.capability`; with [`ContentCheck::Exact`],
/// the content of regular files whose metadata match).
pub(crate) fn same_file(
    lpath: &Path,
    l: &Stat,
    upath: &Path,
    u: &Stat,
    check: ContentCheck,
) -> Result<bool> {
    if l.kind() != u.kind()
        || l.mode & 0o7777 != u.mode & 0o7777
        || l.uid != u.uid
        || l.gid != u.gid
        || l.mtime != u.mtime
        || l.mtime_nsec != u.mtime_nsec
    {
        return Ok(false);
    }
    let kind = u.kind();
    if (kind == libc::S_IFCHR || kind == libc::S_IFBLK) && l.rdev != u.rdev {
        return Ok(false);
    }
    if !u.is_dir() && l.size != u.size {
        return Ok(false);
    }
    if u.is_symlink() {
        let a = fs::read_link(lpath).map_err(|e| io_err(lpath, e))?;
        let b = fs::read_link(upath).map_err(|e| io_err(upath, e))?;
        if a != b {
            return Ok(false);
        }
    }
    if xattrs(lpath)? != xattrs(upath)? {
        return Ok(false);
    }
    if !u.is_file() || (l.dev, l.ino) == (u.dev, u.ino) {
        return Ok(true);
    }
    // Coarse timestamps cannot tell a same-size rewrite within the same second apart:
    // compare the bytes, as containerd does; exact checking always compares them.
    let coarse = l.mtime_nsec == 0 && u.mtime_nsec == 0;
    if coarse || check == ContentCheck::Exact {
        return same_content(lpath, upath, u.size);
    }
    Ok(true)
}

/// The most bytes read from each file at once while comparing content.
const COMPARE_BLOCK: usize = 128 * 1024;

#[cfg(test)]
thread_local! {
    /// How many content comparisons opened files on this thread (tests only).
    pub(crate) static CONTENT_COMPARISONS: std::cell::Cell<usize> =
        const { std::cell::Cell::new(0) };
}

/// Whether files `a` and `b` (both expected to be `size` bytes long) hold the same
/// bytes: streamed in blocks, stopping at the first block that differs.
fn same_content(a: &Path, b: &Path, size: u64) -> Result<bool> {
    #[cfg(test)]
    CONTENT_COMPARISONS.with(|c| c.set(c.get() + 1));
    let mut fa = fs::File::open(a).map_err(|e| io_err(a, e))?;
    let mut fb = fs::File::open(b).map_err(|e| io_err(b, e))?;
    // One byte more than the size, so that a small file is read in one block and its
    // end seen at once; bounded for large files.
    let block = usize::try_from(size)
        .map_or(COMPARE_BLOCK, |s| s.saturating_add(1))
        .min(COMPARE_BLOCK);
    let mut ba = vec![0u8; block];
    let mut bb = vec![0u8; block];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| io_err(a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| io_err(b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < block {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
