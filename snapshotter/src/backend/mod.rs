//! Snapshotter backends, and the parts they share: the metadata database, the layout of
//! a snapshotter root, and staged creation/removal of snapshot directories.
//!
//! A root holds `metadata.db` (see the metadata module) and `snapshots/<id>`, one
//! directory per snapshot named by its stable numeric id. A new snapshot's directory is
//! filled under `snapshots/new-*` first and renamed into place inside the transaction
//! that records it; a removed one is renamed to `snapshots/rm-*` inside the transaction
//! that forgets it, then deleted. Leftovers of a crash are cleaned up on open.

pub(crate) mod directory;
pub(crate) mod native;
pub(crate) mod overlay;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::metadata::{self, Metadata, Record};
use crate::mount::Mount;
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};
use crate::unique::{left_by_dead_process, unique_suffix};

/// What every backend holds: its root and its metadata.
pub(crate) struct Core {
    root: PathBuf,
    pub meta: Metadata,
}

/// Runs blocking snapshotter work (SQLite, tree copies, walks) off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("snapshotter worker task", std::io::Error::other(e)))?
}

impl Core {
    /// Opens (creating) the root: `metadata.db` and `snapshots/`.
    pub(crate) fn open(root: &Path) -> Result<Arc<Core>> {
        let snapshots = root.join("snapshots");
        fs::create_dir_all(&snapshots)
            .map_err(|e| Error::io(format!("creating {}", snapshots.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        let meta = Metadata::open(&root.join("metadata.db"))?;
        let core = Core { root, meta };
        core.clean_leftovers()?;
        Ok(Arc::new(core))
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the snapshot with id `id`.
    pub(crate) fn snapshot_dir(&self, id: i64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Removes staging and removal directories a crash left behind. Only `new-*` dirs
    /// older than this process could be another process's work in progress, so only
    /// `rm-*` dirs and `new-*` dirs of dead processes are removed.
    fn clean_leftovers(&self) -> Result<()> {
        let dir = self.root.join("snapshots");
        let entries =
            fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.starts_with("rm-") {
                true
            } else if let Some(rest) = name.strip_prefix("new-") {
                left_by_dead_process(rest)
            } else {
                false
            };
            if stale {
                fsutil::remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Creates snapshot `key`: checks the key and parent, lets `populate` fill a
    /// staging directory (given the parent's record), then records the snapshot and
    /// renames the staging directory to `snapshots/<id>` in one transaction.
    pub(crate) fn create_with_dir(
        &self,
        key: &str,
        kind: Kind,
        parent: Option<&str>,
        labels: &Labels,
        populate: impl FnOnce(&Path, Option<&Record>) -> Result<()>,
    ) -> Result<Record> {
        metadata::check_key(key)?;
        let parent_rec = self.meta.read(|c| {
            if metadata::find(c, key)?.is_some() {
                return Err(Error::AlreadyExists(key.to_string()));
            }
            parent.map(|p| metadata::committed_parent(c, p)).transpose()
        })?;
        let staging = self
            .root
            .join("snapshots")
            .join(format!("new-{}", unique_suffix()));
        fs::create_dir(&staging)
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        let result = populate(&staging, parent_rec.as_ref()).and_then(|()| {
            self.meta.write(|tx| {
                let rec = metadata::create(tx, key, kind, parent, labels, None)?;
                let dir = self.snapshot_dir(rec.id);
                fs::rename(&staging, &dir).map_err(|e| {
                    Error::io(
                        format!("moving {} to {}", staging.display(), dir.display()),
                        e,
                    )
                })?;
                Ok(rec)
            })
        });
        if result.is_err() {
            // Best effort: the error being returned matters more than a leftover,
            // which the next open cleans up anyway.
            let _ = fsutil::remove_tree(&staging);
        }
        result
    }

    /// Removes snapshot `key` and its directory (if it has one under `snapshots/`).
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        let trash = self
            .root
            .join("snapshots")
            .join(format!("rm-{}", unique_suffix()));
        let moved = self.meta.write(|tx| {
            let rec = metadata::remove(tx, key)?;
            let dir = self.snapshot_dir(rec.id);
            match fs::rename(&dir, &trash) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::io(
                    format!("removing snapshot {key:?} directory {}", dir.display()),
                    e,
                )),
            }
        })?;
        if moved {
            fsutil::remove_tree(&trash)?;
        }
        Ok(())
    }

    /// The record of `key`; `NotFound` naming it.
    pub(crate) fn get(&self, key: &str) -> Result<Record> {
        self.meta.read(|c| metadata::get(c, key))
    }

    /// The record of `key` (which must be active or a view) and its ancestors, nearest
    /// first; `FailedPrecondition` for a committed snapshot (it has no mounts).
    pub(crate) fn mountable(&self, key: &str) -> Result<(Record, Vec<Record>)> {
        self.meta.read(|c| {
            let rec = metadata::get(c, key)?;
            if rec.info.kind == Kind::Committed {
                return Err(Error::FailedPrecondition {
                    key: key.to_string(),
                    reason: "committed snapshots have no mounts; create a view of it".into(),
                });
            }
            let ancestors = metadata::ancestors(c, &rec)?;
            Ok((rec, ancestors))
        })
    }

    /// containerd's `Stat`.
    pub(crate) fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.get(key)?.info)
    }

    /// containerd's `Update` (labels only).
    pub(crate) fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        self.meta.write(|tx| metadata::update(tx, info, fieldpaths))
    }

    /// containerd's `Commit`: metadata only; the directory keeps its id.
    pub(crate) fn commit(&self, name: &str, key: &str, labels: &Labels) -> Result<()> {
        self.meta
            .write(|tx| metadata::commit(tx, name, key, labels))
            .map(|_| ())
    }

    /// containerd's `Walk`, sorted by name.
    pub(crate) fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        self.meta.read(|c| metadata::walk(c, filter))
    }
}

