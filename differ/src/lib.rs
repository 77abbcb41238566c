//! # strata-differ
//!
//! Turns the difference between two trees into an OCI layer blob in a content store,
//! in one streaming pass, and applies layers back onto trees.
//!
//! [`WalkingDiffer`] is the [`Comparer`] and [`Applier`]: it finds the changes by
//! walking both trees (containerd's double walk) or, for an overlay snapshot on top of
//! its parent, by reading only the overlay's upperdir (a file whose size and mtime are
//! unchanged counts as unchanged, as in containerd, unless
//! [`WalkingDiffer::with_exact_content`] has the double walk compare its bytes); writes
//! them as an OCI layer tar (PAX headers, whiteouts, opaque markers, hardlinks,
//! xattrs, devices; sorted and deterministic) that is hashed (the diffID), compressed
//! and committed as it is written ([`CompareOptions`] says how, [`LayerBlob`] is the
//! result); and unpacks layers with whiteouts honoured.
//!
//! Layers applied may come from anywhere, so the applier refuses, with
//! [`Error::RefusedEntry`] naming the layer, the entry and the [`Refusal`]: names that
//! escape the root (`..`, absolute, through a symlink — one from a lower layer, one the
//! layer made, or a loop), hardlinks whose target escapes, is missing, is a directory
//! or is the entry itself, whiteouts that name no single file (`.wh..`, `.wh...`),
//! device nodes the process may not create (no `CAP_MKNOD`), and entries past the
//! limits peers and Linux have: PAX and GNU extension headers of at most 1 MiB (Go
//! `archive/tar`), names of at most 4096 bytes (`PATH_MAX`), components of 255
//! (`NAME_MAX`), 1024 levels deep, xattr names of 255 bytes and values of 64 KiB
//! (`XATTR_NAME_MAX`, `XATTR_SIZE_MAX`). A blob is never read past its descriptor's
//! size, and a compressed one decompresses to at most its [`DecompressionLimit`]
//! (4 GiB, or 200 times the blob; [`Error::TarTooLarge`] past it) — an entry whose
//! header claims more is refused before any of its data is read.
//!
//! Besides: [`copy_layer`] writes a layer holding a tree copied under a destination,
//! like a Dockerfile `COPY` (no diff, no whiteouts; owner per [`CopyOptions`]),
//! [`convert_layer`] recompresses a stored layer, [`open_layer_tar`] reads one back as
//! its uncompressed tar, [`empty_layer`] is the blob
//! of a layer without changes, and [`Encoder`] is the compressing writer every layer
//! goes through (its bytes never depend on the thread count). Errors are one
//! [`Error`] type.
//!
//! The layer between two trees, applied onto a copy of the lower one:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::fs;
//! use std::sync::Arc;
//! use strata_content::MemoryStore;
//! use strata_differ::{Applier, CompareOptions, Comparer, WalkingDiffer};
//! use strata_snapshotter::Mount;
//!
//! let (lower, upper, copy) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
//! for dir in [&lower, &copy] {
//!     fs::write(dir.path().join("kept.txt"), "kept")?;
//!     fs::write(dir.path().join("gone.txt"), "gone")?;
//! }
//! fs::write(upper.path().join("kept.txt"), "kept")?;
//! fs::write(upper.path().join("new.txt"), "new")?;
//!
//! let differ = WalkingDiffer::new(Arc::new(MemoryStore::new()));
//! let layer = differ
//!     .compare(
//!         &[Mount::bind(lower.path(), true)],
//!         &[Mount::bind(upper.path(), true)],
//!         &CompareOptions::default(),
//!     )
//!     .await?;
//!
//! let diff_id = differ.apply(&layer.descriptor, &[Mount::bind(copy.path(), false)]).await?;
//! assert_eq!(diff_id, layer.diff_id);
//! assert_eq!(fs::read_to_string(copy.path().join("new.txt"))?, "new");
//! assert!(!copy.path().join("gone.txt").exists());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod apply;
mod changes;
mod compression;
mod convert;
mod copy_layer;
mod decompression_limit;
mod empty_layer;
mod error;
mod file_metadata;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod layer_reader;
mod layer_writer;
mod pax;
mod tar_entries;
mod walking_differ;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use strata_oci::{Compression, Descriptor, Digest};
use strata_snapshotter::Mount;

