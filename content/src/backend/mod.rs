//! Content-store backends, one folder each (one file per concept).

pub(crate) mod local;
pub(crate) mod memory;
