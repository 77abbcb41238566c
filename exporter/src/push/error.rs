//! [`PushError`]: why a push failed, naming the registry, repository and digest.

/// Why a push to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The image name is not one to push to (it holds a digest).
    #[error("invalid image name {name:?} to push to: {reason}")]
    InvalidReference {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Talking to the registry failed: unreachable, unauthorized, refused, bad
    /// credentials configuration (naming the registry, repository and digest).
    #[error(transparent)]
    Registry(Box<strata_registry::RegistryError>),
    /// Reading a blob to upload failed (from the content store or from the provider
    /// of a blob the store does not hold).
    #[error("reading {digest} from {from}: {source}")]
    Content {
        /// The blob being read.
        digest: String,
        /// Where it was read from: `the content store`, `registry HOST/REPO`, ….
        from: String,
        /// The store's or provider's error.
        #[source]
        source: strata_content::Error,
    },
    /// A manifest or index in the store is not what its media type says.
    #[error("invalid manifest {digest}: {reason}")]
    InvalidManifest {
        /// The manifest's digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<strata_registry::RegistryError> for PushError {
    fn from(e: strata_registry::RegistryError) -> Self {
        PushError::Registry(Box::new(e))
    }
}