/// What one backend storing snapshots under a [`Core`] does its own way: how a new
/// snapshot's directory is filled, what its mounts are, which directory its usage
/// counts. [`Snapshotter`] is implemented once for all of them over this.
pub(crate) trait Layout: Send + Sync {
    /// The backend's root and metadata.
    fn core(&self) -> &Arc<Core>;

    /// Refuses to create a snapshot of `kind` the backend cannot hold (before anything
    /// is checked or written); every kind is accepted by default.
    fn refuse(_key: &str, _kind: Kind, _parent: Option<&str>) -> Result<()> {
        Ok(())
    }

    /// Fills `dir`, the staging directory of a new snapshot of `kind` on `parent`.
    fn populate(core: &Core, kind: Kind, dir: &Path, parent: Option<&Record>) -> Result<()>;

    /// The mounts of active or view snapshot `key`.
    fn mounts_of(core: &Core, key: &str) -> Result<Vec<Mount>>;

    /// The directory whose disk usage is the usage of snapshot `rec`.
    fn usage_dir(core: &Core, rec: &Record) -> PathBuf;
}

/// Creates snapshot `key` of `kind` through `L`'s layout and returns its mounts.
async fn create<L: Layout>(
    layout: &L,
    key: &str,
    kind: Kind,
    parent: Option<&str>,
    labels: Labels,
) -> Result<Vec<Mount>> {
    L::refuse(key, kind, parent)?;
    let core = layout.core().clone();
    let key = key.to_string();
    let parent = parent.map(str::to_string);
    blocking(move || {
        core.create_with_dir(&key, kind, parent.as_deref(), &labels, |dir, parent| {
            L::populate(&core, kind, dir, parent)
        })?;
        L::mounts_of(&core, &key)
    })
    .await
}

#[async_trait]
impl<L: Layout> Snapshotter for L {
    async fn stat(&self, key: &str) -> Result<Info> {
        let (core, key) = (self.core().clone(), key.to_string());
        blocking(move || core.stat(&key)).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let (core, fieldpaths) = (self.core().clone(), fieldpaths.to_vec());
        blocking(move || core.update(&info, &fieldpaths)).await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let (core, key) = (self.core().clone(), key.to_string());
        blocking(move || {
            let rec = core.get(&key)?;
            fsutil::disk_usage(&L::usage_dir(&core, &rec))
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (core, key) = (self.core().clone(), key.to_string());
        blocking(move || L::mounts_of(&core, &key)).await
    }

    async fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        create(self, key, Kind::Active, parent, labels).await
    }

    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        create(self, key, Kind::View, parent, labels).await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (core, name, key) = (self.core().clone(), name.to_string(), key.to_string());
        blocking(move || core.commit(&name, &key, &labels)).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let (core, key) = (self.core().clone(), key.to_string());
        blocking(move || core.remove(&key)).await
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let (core, filter) = (self.core().clone(), filter.clone());
        blocking(move || core.walk(&filter)).await
    }
}
