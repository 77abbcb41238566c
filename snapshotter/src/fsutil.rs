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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn ts(s: i64, ns: i64) -> TimeSpec {
        TimeSpec::new(s, ns)
    }

    fn set_times(p: &Path, s: i64, ns: i64) {
        utimensat(
            None,
            p,
            &ts(s, 1),
            &ts(s, ns),
            UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }

    #[test]
    fn copy_tree_preserves_what_a_layer_needs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
        fs::create_dir(&dst).expect("mkdir");
        fs::write(src.join("sub/f"), "data").expect("write");
        // Two hardlink groups: {g1a, sub/g1b, sub/deeper/g1c} and {g2a, g2b}.
        fs::write(src.join("g1a"), "one").expect("write");
        fs::hard_link(src.join("g1a"), src.join("sub/g1b")).expect("link");
        fs::hard_link(src.join("g1a"), src.join("sub/deeper/g1c")).expect("link");
        fs::write(src.join("g2a"), "two").expect("write");
        fs::hard_link(src.join("g2a"), src.join("g2b")).expect("link");
        std::os::unix::fs::symlink("sub/f", src.join("ln")).expect("symlink");
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &src.join("null"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .expect("mknod");
            lchown(src.join("sub/f"), Some(1000), Some(2000)).expect("chown");
            lchown(src.join("ln"), Some(3000), Some(4000)).expect("lchown");
        }
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o750)).expect("chmod");
        let xattr_ok = xattr::set(src.join("sub/f"), "user.k", b"v").is_ok();
        set_times(&src.join("sub/f"), 1_000_000_000, 111);
        set_times(&src.join("ln"), 1_100_000_000, 222);
        set_times(&src.join("sub/deeper"), 1_200_000_000, 333);
        set_times(&src.join("sub"), 1_300_000_000, 444);
        set_times(&src, 1_400_000_000, 555);

        copy_tree(&src, &dst).expect("copy");

        let m = |p: &str| fs::symlink_metadata(dst.join(p)).expect("lstat");
        let g1: Vec<_> = ["g1a", "sub/g1b", "sub/deeper/g1c"]
            .map(|p| m(p).ino())
            .into();
        assert!(g1.iter().all(|i| *i == g1[0]), "one inode for group 1");
        assert_eq!(m("g1a").nlink(), 3);
        assert_eq!(m("g2a").ino(), m("g2b").ino(), "one inode for group 2");
        assert_ne!(m("g1a").ino(), m("g2a").ino(), "groups stay apart");
        assert_ne!(
            m("g1a").ino(),
            fs::metadata(src.join("g1a")).expect("stat").ino()
        );
        assert_eq!(fs::read_to_string(dst.join("sub/f")).expect("read"), "data");
        assert_eq!(
            fs::read_link(dst.join("ln")).expect("readlink"),
            Path::new("sub/f")
        );
        assert!(m("fifo").file_type().is_fifo());
        assert_eq!(m("fifo").mode() & 0o7777, 0o600);
        assert_eq!(
            m("sub/f").mode() & 0o7777,
            0o4755,
            "set-id bit survives chown"
        );
        assert_eq!(m("sub").mode() & 0o7777, 0o750);
        if root {
            assert!(m("null").file_type().is_char_device());
            assert_eq!(m("null").rdev(), nix::sys::stat::makedev(1, 3));
            assert_eq!((m("sub/f").uid(), m("sub/f").gid()), (1000, 2000));
            assert_eq!(
                (m("ln").uid(), m("ln").gid()),
                (3000, 4000),
                "symlink owner"
            );
        }
        if xattr_ok {
            assert_eq!(
                xattr::get(dst.join("sub/f"), "user.k").expect("getxattr"),
                Some(b"v".to_vec())
            );
        }
        for (p, s, ns) in [
            ("sub/f", 1_000_000_000, 111),
            ("ln", 1_100_000_000, 222),
            ("sub/deeper", 1_200_000_000, 333),
            ("sub", 1_300_000_000, 444),
            ("", 1_400_000_000, 555),
        ] {
            let meta = m(p);
            assert_eq!((meta.mtime(), meta.mtime_nsec()), (s, ns), "mtime of {p:?}");
        }
    }

    #[test]
    fn disk_usage_counts_inodes_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        fs::write(d.join("a"), vec![7u8; 100_000]).expect("write");
        fs::hard_link(d.join("a"), d.join("b")).expect("link");
        fs::create_dir(d.join("s")).expect("mkdir");
        std::os::unix::fs::symlink("a", d.join("s/l")).expect("symlink");
        let u = disk_usage(d).expect("usage");
        assert_eq!(u.inodes, 4, "root, a (=b), s, s/l");
        assert!(u.size >= 100_000 && u.size < 200_000, "{u:?}");
    }

    #[test]
    fn copy_tree_names_a_missing_source() {
        let tmp = tempfile::tempdir().expect("tmp");
        let err = copy_tree(&tmp.path().join("gone"), tmp.path()).expect_err("missing");
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
