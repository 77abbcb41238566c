//! The native backend (containerd `snapshots/native`): one plain directory per
//! snapshot; `prepare` copies the parent's whole tree.
//!
//! Active snapshots are `bind` mounts (`rbind`, `rw`) of `<root>/snapshots/<id>`.
//! Copies reflink each file where the filesystem can and preserve ownership, modes,
//! xattrs, hardlink groups, devices, fifos, symlinks and nanosecond times. Unlike
//! containerd, a view of a committed snapshot is not a copy: committed snapshots are
//! immutable, so a view is a read-only bind mount of the committed directory.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{blocking, Core};
use crate::error::Result;
use crate::fsutil;
use crate::mount::Mount;
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};

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

    fn mounts_sync(core: &Core, key: &str) -> Result<Vec<Mount>> {
        let (rec, ancestors) = core.mountable(key)?;
        Ok(match (rec.info.kind, ancestors.first()) {
            (Kind::View, Some(parent)) => vec![Mount::bind(core.snapshot_dir(parent.id), true)],
            (Kind::View, None) => vec![Mount::bind(core.snapshot_dir(rec.id), true)],
            _ => vec![Mount::bind(core.snapshot_dir(rec.id), false)],
        })
    }

    async fn create(
        &self,
        key: &str,
        kind: Kind,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let core = self.core.clone();
        let key = key.to_string();
        let parent = parent.map(str::to_string);
        blocking(move || {
            let copy_parent = kind == Kind::Active;
            core.create_with_dir(
                &key,
                kind,
                parent.as_deref(),
                &labels,
                |dir, parent| match parent {
                    Some(p) if copy_parent => fsutil::copy_tree(&core.snapshot_dir(p.id), dir),
                    _ => set_mode(dir, 0o755),
                },
            )?;
            Self::mounts_sync(&core, &key)
        })
        .await
    }
}

pub(crate) fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| crate::Error::io(format!("chmod {}", dir.display()), e))
}

#[async_trait]
impl Snapshotter for NativeSnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || core.stat(&key)).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let (core, fieldpaths) = (self.core.clone(), fieldpaths.to_vec());
        blocking(move || core.update(&info, &fieldpaths)).await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || {
            let rec = core.get(&key)?;
            fsutil::disk_usage(&core.snapshot_dir(rec.id))
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || Self::mounts_sync(&core, &key)).await
    }

    async fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(key, Kind::Active, parent, labels).await
    }

    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(key, Kind::View, parent, labels).await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (core, name, key) = (self.core.clone(), name.to_string(), key.to_string());
        blocking(move || core.commit(&name, &key, &labels)).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let (core, key) = (self.core.clone(), key.to_string());
        blocking(move || core.remove(&key)).await
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let (core, filter) = (self.core.clone(), filter.clone());
        blocking(move || core.walk(&filter)).await
    }
}
