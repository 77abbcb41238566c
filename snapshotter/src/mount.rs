//! Mounts as containerd describes them, and what a mount list means as directories.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One mount, as containerd's `mount.Mount`: `type`, `source`, `options`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The filesystem type: `bind`, `overlay`, …
    #[serde(rename = "type")]
    pub mount_type: String,
    /// The source: a directory for `bind`, `overlay` for overlay.
    pub source: String,
    /// Mount options: `rbind`, `ro`, `lowerdir=…`, `upperdir=…`, `workdir=…`.
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount of `dir`, read-only when `read_only`.
    pub fn bind(dir: impl Into<PathBuf>, read_only: bool) -> Mount {
        let mut options = vec!["rbind".to_string()];
        options.push(if read_only { "ro" } else { "rw" }.to_string());
        Mount {
            mount_type: "bind".to_string(),
            source: dir.into().to_string_lossy().into_owned(),
            options,
        }
    }

    /// True when the options make the mount read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// What a mount list is, as directories on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountLayout {
    /// The whole tree is one directory (a bind mount, or an overlay with one lowerdir
    /// and no upperdir).
    Directory {
        /// The directory holding the tree.
        root: PathBuf,
        /// Whether the mount is read-only.
        read_only: bool,
    },
    /// An overlay: the merged tree only exists once mounted.
    Overlay {
        /// The writable upper directory; `None` for a read-only (view) overlay.
        upper: Option<PathBuf>,
        /// The lower directories, topmost first (as in the `lowerdir=` option).
        lowers: Vec<PathBuf>,
        /// The overlay work directory, when there is an upper.
        work: Option<PathBuf>,
    },
}

impl MountLayout {
    /// What `mounts` (as returned by a snapshotter) are on this host: a `bind` mount is
    /// a [`MountLayout::Directory`]; an `overlay` is split into its upper, lowers and
    /// work dirs from its options (an overlay with a single lowerdir and no upperdir is
    /// that lowerdir, read-only). Anything else is refused naming the mount:
    /// `InvalidArgument` for an empty or multi-mount list or a malformed overlay,
    /// `Unsupported` for other mount types.
    pub fn from_mounts(mounts: &[Mount]) -> Result<MountLayout> {
        let m = match mounts {
            [m] => m,
            [] => return Err(Error::InvalidArgument("empty mount list".into())),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} mounts given, only a single mount is supported: {mounts:?}",
                    mounts.len()
                )))
            }
        };
        let is_bind = m.mount_type == "bind"
            || (m.mount_type == "none" && m.options.iter().any(|o| o == "bind" || o == "rbind"));
        if is_bind {
            if m.source.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "bind mount without a source: {m:?}"
                )));
            }
            return Ok(MountLayout::Directory {
                root: PathBuf::from(&m.source),
                read_only: m.is_read_only(),
            });
        }
        if m.mount_type != "overlay" {
            return Err(Error::Unsupported(format!(
                "mount type {:?} (source {:?}); only bind and overlay mounts are understood",
                m.mount_type, m.source
            )));
        }
        let mut upper = None;
        let mut work = None;
        let mut lowers = Vec::new();
        for o in &m.options {
            if let Some(v) = o.strip_prefix("upperdir=") {
                upper = Some(PathBuf::from(v));
            } else if let Some(v) = o.strip_prefix("workdir=") {
                work = Some(PathBuf::from(v));
            } else if let Some(v) = o.strip_prefix("lowerdir=") {
                lowers = v
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect();
            }
        }
        if lowers.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "overlay mount without lowerdir: {m:?}"
            )));
        }
        if upper.is_some() != work.is_some() {
            return Err(Error::InvalidArgument(format!(
                "overlay mount needs both upperdir and workdir or neither: {m:?}"
            )));
        }
        if upper.is_none() && lowers.len() == 1 {
            return Ok(MountLayout::Directory {
                root: lowers.remove(0),
                read_only: true,
            });
        }
        Ok(MountLayout::Overlay {
            upper,
            lowers,
            work,
        })
    }
}

/// A mount list made readable as one directory, for as long as the guard lives.
///
/// A [`MountLayout::Directory`] needs no mount: [`TempMount::path`] is that directory.
/// An overlay is mounted (with `mount(2)`, so this needs the privilege to mount
/// overlays) on a fresh temporary directory — read-only when the mount says `ro` or
/// has no upperdir — and unmounted (lazily) when the guard drops.
#[derive(Debug)]
pub struct TempMount {
    path: PathBuf,
    layout: MountLayout,
    /// The temporary mount point, when something was mounted on it.
    target: Option<tempfile::TempDir>,
}

