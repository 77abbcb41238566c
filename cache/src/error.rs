//! [`DirectoryError`]: what failed while reading, registering or pruning layer
//! directories, naming the directory or snapshot at fault.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of directory registration or pruning.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A layer directory (or an entry under it) could not be read while fingerprinting.
    #[error("reading layer directory {}: {}", .dir.display(), entry_error(.dir, .path, .source))]
    Read {
        /// The layer directory, as given.
        dir: PathBuf,
        /// The entry that could not be read (`dir` itself, or a path under it).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The snapshotter refused to register (or update) a layer directory.
    #[error("registering {} as snapshot {name:?}: {source}", .dir.display())]
    Register {
        /// The layer directory.
        dir: PathBuf,
        /// The snapshot name it was registered under.
        name: String,
        /// The snapshotter's error.
        #[source]
        source: strata_snapshotter::Error,
    },
    /// Listing or removing registrations failed while pruning.
    #[error("pruning snapshot registrations: {source}")]
    Prune {
        /// The snapshotter's error, naming the snapshot.
        #[source]
        source: strata_snapshotter::Error,
    },
}

impl DirectoryError {
    /// The layer directory at fault, when the error is about one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            DirectoryError::Read { dir, .. } | DirectoryError::Register { dir, .. } => Some(dir),
            DirectoryError::Prune { .. } => None,
        }
    }
}

/// `source`, preceded by the entry's path when it is not the directory itself.
fn entry_error(dir: &Path, path: &Path, source: &io::Error) -> String {
    if path == dir {
        source.to_string()
    } else {
        format!("{}: {source}", path.display())
    }
}

/// A failure of an [`ImmutableRef`](crate::ImmutableRef) operation: the snapshotter's,
/// or, for a blob-backed ref, fetching or extracting its blob.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// The snapshotter failed (naming the snapshot).
    #[error(transparent)]
    Snapshot(#[from] strata_snapshotter::Error),
    /// The layer's blob could not be fetched from its provider into the store.
    #[error("fetching layer {layer} from {provider}: {source}")]
    Fetch {
        /// The layer blob's digest.
        layer: strata_oci::Digest,
        /// The provider it was fetched from.
        provider: String,
        /// The store's or provider's error.
        #[source]
        source: strata_content::Error,
    },
    /// The layer's blob could not be applied (bad tar, escaping paths, unknown media
    /// type, …).
    #[error("extracting layer {layer}: {source}")]
    Apply {
        /// The layer blob's digest.
        layer: strata_oci::Digest,
        /// The applier's error.
        #[source]
        source: strata_differ::Error,
    },
    /// A `COPY` layer could not be written (a missing source, a bad destination, a
    /// whiteout-named file, …).
    #[error("copying {}: {source}", .src.display())]
    Copy {
        /// The source directory or file.
        src: std::path::PathBuf,
        /// The differ's error.
        #[source]
        source: strata_differ::Error,
    },
    /// The layer's uncompressed digest is not the diffID the image config gives it.
    #[error("layer {layer} does not match its diff_id: the config says {expected}, the layer is {actual}")]
    DiffIdMismatch {
        /// The layer blob's digest.
        layer: strata_oci::Digest,
        /// The config's diffID.
        expected: strata_oci::Digest,
        /// The digest of the uncompressed tar.
        actual: strata_oci::Digest,
    },
    /// The tree of a blob-backed ref on a snapshot-backed parent was asked for: it
    /// cannot be extracted (its parent's tree lives in another snapshotter).
    #[error("layer {layer} cannot be extracted: its parent {parent:?} is a snapshot, not a blob-backed chain")]
    ParentNotBlobBacked {
        /// The layer blob's digest.
        layer: strata_oci::Digest,
        /// The parent snapshot's name.
        parent: String,
    },
}
