//! Content-store backends, one file each.

pub mod local;
pub mod memory;
