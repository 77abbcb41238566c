//! Placing a blob that the content store keeps as a local file into an OCI layout
//! directory without copying its bytes, when the filesystem allows it.
//!
//! A committed blob is content-addressed and never changes, so a layout written on the
//! store's filesystem can share it instead of copying it, in this order of preference:
//!
//! 1. a **reflink** (`FICLONE`; btrfs, xfs): the layout gets its own inode that shares
//!    the data extents copy-on-write, so editing it can never touch the store;
//! 2. a **hard link**: the layout's file *is* the store's file. The trade-off: a user
//!    who edits a layout blob in place (instead of replacing the file) changes the
//!    store's blob too. Such a blob no longer matches its digest, which `strata fsck`
//!    (the content crate's `fsck`) reports by digest; tools that rewrite files by
//!    replacing them (skopeo, umoci, `cp`, editors that save via rename) are not
//!    affected;
//! 3. a **kernel copy** (`copy_file_range` through `std::fs::copy`) followed by an fsync,
//!    when neither works: another filesystem (`EXDEV`), no permission (`EPERM`), too
//!    many links (`EMLINK`), a filesystem without links or clones, …
//!
//! Whatever the method, the file appears under a temporary name and is renamed into
//! place, so a reader never sees a partial blob. A link or a clone needs no data fsync:
//! the store synced the bytes before committing them, a hard link only adds a directory
//! entry to an inode that is already durable, and a clone is a metadata operation that
//! btrfs and xfs journal before the rename that follows it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use crate::error::{Error, Result};

/// How a blob file reached the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A reflink: a new inode sharing the store file's data extents.
    Cloned,
    /// A hard link to the store's file.
    Linked,
    /// A copy of the bytes (kernel copy), synced.
    Copied,
}

/// Makes `dest` a file with the bytes of `src` (a committed, immutable blob file of the
/// store), through `tmp` (same directory as `dest`) renamed into place. Blocking.
pub(crate) fn place_blob_file(src: &Path, tmp: &Path, dest: &Path) -> Result<Placement> {
    remove_if_present(tmp)?;
    let placed = materialize(src, tmp).and_then(|placement| {
        fs::rename(tmp, dest).map(|()| placement).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), dest.display()),
                e,
            )
        })
    });
    if placed.is_err() {
        // Leave nothing half-done behind; the first error is the one to report.
        let _ = fs::remove_file(tmp);
    }
    placed
}

/// Creates `tmp` with the bytes of `src` by the cheapest method that works.
fn materialize(src: &Path, tmp: &Path) -> Result<Placement> {
    if clone_file(src, tmp)? {
        return Ok(Placement::Cloned);
    }
    match fs::hard_link(src, tmp) {
        Ok(()) => return Ok(Placement::Linked),
        // Any failure falls back to a copy: EXDEV, EPERM, EMLINK, ENOTSUP… If the
        // cause also stops a copy (the source is gone, the disk is full), the copy
        // reports it with its own path.
        Err(e) => tracing::debug!(
            src = %src.display(),
            dest = %tmp.display(),
            error = %e,
            "hard link failed; copying"
        ),
    }
    fs::copy(src, tmp)
        .map_err(|e| Error::io(format!("copying {} to {}", src.display(), tmp.display()), e))?;
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
    Ok(Placement::Copied)
}

/// Tries a reflink of `src` at `tmp`. `Ok(false)` (and no `tmp`) when the filesystem
/// cannot clone it; errors only for what would stop any method (opening `src`,
/// creating `tmp`).
fn clone_file(src: &Path, tmp: &Path) -> Result<bool> {
    let source = File::open(src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
    let target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    match rustix::fs::ioctl_ficlone(&target, &source) {
        Ok(()) => Ok(true),
        Err(e) => {
            // EOPNOTSUPP/ENOTTY (ext4, tmpfs), EXDEV (another filesystem), EINVAL, …
            tracing::trace!(src = %src.display(), error = %e, "reflink failed");
            drop(target);
            fs::remove_file(tmp)
                .map_err(|e| Error::io(format!("removing {}", tmp.display()), e))?;
            Ok(false)
        }
    }
}

/// Removes a temporary file a failed earlier run may have left.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn blob(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join("blob");
        fs::write(&p, bytes).expect("write blob");
        p
    }

    #[test]
    fn same_filesystem_shares_the_data_and_leaves_no_temporary() {
        let store = tempfile::tempdir().expect("tempdir");
        let src = blob(store.path(), b"layer bytes");
        let out = tempfile::tempdir_in(store.path()).expect("tempdir");
        let (tmp, dest) = (out.path().join("b.partial"), out.path().join("b"));
        let placement = place_blob_file(&src, &tmp, &dest).expect("place");
        assert_eq!(fs::read(&dest).expect("dest"), b"layer bytes");
        assert!(!tmp.exists(), "the temporary name is gone");
        let (s, d) = (fs::metadata(&src).unwrap(), fs::metadata(&dest).unwrap());
        match placement {
            Placement::Linked => assert_eq!((s.dev(), s.ino()), (d.dev(), d.ino())),
            Placement::Cloned => assert_ne!(s.ino(), d.ino()),
            Placement::Copied => panic!("a file on the same filesystem was copied"),
        }
    }

    #[test]
    fn another_filesystem_gets_a_copy() {
        let store = tempfile::tempdir().expect("tempdir");
        let src = blob(store.path(), b"layer bytes");
        // /dev/shm is a tmpfs; the store's temporary directory must be elsewhere.
        let out = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
        let s = fs::metadata(&src).unwrap();
        assert_ne!(
            s.dev(),
            fs::metadata(out.path()).unwrap().dev(),
            "TMPDIR must not be on /dev/shm for this test"
        );
        let (tmp, dest) = (out.path().join("b.partial"), out.path().join("b"));
        // A stale temporary of an interrupted run is replaced.
        fs::write(&tmp, b"stale").expect("stale tmp");
        let placement = place_blob_file(&src, &tmp, &dest).expect("place");
        assert_eq!(placement, Placement::Copied);
        assert_eq!(fs::read(&dest).expect("dest"), b"layer bytes");
        assert!(!tmp.exists());
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it_and_leaves_nothing() {
        let out = tempfile::tempdir().expect("tempdir");
        let src = out.path().join("gone");
        let (tmp, dest) = (out.path().join("b.partial"), out.path().join("b"));
        let err = place_blob_file(&src, &tmp, &dest).expect_err("missing source");
        assert!(err.to_string().contains("gone"), "{err}");
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(!tmp.exists() && !dest.exists());
    }
}
