//! The overlay backend (containerd `snapshots/overlay`): every snapshot is an upper
//! directory `<root>/snapshots/<id>/fs` (with its overlay `work` dir beside it);
//! a snapshot's tree is its `fs` over its parents' `fs` dirs.
//!
//! Mounts: an active snapshot without a parent is a `bind` mount of its `fs`; with
//! parents it is an `overlay` with `workdir=`, `upperdir=` and
//! `lowerdir=<parent fs>:<grandparent fs>:…` (topmost first). A view is a read-only
//! bind mount of its parent's `fs` when the parent is the only layer, otherwise an
//! overlay with only `lowerdir=` (read-only by nature, and marked `ro`). Commit only
//! records the new state: the upper dir becomes a lower for children.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::native::set_mode;
use super::{Core, Layout};
use crate::error::{Error, Result};
use crate::metadata::Record;
use crate::mount::Mount;
use crate::snapshotter::Kind;

/// A snapshotter storing each snapshot as an overlay upper directory.
#[derive(Clone)]
pub struct OverlaySnapshotter {
    core: Arc<Core>,
}

impl std::fmt::Debug for OverlaySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlaySnapshotter")
            .field("root", &self.core.root())
            .finish()
    }
}

impl OverlaySnapshotter {
    /// Opens the snapshotter rooted at `root` (created if missing); a reopened root
    /// holds the same snapshots. Does not check overlay support: see
    /// [`OverlaySnapshotter::supported`].
    pub fn open(root: impl AsRef<Path>) -> Result<OverlaySnapshotter> {
        Ok(OverlaySnapshotter {
            core: Core::open(root.as_ref())?,
        })
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        self.core.root()
    }

    /// Checks that the kernel lets this process mount an overlay with upper and work
    /// dirs under `root` (created if missing), by mounting and unmounting one. `Err`
    /// says why not (no privilege, no overlayfs, a filesystem that cannot be an upper).
    pub fn supported(root: impl AsRef<Path>) -> std::result::Result<(), String> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let probe = tempfile::Builder::new()
            .prefix("overlay-check-")
            .tempdir_in(root)
            .map_err(|e| format!("creating a probe directory in {}: {e}", root.display()))?;
        let dirs = ["lower1", "lower2", "upper", "work", "merged"].map(|d| probe.path().join(d));
        for d in &dirs {
            fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        let [l1, l2, upper, work, merged] = &dirs;
        let data = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            l1.display(),
            l2.display(),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| format!("overlay mount under {} failed: {e}", root.display()))?;
        nix::mount::umount2(merged, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmounting the probe overlay {}: {e}", merged.display()))?;
        Ok(())
    }

    fn fs_dir(core: &Core, rec: &Record) -> PathBuf {
        core.snapshot_dir(rec.id).join("fs")
    }

    fn lowerdir(core: &Core, ancestors: &[Record]) -> String {
        let dirs: Vec<String> = ancestors
            .iter()
            .map(|r| Self::fs_dir(core, r).to_string_lossy().into_owned())
            .collect();
        format!("lowerdir={}", dirs.join(":"))
    }
}

impl Layout for OverlaySnapshotter {
    fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Every snapshot gets an empty `fs` (its upper dir) and a `work` dir.
    fn populate(_core: &Core, _kind: Kind, dir: &Path, _parent: Option<&Record>) -> Result<()> {
        for sub in ["fs", "work"] {
            let d = dir.join(sub);
            fs::create_dir(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        set_mode(&dir.join("fs"), 0o755)
    }

    fn mounts_of(core: &Core, key: &str) -> Result<Vec<Mount>> {
        let (rec, ancestors) = core.mountable(key)?;
        let own = Self::fs_dir(core, &rec);
        if rec.info.kind == Kind::View {
            return Ok(match ancestors.as_slice() {
                [] => vec![Mount::bind(own, true)],
                [only] => vec![Mount::bind(Self::fs_dir(core, only), true)],
                _ => vec![Mount {
                    mount_type: "overlay".into(),
                    source: "overlay".into(),
                    options: vec!["ro".into(), Self::lowerdir(core, &ancestors)],
                }],
            });
        }
        if ancestors.is_empty() {
            return Ok(vec![Mount::bind(own, false)]);
        }
        let work = core.snapshot_dir(rec.id).join("work");
        Ok(vec![Mount {
            mount_type: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("workdir={}", work.display()),
                format!("upperdir={}", own.display()),
                Self::lowerdir(core, &ancestors),
            ],
        }])
    }

    /// Usage of the snapshot's own upper dir (its parents are not counted).
    fn usage_dir(core: &Core, rec: &Record) -> PathBuf {
        Self::fs_dir(core, rec)
    }
}
