//! Typed errors of the content store.

use std::io;

/// The result type of every content-store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a type a caller can match on — never a string to parse.
///
/// Every variant names the thing at fault (a digest, an ingest ref, a lease id, an image
/// name or a path) in its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named object (blob, ingest, lease, image) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The named object already exists (committing present content, creating a present
    /// image or lease). Callers that only want the content present treat it as success.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The operation is not valid in the current state (an ingest locked by another
    /// writer, an offset past the end, …).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The caller passed something malformed (a bad field path, an empty ref, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A string that should be a digest (`algorithm:hex`) is not one.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text that failed to parse.
        input: String,
        /// Why it is not a digest.
        reason: String,
    },
    /// Bytes did not hash to the digest they were expected to have.
    #[error("digest mismatch for {subject}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being written or read (an ingest ref or a digest).
        subject: String,
        /// The digest the caller asked for.
        expected: String,
        /// The digest of the bytes actually seen.
        actual: String,
    },
    /// Content had another size than the one it was expected to have.
    #[error("size mismatch for {subject}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was being written or read (an ingest ref or a digest).
        subject: String,
        /// The size the caller asked for.
        expected: u64,
        /// The size actually seen.
        actual: u64,
    },
    /// A backend (database, daemon, network) could not be reached or used.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An I/O error, with what was being done and on which path or digest.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or digest.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl From<strata_oci::InvalidDigest> for Error {
    fn from(e: strata_oci::InvalidDigest) -> Self {
        Error::InvalidDigest {
            input: e.input,
            reason: e.reason,
        }
    }
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
