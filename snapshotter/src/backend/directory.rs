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
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::native::set_mode;
use super::{blocking, Core};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::metadata;
use crate::mount::Mount;
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};

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

    fn mounts_sync(core: &Core, key: &str) -> Result<Vec<Mount>> {
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
}

#[async_trait]
impl Snapshotter for DirectorySnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || core.stat(&key)).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let (core, fieldpaths) = (self.core.clone(), fieldpaths.to_vec());
        blocking(move || core.update(&info, &fieldpaths)).await
    }

    /// Usage of the registered directory (committed) or of the view's own empty dir.
    async fn usage(&self, key: &str) -> Result<Usage> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || {
            let rec = core.get(&key)?;
            let dir = rec.path.unwrap_or_else(|| core.snapshot_dir(rec.id));
            fsutil::disk_usage(&dir)
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || Self::mounts_sync(&core, &key)).await
    }

    /// Always `Unsupported`: registered trees are read-only.
    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        _labels: Labels,
    ) -> Result<Vec<Mount>> {
        Err(Error::Unsupported(format!(
            "the directory snapshotter cannot prepare writable snapshot {key:?} (parent {parent:?}); register directories instead"
        )))
    }

    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        let core = self.core.clone();
        let key = key.to_string();
        let parent = parent.map(str::to_string);
        blocking(move || {
            core.create_with_dir(&key, Kind::View, parent.as_deref(), &labels, |dir, _| {
                set_mode(dir, 0o755)
            })?;
            Self::mounts_sync(&core, &key)
        })
        .await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (core, name, key) = (self.core.clone(), name.to_string(), key.to_string());
        blocking(move || core.commit(&name, &key, &labels)).await
    }

    /// Forgets the snapshot; a registered directory itself is left untouched.
    async fn remove(&self, key: &str) -> Result<()> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || core.remove(&key)).await
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let (core, filter) = (self.core.clone(), filter.clone());
        blocking(move || core.walk(&filter)).await
    }
}
