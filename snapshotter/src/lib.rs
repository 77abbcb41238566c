//! # strata-snapshotter
//!
//! Snapshotters with containerd's semantics. The handles the exporter reads build
//! results through (`ImmutableRef`) live one crate up, in `strata-cache`.
//!
//! A [`Snapshotter`] keeps a tree of snapshots: *committed* ones are immutable and can
//! be parents; *active* ones ([`Snapshotter::prepare`]) are writable trees on top of a
//! committed parent, turned into committed ones by [`Snapshotter::commit`]; *views*
//! ([`Snapshotter::view`]) are read-only trees of a committed parent. Trees are handed
//! out as [`Mount`] lists, exactly as containerd does; [`MountLayout`] says which
//! directories they are, and [`TempMount`] makes them readable as one directory.
//!
//! Backends, all sharing one SQLite metadata database per root so a reopened
//! snapshotter sees the same snapshots:
//! - [`NativeSnapshotter`]: one full directory per snapshot; prepare copies the parent
//!   (reflinks where possible), preserving ownership, modes, xattrs, hardlinks, devices
//!   and times.
//! - [`OverlaySnapshotter`]: one overlay upper dir per snapshot; mounts are overlays
//!   (check [`OverlaySnapshotter::supported`] first).
//! - [`DirectorySnapshotter`]: existing directories registered as a chain of committed
//!   snapshots, without copying.
//!
//! Names for temporary snapshots come from [`unique_suffix`]; [`left_by_dead_process`]
//! tells what a crashed process left behind (by strata-content's `ProcessOwner`: pid
//! and start time, so a reused pid is not taken for the maker). Errors are one [`Error`] type, with
//! containerd's kinds (not found, already exists, failed precondition, ...).
//!
//! With the `conformance` feature, `conformance::run` checks any backend against the
//! containerd semantics every backend here passes.
//!
//! A layer written in an active snapshot, committed, and read back through a view:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_snapshotter::{Kind, Labels, NativeSnapshotter, Snapshotter, TempMount};
//!
//! let root = tempfile::tempdir()?;
//! let snapshots = NativeSnapshotter::open(root.path())?;
//!
//! let mounts = snapshots.prepare("base-active", None, Labels::new()).await?;
//! let tree = TempMount::mount(&mounts)?;
//! std::fs::write(tree.path().join("hello"), "hi")?;
//! drop(tree);
//! snapshots.commit("base", "base-active", Labels::new()).await?;
//! assert_eq!(snapshots.stat("base").await?.kind, Kind::Committed);
//!
//! let view = snapshots.view("base-view", Some("base"), Labels::new()).await?;
//! let tree = TempMount::mount(&view)?;
//! assert_eq!(std::fs::read_to_string(tree.path().join("hello"))?, "hi");
//! drop(tree);
//! snapshots.remove("base-view").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Existing directories become a chain of committed snapshots without copying:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_snapshotter::{DirectorySnapshotter, Labels, Snapshotter, TempMount};
//!
//! let tmp = tempfile::tempdir()?;
//! let (base, top) = (tmp.path().join("base"), tmp.path().join("top"));
//! std::fs::create_dir_all(&base)?;
//! std::fs::write(base.join("hello"), "hi")?;
//! std::fs::create_dir_all(&top)?;
//! std::fs::write(top.join("hello"), "hi")?;
//! std::fs::write(top.join("world"), "!")?;
//!
//! let snapshots = DirectorySnapshotter::open(tmp.path().join("meta"))?;
//! snapshots.register("base", None, &base, Labels::new()).await?;
//! snapshots.register("top", Some("base"), &top, Labels::new()).await?;
//!
//! assert_eq!(snapshots.stat("top").await?.parent.as_deref(), Some("base"));
//! let mounts = snapshots.view("top-view", Some("top"), Labels::new()).await?;
//! let tree = TempMount::mount(&mounts)?;
//! assert!(tree.path().join("world").exists());
//! drop(tree);
//! snapshots.remove("top-view").await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod fsutil;
mod metadata;
mod mount;
mod snapshotter;
mod unique;

pub use backend::directory::DirectorySnapshotter;
pub use backend::native::NativeSnapshotter;
pub use backend::overlay::OverlaySnapshotter;
pub use error::{Error, Result};
pub use mount::{Mount, MountLayout, TempMount};
pub use snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};
pub use unique::{left_by_dead_process, unique_suffix};
