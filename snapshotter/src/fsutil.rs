//! Filesystem helpers of the backends: a metadata-preserving tree copy (the native
//! backend's prepare) and disk usage.
//!
//! Written by hand because no well-kept crate copies a tree preserving everything a
//! container layer needs (ownership, modes, xattrs, hardlink groups, device nodes,
//! fifos, nanosecond times) with per-file reflinks; this follows containerd's
//! `continuity/fs.CopyDir`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};
use crate::snapshotter::Usage;

fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

fn nix_err(what: &str, path: &Path, e: nix::Error) -> Error {
    io_err(what, path, io::Error::from_raw_os_error(e as i32))
}

/// Copies the contents of `src` into the existing directory `dst` (and `src`'s own
/// metadata onto `dst`), preserving ownership, modes, xattrs, hardlinks, devices, fifos,
/// sockets, symlinks and nanosecond times. Regular files are reflinked when the
/// filesystem can, copied otherwise.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    copy_dir_contents(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(|e| io_err("reading", src, e))?;
    copy_metadata(src, dst, &meta)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let entries = fs::read_dir(src).map_err(|e| io_err("reading directory", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("reading directory", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| io_err("reading", &from, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| io_err("creating directory", &to, e))?;
            copy_dir_contents(&from, &to, links)?;
            copy_metadata(&from, &to, &meta)?;
            continue;
        }
        if meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&id) {
                fs::hard_link(first, &to).map_err(|e| io_err("hardlinking", &to, e))?;
                continue;
            }
            links.insert(id, to.clone());
        }
        if ft.is_file() {
            copy_file(&from, &to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| io_err("reading link", &from, e))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| io_err("creating symlink", &to, e))?;
        } else {
            // Device nodes, fifos and sockets: recreate the node.
            let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
            nix::sys::stat::mknod(&to, kind, perm, meta.rdev())
                .map_err(|e| nix_err("creating node", &to, e))?;
        }
        copy_metadata(&from, &to, &meta)?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let mut src = File::open(from).map_err(|e| io_err("opening", from, e))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| io_err("creating", to, e))?;
    // SAFETY: FICLONE takes the source fd as its argument; both fds are open.
    let cloned = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) } == 0;
    if !cloned {
        // std's copy uses copy_file_range/sendfile where it can.
        io::copy(&mut src, &mut dst).map_err(|e| io_err("copying to", to, e))?;
    }
    Ok(())
}

/// Ownership, then xattrs (chown clears security.capability), then mode (chown
/// clears set-id bits), then times (everything else changes them).
fn copy_metadata(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
    let is_link = meta.file_type().is_symlink();
    lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(|e| io_err("chown", to, e))?;
    let names = match xattr::list(from) {
        Ok(names) => names.collect::<Vec<_>>(),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
        Err(e) => return Err(io_err("listing xattrs of", from, e)),
    };
    for name in names {
        if let Some(value) =
            xattr::get(from, &name).map_err(|e| io_err("reading xattrs of", from, e))?
        {
            xattr::set(to, &name, &value).map_err(|e| {
                io_err(
                    &format!("setting xattr {} on", name.to_string_lossy()),
                    to,
                    e,
                )
            })?;
        }
    }
    if !is_link {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io_err("chmod", to, e))?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, to, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| nix_err("setting times of", to, e))?;
    Ok(())
}

/// Disk usage of the tree at `dir` (containerd's `fs.DiskUsage`): allocated bytes
/// (blocks × 512) and inodes, counting each hardlinked inode once. The root counts.
pub(crate) fn disk_usage(dir: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err("reading", &path, e))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(|e| io_err("reading directory", &path, e))? {
                let entry = entry.map_err(|e| io_err("reading directory", &path, e))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

/// Removes `path` (a tree) if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}
