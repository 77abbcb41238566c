//! The fingerprint of a layer directory: a SHA-256 over the metadata of every entry
//! (path, type, mode, owner, size, device, link count, mtime, ctime, link target), in
//! a fixed order. Any change to a file's bytes or metadata changes its ctime, so an
//! unchanged fingerprint means an unchanged tree; it costs one `lstat` per entry.
//!
//! The walk is by directory file descriptor (`openat`, `fstatat` and `readlinkat`
//! relative to the parent directory) rather than through `walkdir`, which stats every
//! entry by its full path: resolving each path again component by component, plus
//! building those paths, was about a third of a warm CLI export of a 20k-entry chain.
//! The bytes hashed are exactly those of the former `walkdir` walk (pre-order,
//! children sorted by name bytes, paths relative to the root joined by `/`), so stores
//! registered before keep their snapshot names.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use strata_oci::Digester;

use crate::error::DirectoryError;

/// One directory being walked: its descriptor and its entries, sorted by name.
struct Frame {
    dir: Dir,
    /// The directory's path relative to the root (empty for the root).
    rel: Vec<u8>,
    entries: std::vec::IntoIter<(CString, Stat)>,
}

/// A fingerprint of the metadata of every entry under `dir` (path, type, mode, owner,
/// size, device, link count, mtime, ctime, link target): equal fingerprints mean an
/// unchanged tree, as any change to an entry updates its ctime. Blocking: one `lstat`
/// per entry. Errors name `dir` and the entry at fault.
pub fn fingerprint(dir: &Path) -> Result<String, DirectoryError> {
    let fail = |rel: &[u8], e: rustix::io::Errno| DirectoryError::Read {
        dir: dir.to_path_buf(),
        path: if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(OsStr::from_bytes(rel))
        },
        source: std::io::Error::from(e),
    };
    let mut d = Digester::new();
    // The root as it is (a symlink is hashed as one), then what it leads to.
    let root = rustix::fs::lstat(dir).map_err(|e| fail(b"", e))?;
    let kind = FileType::from_raw_mode(root.st_mode);
    let target = match kind {
        FileType::Symlink => Some(rustix::fs::readlink(dir, Vec::new()).map_err(|e| fail(b"", e))?),
        _ => None,
    };
    record(&mut d, b"", &root, target.as_ref().map(|t| t.as_bytes()));
    if kind != FileType::Directory && kind != FileType::Symlink {
        return Ok(d.finish().hex().to_string());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A symlink to something other than a directory has nothing under it.
        Err(rustix::io::Errno::NOTDIR) if kind == FileType::Symlink => {
            return Ok(d.finish().hex().to_string())
        }
        Err(e) => return Err(fail(b"", e)),
    };
    let mut stack = vec![frame(fd, Vec::new()).map_err(|e| fail(b"", e))?];
    while let Some(top) = stack.last_mut() {
        let Some((name, st)) = top.entries.next() else {
            stack.pop();
            continue;
        };
        let mut rel = top.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let parent = top.dir.fd().map_err(|e| fail(&top.rel, e))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let target = match kind {
            FileType::Symlink => Some(
                rustix::fs::readlinkat(parent, name.as_c_str(), Vec::new())
                    .map_err(|e| fail(&rel, e))?,
            ),
            _ => None,
        };
        record(&mut d, &rel, &st, target.as_ref().map(|t| t.as_bytes()));
        if kind == FileType::Directory {
            let fd = rustix::fs::openat(
                parent,
                name.as_c_str(),
                flags | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| fail(&rel, e))?;
            let child = frame(fd, rel.clone()).map_err(|e| fail(&rel, e))?;
            stack.push(child);
        }
    }
    Ok(d.finish().hex().to_string())
}

/// Reads and stats the entries of the directory `fd` (at `rel`), sorted by name bytes.
fn frame(fd: OwnedFd, rel: Vec<u8>) -> Result<Frame, rustix::io::Errno> {
    let mut dir = Dir::new(fd)?;
    let mut entries = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW)?;
        entries.push((name.to_owned(), st));
    }
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(Frame {
        dir,
        rel,
        entries: entries.into_iter(),
    })
}

