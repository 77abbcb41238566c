//! [`SbomError`]: what failed while reading an image's package databases, naming the
//! layer (its diffID) and the database path; [`RpmHeaderError`]: why an rpm header blob
//! was refused.

use std::io;
use std::path::PathBuf;

use strata_oci::Digest;

/// A failure to read the package databases of a chain of layers.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file or directory of a layer's tree could not be read.
    #[error("layer {layer}: reading {}: {source}", .path.display())]
    ReadTree {
        /// The layer's diffID.
        layer: Digest,
        /// The path inside the tree (relative to its root) or the tree itself.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A layer's tar stream could not be read or is not a tar.
    #[error("layer {layer}: reading the layer tar: {source}")]
    ReadTar {
        /// The layer's diffID.
        layer: Digest,
        /// The underlying error (from the tar parser or the decompressing reader).
        #[source]
        source: io::Error,
    },
    /// A package database is larger than [`ScanLimits`](crate::ScanLimits) allow.
    #[error("layer {layer}: {path} is larger than {limit} bytes")]
    TooLarge {
        /// The layer's diffID.
        layer: Digest,
        /// The database path inside the image.
        path: String,
        /// The limit it exceeds.
        limit: u64,
    },
    /// An rpm database could not be opened or queried as SQLite.
    #[error("layer {layer}: rpm database {path}: {source}")]
    RpmDatabase {
        /// The diffID of the layer whose tree holds the database.
        layer: Digest,
        /// The database path inside the image.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A package header in an rpm database is malformed.
    #[error("layer {layer}: rpm database {path}: package {hnum}: {source}")]
    RpmHeader {
        /// The diffID of the layer whose tree holds the database.
        layer: Digest,
        /// The database path inside the image.
        path: String,
        /// The header's row (`Packages.hnum`).
        hnum: i64,
        /// What is wrong with the header.
        #[source]
        source: RpmHeaderError,
    },
    /// A ref of the chain could not be read: its tree not mounted (a view, an
    /// extraction), or its blob not fetched.
    #[error("layer {layer} (ref {reference}): {source}")]
    Ref {
        /// The layer's diffID.
        layer: Digest,
        /// The ref's id.
        reference: String,
        /// The cache's error.
        #[source]
        source: Box<strata_cache::RefError>,
    },
    /// A snapshot's mounts could not be mounted for reading.
    #[error("layer {layer} (ref {reference}): mounting its tree: {source}")]
    Mount {
        /// The layer's diffID.
        layer: Digest,
        /// The ref's id.
        reference: String,
        /// The snapshotter's error.
        #[source]
        source: Box<strata_snapshotter::Error>,
    },
    /// A layer blob could not be opened for reading (missing, unknown media type).
    #[error("layer {layer}: opening its blob: {source}")]
    Blob {
        /// The layer's diffID.
        layer: Digest,
        /// The differ's error.
        #[source]
        source: Box<strata_differ::Error>,
    },
}

/// Why an rpm header blob (`Packages.blob` of `rpmdb.sqlite`) was refused. Headers come
/// from the image, so every count, offset and length is checked before use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpmHeaderError {
    /// The blob ends before what its counts announce.
    #[error("truncated header: {needed} bytes needed, {len} present")]
    Truncated {
        /// Bytes the header's counts require.
        needed: u64,
        /// Bytes the blob has.
        len: u64,
    },
    /// More index entries than rpm itself allows (`HEADER_TAGS_MAX`).
    #[error("{0} index entries (rpm allows at most 65535)")]
    TooManyEntries(u32),
    /// A data store larger than rpm itself allows (`HEADER_DATA_MAX`).
    #[error("a {0}-byte data store (rpm allows at most 256 MiB)")]
    DataTooLarge(u32),
    /// An entry points outside the data store or its value runs past it.
    #[error("tag {tag}: offset {offset} is outside the {data_len}-byte data store")]
    BadOffset {
        /// The entry's tag.
        tag: u32,
        /// The entry's offset.
        offset: u32,
        /// The data store's length.
        data_len: u32,
    },
    /// A string value without its terminating NUL inside the data store.
    #[error("tag {0}: unterminated string")]
    UnterminatedString(u32),
    /// A tag strata reads has a type other than rpm gives it.
    #[error("tag {tag}: type {found}, expected {expected}")]
    WrongType {
        /// The entry's tag.
        tag: u32,
        /// The entry's type.
        found: u32,
        /// The type rpm writes for the tag.
        expected: u32,
    },
    /// A required tag (name or version) is missing.
    #[error("tag {0} is missing")]
    MissingTag(u32),
}
