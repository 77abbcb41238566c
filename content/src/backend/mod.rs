//! Content-store backends, one file each.

#[cfg(feature = "containerd")]
pub mod containerd;
pub mod local;
pub mod memory;
