//! # strata-content
//!
//! The content store of strata: blobs addressed by digest with labels, resumable
//! ingests, leases, image records and a label-driven garbage collector, with
//! containerd's semantics.
//!
//! - [`ContentStore`] (blobs, labels, ingests), [`LeaseManager`], [`ImageStore`] and
//!   [`GarbageCollector`] are the contracts. [`LocalStore`] implements them on disk: its
//!   root is an OCI image layout that skopeo, umoci and containerd read directly, with
//!   labels, leases, image records and ingest state in SQLite beside it, safe for several
//!   processes at once. [`MemoryStore`] implements them in memory (tests, embedding).
//! - [`fsck`] verifies every blob of a store; the `conformance` feature exposes the
//!   test suite every backend passes.
//! - [`write_blob`], [`read_blob`] and [`copy`] are the everyday helpers, like
//!   containerd's `content` package; [`ReaderAtStream`] and [`BlockingReader`] turn a
//!   random-access [`ReaderAt`] into a stream.
//!
//! ```
//! use strata_content::{media_types, read_blob, write_blob, ContentStore, Descriptor, Digest,
//!     Labels, MemoryStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let bytes = br#"{"architecture":"amd64","os":"linux"}"#;
//! let desc = Descriptor::new(media_types::OCI_CONFIG, Digest::sha256_of(bytes), bytes.len() as u64);
//! write_blob(&store, "config", bytes, &desc, Labels::new()).await?;
//! // Writing present content again is a success.
//! write_blob(&store, "config-again", bytes, &desc, Labels::new()).await?;
//! assert_eq!(read_blob(&store, &desc, 1 << 20).await?, bytes);
//! assert_eq!(store.info(&desc.digest).await?.size, desc.size);
//! # Ok::<(), strata_content::Error>(())
//! # }).unwrap();
//! ```

pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod descriptor;
pub mod digest;
pub mod error;
mod fields;
pub mod fsck;
mod gc;
pub mod helpers;
pub mod store;

pub use backend::local::LocalStore;
pub use backend::memory::MemoryStore;
pub use descriptor::{media_types, Compression, Descriptor, Platform};
pub use digest::{Digest, Digester};
pub use error::{Error, Result};
pub use fields::new_lease_id;
pub use fsck::{fsck, FsckReport};
pub use helpers::{copy, open_writer, read_blob, write_blob, BlockingReader, ReaderAtStream};
pub use store::{
    labels, ContentStore, ContentWriter, Filter, GarbageCollector, GcReport, Image, ImageStore,
    Info, Labels, Lease, LeaseManager, LeaseResource, ReaderAt, Status, WriterOptions,
};
