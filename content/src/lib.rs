//! # strata-content
//!
//! The content store of strata: blobs addressed by digest with labels, resumable
//! ingests, leases, image records and a label-driven garbage collector, with
//! containerd's semantics.
//!
//! - [`ContentStore`] (blobs, labels, ingests), [`LeaseManager`], [`ImageStore`] and
//!   [`GarbageCollector`] are the contracts, one module each. [`LeaseGuard`] holds a
//!   lease for one piece of work and is released explicitly (`release(self).await`);
//!   the resources a lease holds are typed ([`ResourceKind`]).
//! - [`LocalStore`] implements them on disk: its root is an OCI image layout that
//!   skopeo, umoci and containerd read directly, with labels, leases, image records and
//!   ingest state in SQLite beside it, safe for several processes at once.
//!   [`MemoryStore`] implements them in memory (tests, embedding). Each backend is a
//!   folder with one file per concept.
//! - Dead exports are reclaimed: a [`LeaseGuard`]'s lease is labelled
//!   ([`OWNER_LABEL`]) with its [`ProcessOwner`] (pid, start time, pid namespace, boot,
//!   so a reused pid is not taken for it), and the local store records each ingest's
//!   writer the same way. Garbage collection deletes the leases of dead owners as
//!   expired ones, removes the ingests no live writer holds (their lock), no remaining
//!   lease holds and whose owner is dead, then marks and sweeps; [`LocalStore::open`]
//!   does the cheap part (leases and ingests, no sweep). A live process's leases and
//!   ingests are never touched.
//! - [`tag_image`] and [`remove_images`] are `ctr images tag` and `rm` over any
//!   [`ImageStore`]: new names for an image's root, and deleted records whose content
//!   is left to garbage collection.
//! - [`fsck`] verifies every blob of a store; the `conformance` feature exposes the
//!   test suite every backend passes.
//! - [`BlobProvider`] is where blobs not yet in a store come from (a registry, an OCI
//!   layout, an archive, another store: [`StoreProvider`]); [`fetch_blob`] brings one
//!   in, verified while it streams.
//! - [`write_blob`], [`read_blob`] and [`copy`] are the everyday helpers, like
//!   containerd's `content` package; [`ReaderAtStream`] and [`BlockingReader`] turn a
//!   random-access [`ReaderAt`] into a stream; [`to_unix_nanos`] and
//!   [`from_unix_nanos`] store times as SQLite integers, [`format_rfc3339`] and
//!   [`parse_rfc3339`] write and read them as labels and image configs do.
//!
//! ```
//! use strata_content::{read_blob, write_blob, ContentStore, Labels, MemoryStore};
//! use strata_oci::{media_types, Descriptor, Digest};
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

#![deny(missing_docs)]

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod content;
mod error;
mod fsck;
mod gc;
mod image;
mod label;
mod lease;
mod owner;
mod unix_time;

pub use backend::local::LocalStore;
pub use backend::memory::MemoryStore;
pub use content::{
    copy, fetch_blob, open_writer, read_blob, write_blob, AbortOnDrop, BlobProvider,
    BlockingReader, ContentStore, ContentWriter, DistributionSource, Filter, Info, ReaderAt,
    ReaderAtStream, Status, StoreProvider, WriterOptions,
};
pub use error::{Error, Result};
pub use fsck::{fsck, FsckReport};
pub use gc::{GarbageCollector, GcReport};
pub use image::{remove_images, tag_image, Image, ImageStore};
pub use label::Labels;
pub use lease::{new_lease_id, Lease, LeaseGuard, LeaseManager, LeaseResource, ResourceKind};
pub use owner::{ProcessOwner, OWNER_LABEL};
pub use unix_time::{format_epoch, format_rfc3339, from_unix_nanos, parse_rfc3339, to_unix_nanos};
