//! The directory backend: existing directories registered as committed snapshots, in
//! a chain, without copying them. Each registered directory is the full state of its
//! snapshot (not a diff against its parent), which is what the differ compares.
//!
//! Views are read-only bind mounts of the parent's registered directory (a view
//! without a parent is an empty directory under the root). The backend never writes
//! into a registered directory and `remove` only forgets it. It has no writable
//! snapshots: `prepare` is `Unsupported` — layering writes on a user's tree would
//! need an overlay, and the CLI only exports trees users already have.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::native::set_mode;
use super::{blocking, Core, Layout};
use crate::error::{Error, Result};
use crate::metadata::{self, Record};
use crate::mount::Mount;
use crate::snapshotter::{Info, Kind, Labels};

/// A snapshotter whose committed snapshots are directories registered by path.
#[derive(Clone)]
pub struct DirectorySnapshotter {
    core: Arc<Core>,
}

impl std::fmt::Debug for DirectorySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySnapshotter")
            .field("root", &self.core.root())
            .finish()
    }
}

impl DirectorySnapshotter {
    /// Opens the snapshotter whose metadata lives under `root` (created if missing);
    /// a reopened root holds the same registrations.
    pub fn open(root: impl AsRef<Path>) -> Result<DirectorySnapshotter> {
        Ok(DirectorySnapshotter {
            core: Core::open(root.as_ref())?,
        })
    }

    /// The snapshotter's root directory (its metadata, not the registered trees).
    pub fn root(&self) -> &Path {
        self.core.root()
    }

    /// Records `dir` (canonicalized) as committed snapshot `name` on committed
    /// `parent`, with `labels`. `dir` is the full tree of the snapshot and is not
    /// copied, so it must not change while registered. Errors: `InvalidPath` naming
    /// `dir` when it does not exist or is not a directory; `AlreadyExists` for a taken
    /// name; `NotFound`/`FailedPrecondition` naming a missing/uncommitted parent.
    pub async fn register(
        &self,
        name: &str,
        parent: Option<&str>,
        dir: &Path,
        labels: Labels,
    ) -> Result<Info> {
        let core = self.core.clone();
        let name = name.to_string();
        let parent = parent.map(str::to_string);
        let dir = dir.to_path_buf();
        blocking(move || {
            let path = dir.canonicalize().map_err(|e| Error::InvalidPath {
                path: dir.clone(),
                reason: if e.kind() == io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    e.to_string()
                },
            })?;
            if !path.is_dir() {
                return Err(Error::InvalidPath {
                    path: dir,
                    reason: "is not a directory".into(),
                });
            }
            core.meta
                .write(|tx| {
                    metadata::create(
                        tx,
                        &name,
                        Kind::Committed,
                        parent.as_deref(),
                        &labels,
                        Some(&path),
                    )
                })
                .map(|rec| rec.info)
        })
        .await
    }

    /// The directory registered as committed snapshot `name`.
    pub async fn path(&self, name: &str) -> Result<std::path::PathBuf> {
        let (core, name) = (self.core.clone(), name.to_string());
        blocking(move || {
            let rec = core.get(&name)?;
            rec.path.ok_or_else(|| Error::FailedPrecondition {
                key: name,
                reason: "is not a registered directory".into(),
            })
        })
        .await
    }
}

impl Layout for DirectorySnapshotter {
    fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Registered trees are read-only: no active snapshots.
    fn refuse(key: &str, kind: Kind, parent: Option<&str>) -> Result<()> {
        if kind == Kind::Active {
            return Err(Error::Unsupported(format!(
                "the directory snapshotter cannot prepare writable snapshot {key:?} (parent {parent:?}); register directories instead"
            )));
        }
        Ok(())
    }

    /// A view's own directory stays empty: it mounts its parent's registered tree.
    fn populate(_core: &Core, _kind: Kind, dir: &Path, _parent: Option<&Record>) -> Result<()> {
        set_mode(dir, 0o755)
    }

    fn mounts_of(core: &Core, key: &str) -> Result<Vec<Mount>> {
        let (rec, ancestors) = core.mountable(key)?;
        let dir = match ancestors.first() {
            Some(parent) => parent.path.clone().ok_or_else(|| {
                Error::Metadata(format!(
                    "parent {:?} of {key:?} has no registered directory",
                    parent.info.name
                ))
            })?,
            None => core.snapshot_dir(rec.id),
        };
        if !dir.is_dir() {
            return Err(Error::InvalidPath {
                path: dir,
                reason: format!("the directory behind view {key:?} is gone"),
            });
        }
        Ok(vec![Mount::bind(dir, true)])
    }

    /// The registered directory (committed) or the view's own empty dir. `remove`
    /// only forgets a registration; the registered directory is left untouched.
    fn usage_dir(core: &Core, rec: &Record) -> PathBuf {
        rec.path
            .clone()
            .unwrap_or_else(|| core.snapshot_dir(rec.id))
    }
}