pub use compression::{Encoder, FinishedLayer, DEFAULT_ESTARGZ_CHUNK_SIZE};
pub use convert::convert_layer;
pub use copy_layer::{copy_layer, CopyOptions};
pub use decompression_limit::DecompressionLimit;
pub use empty_layer::{empty_layer, empty_layer_diff_id, EMPTY_TAR_SIZE};
pub use error::{Error, Refusal, Result};
pub use layer_reader::open_layer_tar;
pub use walking_differ::WalkingDiffer;

/// A callback told the number of (compressed) bytes written so far, for progress.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// How to write a layer.
#[derive(Clone)]
pub struct CompareOptions {
    /// The blob's compression.
    pub compression: Compression,
    /// Compression level (gzip and eStargz 0–9, zstd 1–22); `None` for the default
    /// (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// eStargz only: the most bytes of a file's payload in one gzip member (one TOC
    /// chunk); `None` for 4 MiB (BuildKit's `estargz-chunk-size` default).
    pub estargz_chunk_size: Option<u64>,
    /// eStargz only: prefetch landmarks. `None`: none (BuildKit's `compression=estargz`).
    /// `Some(files)`: the entries of `files` (paths from the layer root) that are in the
    /// layer come first, in this order, then `.prefetch.landmark`; a layer holding none
    /// of them (or an empty list) starts with `.no.prefetch.landmark` (stargz-snapshotter's
    /// `estargz.Build` with `WithPrioritizedFiles`, as `ctr-remote optimize` uses it).
    /// Applies to the layers [`WalkingDiffer`] compares; copy layers ([`copy_layer`]) and
    /// converted blobs ([`convert_layer`]) get no landmarks.
    pub estargz_prioritized_files: Option<Vec<String>>,
    /// Clamp every entry's mtime to at most this many seconds since the epoch.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; `None` for the machine's cores. Never changes the bytes.
    pub threads: Option<usize>,
    /// The media type to give the descriptor; `None` for the OCI type of `compression`.
    pub media_type: Option<String>,
    /// The ingest ref to write under; `None` for a unique one.
    pub reference: Option<String>,
    /// Write the blob under this lease (`ContentStore::with_lease`), so GC cannot take
    /// it before the caller roots it.
    pub lease: Option<String>,
    /// Extra labels for the committed blob (besides `containerd.io/uncompressed`).
    pub labels: BTreeMap<String, String>,
    /// Called with the bytes written so far.
    pub progress: Option<ProgressFn>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            compression: Compression::Gzip,
            level: None,
            estargz_chunk_size: None,
            estargz_prioritized_files: None,
            source_date_epoch: None,
            threads: None,
            media_type: None,
            reference: None,
            lease: None,
            labels: BTreeMap::new(),
            progress: None,
        }
    }
}

/// A layer blob committed to the store, and the digest of its uncompressed tar. An
/// eStargz blob's descriptor carries its TOC digest and uncompressed size annotations,
/// and its diffID is that of the whole decompressed stream (TOC entry included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// The committed blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (the diffID).
    pub diff_id: Digest,
    /// The size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Computes the layer between two trees and commits it to a content store.
#[async_trait]
pub trait Comparer: Send + Sync {
    /// Writes the changes from `lower` to `upper` as an OCI layer blob. On an error,
    /// or when the returned future is dropped, the ingest is aborted: nothing partial
    /// is left in the store.
    async fn compare(
        &self,
        lower: &[Mount],
        upper: &[Mount],
        opts: &CompareOptions,
    ) -> Result<LayerBlob>;
}

/// How a layer is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Map every owner to the caller, as `umoci unpack --rootless` does: no `lchown`
    /// (files belong to whoever applies the layer), device nodes skipped (an
    /// unprivileged caller cannot make them; FIFOs are made), xattrs outside the
    /// `user.` namespace skipped, and directories kept writable by their owner while
    /// the layer is applied (their mode is set once their entries are in place), so
    /// a `0555` directory can be filled by a caller who is not root.
    pub rootless: bool,
}

/// Unpacks a layer blob onto a tree.
#[async_trait]
pub trait Applier: Send + Sync {
    /// Applies the layer `desc` onto `mounts`, honouring whiteouts; verifies the blob's
    /// digest while reading. Returns the layer's diffID.
    async fn apply(&self, desc: &Descriptor, mounts: &[Mount]) -> Result<Digest> {
        self.apply_with(desc, mounts, &ApplyOptions::default())
            .await
    }

    /// [`apply`](Applier::apply) as `options` say (rootless, …).
    async fn apply_with(
        &self,
        desc: &Descriptor,
        mounts: &[Mount],
        options: &ApplyOptions,
    ) -> Result<Digest>;
}
