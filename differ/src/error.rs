//! Typed errors of the differ.

use std::io;
use std::path::PathBuf;

/// The result type of differ operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong; every variant names the path, digest or mount at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the content store failed.
    #[error(transparent)]
    Content(#[from] strata_content::Error),
    /// Resolving or mounting snapshots failed.
    #[error(transparent)]
    Snapshot(#[from] strata_snapshotter::Error),
    /// A file in a tree could not be read (or written, when applying).
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file changed while it was being read (size or mtime moved under us).
    #[error("{path} changed while the layer was being written: {reason}")]
    TreeChanged {
        /// The path at fault.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// A path in a tree looks like a whiteout (`.wh.` prefix) and cannot be put in a
    /// layer without being misread as a deletion.
    #[error("{path}: file names starting with \".wh.\" are reserved for whiteouts")]
    ReservedName {
        /// The path at fault.
        path: PathBuf,
    },
    /// The source of a copy layer does not exist.
    #[error("copy source {path} does not exist")]
    CopySourceMissing {
        /// The missing source path.
        path: PathBuf,
    },
    /// A copy layer's destination is not an absolute path inside the image (relative,
    /// with a `..` or NUL, or with a name reserved for whiteouts).
    #[error("copy destination {dest:?} is invalid: {reason}")]
    InvalidCopyDestination {
        /// The destination as given.
        dest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer entry would land outside the root (`..`, absolute, or through a symlink).
    #[error("layer entry {entry:?} escapes the root: {reason}")]
    PathEscapes {
        /// The entry name in the tar.
        entry: String,
        /// How it escapes.
        reason: String,
    },
    /// A layer blob is not a valid (compressed) tar.
    #[error("layer {digest} is corrupt: {reason}")]
    CorruptLayer {
        /// The layer's digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Mounts the differ cannot read as a tree.
    #[error("unsupported mounts: {0}")]
    UnsupportedMount(String),
    /// A media type that is not a layer type the differ knows.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
}

/// An `Error::Io` naming `path`.
pub(crate) fn io_err(path: &std::path::Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
