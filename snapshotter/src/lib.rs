//! # strata-snapshotter
//!
//! Snapshotters with containerd's semantics and [`ImmutableRef`], the handle the
//! exporter reads build results through.

pub mod error;
pub mod immutable_ref;
pub mod mount;
pub mod snapshotter;

pub use error::{Error, Result};
pub use immutable_ref::{BlobInfo, BlobKey, ImmutableRef};
pub use mount::{Mount, MountLayout};
pub use snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};
