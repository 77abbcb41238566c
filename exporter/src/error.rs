//! Typed errors of the exporter.

use std::io;

/// The result type of exporter operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong; every variant names the option, platform, digest or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The content store, lease manager or image store failed.
    #[error(transparent)]
    Content(#[from] strata_content::Error),
    /// Reading a snapshot or its metadata failed.
    #[error(transparent)]
    Snapshot(#[from] strata_snapshotter::Error),
    /// Extracting a ref's tree (a base image's layers) failed.
    #[error(transparent)]
    Ref(#[from] strata_cache::RefError),
    /// Computing a layer diff failed.
    #[error(transparent)]
    Differ(#[from] strata_differ::Error),
    /// An option this exporter does not know.
    #[error("unknown option {key:?} for the {exporter} exporter")]
    UnknownOption {
        /// The exporter the option was given to.
        exporter: String,
        /// The option's name.
        key: String,
    },
    /// An option with a value that cannot be used.
    #[error("invalid value {value:?} for option {key:?}: {reason}")]
    InvalidOption {
        /// The option's name.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The image config given for a platform is not a valid config.
    #[error("invalid image config for {platform}: {reason}")]
    InvalidConfig {
        /// The platform id (or `default` for a single-platform source).
        platform: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source cannot form one image or one index (an image without a platform
    /// among several, a platform twice), or BuildKit refs and their platforms mapping
    /// (`refs.platforms`) do not match.
    #[error("invalid source: {0}")]
    InvalidSource(String),
    /// The chosen compression cannot be expressed with the chosen media types.
    #[error("compression={compression} is not supported with {media_types} media types (oci-mediatypes=false); use OCI media types")]
    UnsupportedCompression {
        /// The compression asked for.
        compression: strata_oci::Compression,
        /// `Docker` or `OCI`.
        media_types: &'static str,
    },
    /// The output cannot hold this many platforms (the docker archive holds one).
    #[error("the {exporter} exporter cannot export {count} platforms; it holds one image")]
    TooManyPlatforms {
        /// The exporter.
        exporter: String,
        /// The number of platforms in the source.
        count: usize,
    },
    /// A blob in the store is not what the exporter expected (bad manifest JSON, …).
    #[error("invalid content {digest}: {reason}")]
    InvalidContent {
        /// The digest of the blob at fault.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Serializing a document (config, manifest, index, docker `manifest.json`) failed.
    #[error("encoding {what}: {source}")]
    Encode {
        /// The document being encoded.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// `unpack=true` was asked of an exporter whose context has no
    /// [`UnpackTarget`](crate::UnpackTarget) (no snapshotter to unpack into).
    #[error(
        "option \"unpack\": the {exporter} exporter has no snapshotter to unpack into \
         (the embedder sets one with ExportContext::with_unpack_target)"
    )]
    NoUnpackTarget {
        /// The exporter the option was given to.
        exporter: String,
    },
    /// Unpacking the image into the snapshotter failed.
    #[error("unpacking {image} into the {snapshotter} snapshotter: {source}")]
    Unpack {
        /// The image (its name, as being recorded).
        image: String,
        /// The snapshotter's name.
        snapshotter: String,
        /// What failed: fetching, applying or committing a layer (naming it).
        #[source]
        source: Box<strata_cache::RefError>,
    },
    /// No image record has this name (`strata push`, `strata save`).
    #[error("no image {name:?} in the store")]
    NoImage {
        /// The name asked for.
        name: String,
    },
    /// Pushing to a registry failed.
    #[error(transparent)]
    Push(#[from] crate::push::PushError),
    /// A statement file (`--attest type=file`) that cannot be read, is not an
    /// in-toto v1 statement, or names a platform the export lacks.
    #[error("statement file {path}: {reason}")]
    StatementFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An attestation request (`--attest`) with a bad field.
    #[error("invalid attestation request: field {field:?}: {reason}")]
    InvalidAttest {
        /// The field at fault (`type`, `mode`, `path`, `platform`, …).
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// An attestation generator failed for a platform.
    #[error("the {generator} attestation of {platform}: {source}")]
    Generator {
        /// The generator's name.
        generator: String,
        /// The platform.
        platform: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The export was cancelled or a worker task died.
    #[error("export interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
