//! Content-store backends, one file each.

pub mod memory;