impl TempMount {
    /// Makes `mounts` readable at [`TempMount::path`]. Errors name the mounts.
    pub fn mount(mounts: &[Mount]) -> Result<TempMount> {
        let layout = MountLayout::from_mounts(mounts)?;
        let (upper, lowers, work) = match &layout {
            MountLayout::Directory { root, .. } => {
                return Ok(TempMount {
                    path: root.clone(),
                    layout,
                    target: None,
                })
            }
            MountLayout::Overlay {
                upper,
                lowers,
                work,
            } => (upper.clone(), lowers.clone(), work.clone()),
        };
        let read_only = upper.is_none() || mounts.iter().any(Mount::is_read_only);
        let target = tempfile::Builder::new()
            .prefix("strata-mount-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary mount point", e))?;
        let mut data = format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(":")
        );
        if let (Some(u), Some(w)) = (&upper, &work) {
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        // mount(2) takes at most one page of options; say so instead of EINVAL.
        if data.len() >= 4096 {
            return Err(Error::Unsupported(format!(
                "overlay of {} lowerdirs needs {} bytes of mount options, more than mount(2) accepts (4095); first lowerdir {:?}",
                lowers.len(),
                data.len(),
                lowers.first()
            )));
        }
        let mut flags = nix::mount::MsFlags::empty();
        if read_only {
            flags |= nix::mount::MsFlags::MS_RDONLY;
        }
        nix::mount::mount(
            Some("overlay"),
            target.path(),
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| {
            Error::io(
                format!("mounting overlay {data} on {}", target.path().display()),
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        Ok(TempMount {
            path: target.path().to_path_buf(),
            layout,
            target: Some(target),
        })
    }

    /// The directory holding the merged tree.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout the mounts were parsed into.
    pub fn layout(&self) -> &MountLayout {
        &self.layout
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            if let Err(e) = nix::mount::umount2(target.path(), nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(path = %target.path().display(), error = %e, "unmounting");
                // Leave the mount point in place rather than deleting through a mount.
                let _ = target.keep();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(options: &[&str]) -> Mount {
        Mount {
            mount_type: "overlay".into(),
            source: "overlay".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn layouts_of_mount_lists() {
        assert_eq!(
            MountLayout::from_mounts(&[Mount::bind("/a/b", true)]).expect("bind"),
            MountLayout::Directory {
                root: "/a/b".into(),
                read_only: true
            }
        );
        assert_eq!(
            MountLayout::from_mounts(&[overlay(&[
                "workdir=/w",
                "upperdir=/u",
                "lowerdir=/l1:/l2"
            ])])
            .expect("overlay"),
            MountLayout::Overlay {
                upper: Some("/u".into()),
                lowers: vec!["/l1".into(), "/l2".into()],
                work: Some("/w".into()),
            }
        );
        assert_eq!(
            MountLayout::from_mounts(&[overlay(&["ro", "lowerdir=/only"])]).expect("one lower"),
            MountLayout::Directory {
                root: "/only".into(),
                read_only: true
            }
        );
        let err = MountLayout::from_mounts(&[Mount {
            mount_type: "tmpfs".into(),
            source: "scratch".into(),
            options: vec![],
        }])
        .expect_err("tmpfs");
        assert!(matches!(err, Error::Unsupported(_)) && err.to_string().contains("tmpfs"));
        let err = MountLayout::from_mounts(&[overlay(&["upperdir=/u", "workdir=/w"])])
            .expect_err("no lowerdir");
        assert!(matches!(err, Error::InvalidArgument(_)) && err.to_string().contains("/u"));
        assert!(MountLayout::from_mounts(&[]).is_err());
        assert!(MountLayout::from_mounts(&[overlay(&["lowerdir=/a:/b", "upperdir=/u"])]).is_err());
    }

    #[test]
    fn temp_mount_of_an_overlay_merges_and_unmounts() {
        let tmp = tempfile::tempdir().expect("tmp");
        if let Err(reason) = crate::OverlaySnapshotter::supported(tmp.path()) {
            eprintln!("skipping: overlay mounts unavailable: {reason}");
            return;
        }
        let d = |n: &str| {
            let p = tmp.path().join(n);
            std::fs::create_dir(&p).expect("mkdir");
            p
        };
        let (l1, l2) = (d("l1"), d("l2"));
        std::fs::write(l1.join("top"), "1").expect("write");
        std::fs::write(l2.join("bottom"), "2").expect("write");
        std::fs::write(l2.join("top"), "shadowed").expect("write");
        let ro = overlay(&[&format!("lowerdir={}:{}", l1.display(), l2.display())]);
        let mounted = TempMount::mount(&[ro]).expect("mount");
        let path = mounted.path().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(path.join("top")).expect("read"),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(path.join("bottom")).expect("read"),
            "2"
        );
        assert!(std::fs::write(path.join("new"), "x").is_err(), "read-only");
        drop(mounted);
        assert!(!path.exists(), "unmounted and removed on drop");

        let (u, w) = (d("u"), d("w"));
        let rw = overlay(&[
            &format!("workdir={}", w.display()),
            &format!("upperdir={}", u.display()),
            &format!("lowerdir={}:{}", l1.display(), l2.display()),
        ]);
        let mounted = TempMount::mount(&[rw]).expect("mount rw");
        std::fs::write(mounted.path().join("new"), "x").expect("write through");
        std::fs::remove_file(mounted.path().join("bottom")).expect("delete");
        drop(mounted);
        assert_eq!(std::fs::read_to_string(u.join("new")).expect("upper"), "x");
        assert!(l2.join("bottom").exists(), "lowers untouched");

        // A directory layout is handed back as is, nothing mounted.
        let m = TempMount::mount(&[Mount::bind(&l1, false)]).expect("bind");
        assert_eq!(m.path(), l1.as_path());
    }
}
