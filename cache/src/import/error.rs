//! [`ImportError`]: why an image could not be imported or pulled, naming the image
//! (the reference as given) and the blob at fault.

use strata_oci::Digest;

use crate::error::RefError;
use crate::import::location::InvalidImageLocation;

/// A failure to import or pull an image. Every variant names the image (`image`: the
/// reference as written) and, where one is at fault, the blob.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The reference text does not parse.
    #[error(transparent)]
    InvalidReference(#[from] InvalidImageLocation),
    /// A manifest, index or config does not hash to the digest (or has not the size)
    /// its descriptor gives.
    #[error("{image}: {role} {blob} does not match its descriptor: {detail}")]
    DigestMismatch {
        /// The image.
        image: String,
        /// `manifest`, `index` or `config`.
        role: &'static str,
        /// The blob's digest, as its descriptor gives it.
        blob: Digest,
        /// Expected and actual digest or size.
        detail: String,
    },
    /// A manifest, index or config larger than strata reads.
    #[error("{image}: {role} {blob} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The image.
        image: String,
        /// `manifest`, `index` or `config`.
        role: &'static str,
        /// The blob's digest.
        blob: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An index lists no manifest for the platform asked for.
    #[error("{image}: index {blob} has no image for {platform} (it has: {})", .available.join(", "))]
    MissingPlatform {
        /// The image.
        image: String,
        /// The index's digest (or the manifest's, when its config is of another
        /// platform).
        blob: Digest,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: Vec<String>,
    },
    /// A layer's media type is not one strata reads, or a root that is neither a
    /// manifest nor an index.
    #[error(
        "{image}: blob {blob} has media type {media_type:?}, which strata does not read as {role}"
    )]
    UnknownMediaType {
        /// The image.
        image: String,
        /// The blob's digest.
        blob: Digest,
        /// Its media type.
        media_type: String,
        /// What it was expected to be (`a layer`, `a manifest or index`).
        role: &'static str,
    },
    /// The manifest lists another number of layers than the config's diff_ids.
    #[error("{image}: manifest {blob} has {layers} layers but its config {config} has {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// The image.
        image: String,
        /// The manifest's digest.
        blob: Digest,
        /// The config's digest.
        config: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A manifest, index, config or archive document is not the JSON it should be.
    #[error("{image}: {role} {blob} is malformed: {reason}")]
    MalformedJson {
        /// The image.
        image: String,
        /// What the document is (`manifest`, `config`, `index.json`, `manifest.json`).
        role: &'static str,
        /// Its digest (or path inside the source, for `index.json`/`manifest.json`).
        blob: String,
        /// What is wrong.
        reason: String,
    },
    /// The source has no blob the image needs.
    #[error("{image}: blob {blob} is missing from {provider}")]
    MissingBlob {
        /// The image.
        image: String,
        /// The blob's digest.
        blob: Digest,
        /// The source (the provider's name).
        provider: String,
    },
    /// No image of that tag or name in the layout, archive or store.
    #[error("{image}: no image named {tag:?} (there are: {})", .available.join(", "))]
    TagNotFound {
        /// The image.
        image: String,
        /// The tag or name asked for.
        tag: String,
        /// The names there are.
        available: Vec<String>,
    },
    /// No tag given, and the source holds several images (or none).
    #[error("{image}: name the image to use, the source holds {} (names: {})", .available.len(), .available.join(", "))]
    AmbiguousImage {
        /// The image.
        image: String,
        /// The names there are.
        available: Vec<String>,
    },
    /// A layout or archive is not what its kind should be (no `index.json`, a path
    /// escaping it, an entry that is not a regular file, a truncated tar, …).
    #[error("{image}: {reason}")]
    Malformed {
        /// The image.
        image: String,
        /// What is wrong, naming the path or entry.
        reason: String,
    },
    /// Reading the source or writing the store failed.
    #[error("{image}: {source}")]
    Content {
        /// The image.
        image: String,
        /// The store's or provider's error, naming the blob.
        #[source]
        source: strata_content::Error,
    },
    /// Building the image's refs failed.
    #[error("{image}: {source}")]
    Ref {
        /// The image.
        image: String,
        /// The ref's error (boxed: it is large).
        #[source]
        source: Box<RefError>,
    },
    /// The reference needs something this call was not given (a registry client,
    /// The registry refused or failed (401, 404, unreachable, a lying answer).
    #[error("base image {image}: {source}")]
    Registry {
        /// The reference as written.
        image: String,
        /// The registry's error, naming the registry, repository and blob.
        #[source]
        source: Box<strata_registry::RegistryError>,
    },
    /// a containerd connection).
    #[error("{image}: {reason}")]
    Unsupported {
        /// The image.
        image: String,
        /// What is missing.
        reason: String,
    },
}
