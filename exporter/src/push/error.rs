//! [`PushError`]: why a push failed, naming the registry, repository and digest.

use std::path::PathBuf;

use oci_client::errors::OciDistributionError;

/// Why a push to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The image name is not a valid `[HOST[:PORT]/]REPO[:TAG]` reference.
    #[error("invalid image name {name:?} to push to: {reason}")]
    InvalidReference {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The docker config file cannot be read or holds invalid credentials.
    #[error("docker config {path}: {reason}")]
    DockerConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answers at the registry's address (after retries).
    #[error("registry {registry} is unreachable: {source}")]
    Unreachable {
        /// `host[:port]` of the registry.
        registry: String,
        /// The last connection error.
        #[source]
        source: OciDistributionError,
    },
    /// The registry refused the credentials (or their absence).
    #[error(
        "not authorized to push to {registry}/{repository} ({detail}); \
         add credentials for {registry} to the docker config (`docker login {registry}`)"
    )]
    Unauthorized {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// What the registry answered.
        detail: String,
    },
    /// A request failed for another reason (after retries, when the failure was
    /// transient).
    #[error("{action} on registry {registry} failed: {source}")]
    Request {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done, naming the digest or reference.
        action: String,
        /// The last error.
        #[source]
        source: OciDistributionError,
    },
    /// Reading a blob from the content store failed.
    #[error("reading {digest} from the content store: {source}")]
    Content {
        /// The blob being read.
        digest: String,
        /// The store's error.
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

/// The HTTP status of a failed request, if the registry answered.
fn status(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        _ => None,
    }
}

/// True when trying the same request again may succeed: no answer (connection
/// refused, reset, timed out), a 5xx answer or 429 Too Many Requests.
pub(crate) fn is_transient(e: &OciDistributionError) -> bool {
    match status(e) {
        Some(code) => code >= 500 || code == 429,
        None => matches!(e, OciDistributionError::RequestError(_)),
    }
}

/// Turns a client error from `action` on `registry`/`repository` into a [`PushError`].
pub(crate) fn classify(
    registry: &str,
    repository: &str,
    action: &str,
    e: OciDistributionError,
) -> PushError {
    let unreachable = match &e {
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout(),
        _ => false,
    };
    if unreachable {
        return PushError::Unreachable {
            registry: registry.to_string(),
            source: e,
        };
    }
    let denied = matches!(status(&e), Some(401 | 403))
        || matches!(e, OciDistributionError::AuthenticationFailure(_));
    if denied {
        return PushError::Unauthorized {
            registry: registry.to_string(),
            repository: repository.to_string(),
            detail: format!("{action}: {e}"),
        };
    }
    PushError::Request {
        registry: registry.to_string(),
        action: action.to_string(),
        source: e,
    }
}
