//! Content-store backends, one folder each (one file per concept).

#[cfg(feature = "containerd")]
pub(crate) mod containerd;
pub(crate) mod local;
pub(crate) mod memory;
