//! Mounts as containerd describes them, and what a mount list means as directories.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
