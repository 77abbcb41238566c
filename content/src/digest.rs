//! Digests, from `strata-oci` (their one home).

pub use strata_oci::{Digest, Digester};
