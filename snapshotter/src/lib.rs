//! # strata-snapshotter
//!
//! Snapshotters with containerd's semantics and [`ImmutableRef`], the handle the
//! exporter reads build results through.

pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
mod fsutil;
pub mod immutable_ref;
mod metadata;
pub mod mount;
pub mod snapshotter;

pub use backend::directory::DirectorySnapshotter;
pub use backend::native::NativeSnapshotter;
pub use backend::overlay::OverlaySnapshotter;
pub use error::{Error, Result};
pub use immutable_ref::{BlobInfo, BlobKey, ImmutableRef};
pub use mount::{Mount, MountLayout, TempMount};
pub use snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};
