//! The image-spec types the store speaks, from `strata-oci` (their one home).

pub use strata_oci::{media_types, Compression, Descriptor, Platform};
