//! Typed errors of snapshotters.

use std::io;
use std::path::PathBuf;

/// The result type of snapshotter operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong; every variant names the key or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot has this key.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// A snapshot with this key or name already exists.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The operation does not fit the snapshot's kind or state (committing a committed
    /// snapshot, removing a parent, preparing on a view, …).
    #[error("failed precondition on snapshot {key:?}: {reason}")]
    FailedPrecondition {
        /// The key at fault.
        key: String,
        /// Why the operation is refused.
        reason: String,
    },
    /// A malformed argument (empty key, bad field path, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A path given to a backend does not exist or is not a directory.
    #[error("invalid path {path}: {reason}")]
    InvalidPath {
        /// The path at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend cannot do this on this machine (e.g. overlay mounts not permitted).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The metadata database failed.
    #[error("snapshot metadata: {0}")]
    Metadata(String),
    /// An I/O error, naming what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or key.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// True for [`Error::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists(_))
    }
}