/// Hashes one entry: path, NUL, ten metadata fields, the link target, 0xff.
// The `Stat` field types differ between architectures; every field is widened to i64
// (as the `MetadataExt` values were).
#[allow(clippy::unnecessary_cast)]
fn record(d: &mut Digester, rel: &[u8], st: &Stat, target: Option<&[u8]>) {
    d.update(rel);
    d.update(&[0]);
    for n in [
        st.st_mode as i64,
        st.st_uid as i64,
        st.st_gid as i64,
        st.st_size as i64,
        st.st_rdev as i64,
        st.st_nlink as i64,
        st.st_mtime as i64,
        st.st_mtime_nsec as i64,
        st.st_ctime as i64,
        st.st_ctime_nsec as i64,
    ] {
        d.update(&n.to_le_bytes());
    }
    if let Some(t) = target {
        d.update(t);
    }
    d.update(&[0xff]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The former walkdir walk, kept as the reference the fingerprint must equal.
    fn reference(dir: &Path) -> String {
        let mut d = Digester::new();
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.unwrap();
            let md = entry.path().symlink_metadata().unwrap();
            let rel = entry.path().strip_prefix(dir).unwrap();
            d.update(rel.as_os_str().as_bytes());
            d.update(&[0]);
            for n in [
                md.mode() as i64,
                md.uid() as i64,
                md.gid() as i64,
                md.size() as i64,
                md.rdev() as i64,
                md.nlink() as i64,
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
            ] {
                d.update(&n.to_le_bytes());
            }
            if md.file_type().is_symlink() {
                d.update(
                    std::fs::read_link(entry.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes(),
                );
            }
            d.update(&[0xff]);
        }
        d.finish().hex().to_string()
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "etc/apt",
            "usr/lib/x",
            "usr/lib/x/deep/er",
            "Upper",
            "empty",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for (f, c) in [
            ("etc/hostname", "box\n"),
            ("etc/apt/sources", "deb x\n"),
            ("usr/lib/x/deep/er/file", "deep"),
            ("Upper/a", "upper"),
            ("usr/a-b", "dash"),
            ("usr/a.b", "dot"),
            ("usr/a", "plain"),
        ] {
            std::fs::write(r.join(f), c).unwrap();
        }
        std::os::unix::fs::symlink("../etc/hostname", r.join("usr/host")).unwrap();
        std::os::unix::fs::symlink("/nowhere", r.join("dangling")).unwrap();
        std::fs::hard_link(r.join("usr/a"), r.join("etc/a-link")).unwrap();
        t
    }

    #[test]
    fn equals_the_walkdir_fingerprint_so_existing_snapshot_names_stay_valid() {
        let t = tree();
        assert_eq!(fingerprint(t.path()).unwrap(), reference(t.path()));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(fingerprint(empty.path()).unwrap(), reference(empty.path()));
    }

    #[test]
    fn any_change_gives_another_fingerprint() {
        let t = tree();
        let r = t.path();
        let mut seen = vec![fingerprint(r).unwrap()];
        let changes: Vec<Box<dyn Fn()>> = vec![
            // Same size, same name: only the bytes (and so the ctime) change.
            Box::new(|| std::fs::write(r.join("usr/lib/x/deep/er/file"), "DEEP").unwrap()),
            Box::new(|| std::fs::write(r.join("empty/new"), "").unwrap()),
            Box::new(|| std::fs::remove_file(r.join("Upper/a")).unwrap()),
            Box::new(|| {
                std::fs::remove_file(r.join("usr/host")).unwrap();
                std::os::unix::fs::symlink("../etc/apt", r.join("usr/host")).unwrap();
            }),
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(r.join("etc/apt"), std::fs::Permissions::from_mode(0o700))
                    .unwrap()
            }),
            Box::new(|| std::fs::rename(r.join("usr/a-b"), r.join("usr/a_b")).unwrap()),
        ];
        for change in changes {
            // ctime granularity: make sure the clock moved.
            std::thread::sleep(std::time::Duration::from_millis(10));
            change();
            let fp = fingerprint(r).unwrap();
            assert_eq!(fp, reference(r));
            assert!(!seen.contains(&fp), "a change went unnoticed");
            seen.push(fp);
        }
        assert_eq!(fingerprint(r).unwrap(), seen[seen.len() - 1], "stable");
    }

    #[test]
    fn an_unreadable_layer_is_an_error_naming_it() {
        let err = fingerprint(Path::new("/nonexistent/layer")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/layer"), "{msg}");
        assert!(
            matches!(&err, DirectoryError::Read { dir, .. } if dir == Path::new("/nonexistent/layer")),
            "{err:?}"
        );
    }
}
