//! [`DirectoryError`]: what failed while reading, registering or pruning layer
//! directories, naming the directory or snapshot at fault.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of directory registration or pruning. [`ImmutableRef`](crate::ImmutableRef)
/// operations fail with the snapshotter's own errors instead.
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
