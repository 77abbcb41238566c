//! The native backend (containerd `snapshots/native`): one plain directory per
//! snapshot; `prepare` copies the parent's whole tree.
//!
//! Active snapshots are `bind` mounts (`rbind`, `rw`) of `<root>/snapshots/<id>`.
//! Copies reflink each file where the filesystem can and preserve ownership, modes,
//! xattrs, hardlink groups, devices, fifos, symlinks and nanosecond times. Unlike
//! containerd, a view of a committed snapshot is not a copy: committed snapshots are
//! immutable, so a view is a read-only bind mount of the committed directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Core, Layout};
use crate::error::Result;
use crate::fsutil;
use crate::metadata::Record;
use crate::mount::Mount;
use crate::snapshotter::Kind;

/// A snapshotter storing every snapshot as a full directory tree.
#[derive(Clone)]
pub struct NativeSnapshotter {
    core: Arc<Core>,
}

impl std::fmt::Debug for NativeSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSnapshotter")
            .field("root", &self.core.root())
            .finish()
    }
}

impl NativeSnapshotter {
    /// Opens the snapshotter rooted at `root` (created if missing); a reopened root
    /// holds the same snapshots.
    pub fn open(root: impl AsRef<Path>) -> Result<NativeSnapshotter> {
        Ok(NativeSnapshotter {
            core: Core::open(root.as_ref())?,
        })
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        self.core.root()
    }
}

impl Layout for NativeSnapshotter {
    fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// An active snapshot starts as a copy of its parent; a view is a bind mount of
    /// the committed parent, so its own directory stays empty.
    fn populate(core: &Core, kind: Kind, dir: &Path, parent: Option<&Record>) -> Result<()> {
        match parent {
            Some(p) if kind == Kind::Active => fsutil::copy_tree(&core.snapshot_dir(p.id), dir),
            _ => set_mode(dir, 0o755),
        }
    }

    fn mounts_of(core: &Core, key: &str) -> Result<Vec<Mount>> {
        let (rec, ancestors) = core.mountable(key)?;
        Ok(match (rec.info.kind, ancestors.first()) {
            (Kind::View, Some(parent)) => vec![Mount::bind(core.snapshot_dir(parent.id), true)],
            (Kind::View, None) => vec![Mount::bind(core.snapshot_dir(rec.id), true)],
            _ => vec![Mount::bind(core.snapshot_dir(rec.id), false)],
        })
    }

    fn usage_dir(core: &Core, rec: &Record) -> PathBuf {
        core.snapshot_dir(rec.id)
    }
}

pub(crate) fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| crate::Error::io(format!("chmod {}", dir.display()), e))
}
