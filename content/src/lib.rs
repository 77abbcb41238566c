//! # strata-content
//!
//! The content store of strata: blobs addressed by digest with labels, resumable
//! ingests, leases, image records and a label-driven garbage collector, with
//! containerd's semantics.

pub mod descriptor;
pub mod digest;
pub mod error;
pub mod store;

pub use descriptor::{media_types, Compression, Descriptor, Platform};
pub use digest::{Digest, Digester};
pub use error::{Error, Result};
pub use store::{
    labels, ContentStore, ContentWriter, Filter, GarbageCollector, GcReport, Image, ImageStore,
    Info, Labels, Lease, LeaseManager, LeaseResource, ReaderAt, Status, WriterOptions,
};
