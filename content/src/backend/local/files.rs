//! File-system plumbing of the local store: atomic writes, directory syncs, ingest locks.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

pub(super) fn io_err(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(context.to_string(), e)
}

pub(super) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// Writes `bytes` to `path` atomically: temp file beside it, fsync, rename, dir fsync.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4()
    ));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    fsync_dir(dir)
}

/// Tries to take an exclusive `flock` without waiting; `Ok(false)` if another holder has it.
pub(super) fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, owned file descriptor has no memory-safety conditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}
