//! [`RegistryError`]: why talking to a registry failed, naming the registry, the
//! repository and the manifest reference or blob digest; and how a client error is
//! classified (transient or not, which variant).

use std::path::PathBuf;

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// Why a registry operation failed. Every variant names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A text is not a valid image reference.
    #[error("invalid image reference {text:?}: {reason}")]
    InvalidReference {
        /// The text given.
        text: String,
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
    /// A docker credential helper failed (other than "credentials not found").
    #[error("credential helper docker-credential-{helper} for registry {registry}: {reason}")]
    CredentialHelper {
        /// The helper's name (`docker-credential-<helper>` is run).
        helper: String,
        /// The registry credentials were asked for.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// The registry refused the credentials (or their absence): 401 or 403.
    #[error(
        "not authorized for {action} on {registry}/{repository} ({detail}); \
         add credentials for {registry} to the docker config (`docker login {registry}`)"
    )]
    Unauthorized {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was being done, naming the reference or digest.
        action: String,
        /// What the registry answered.
        detail: String,
    },
    /// The manifest, tag or blob does not exist (404).
    #[error("{subject} not found in {registry}/{repository}")]
    NotFound {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was asked for: `manifest TAG`, `manifest sha256:…`, `blob sha256:…`.
        subject: String,
    },
    /// Nothing answers at the registry's address (after retries).
    #[error("registry {registry} is unreachable ({action} in {repository}): {source}")]
    Unavailable {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was being done, naming the reference or digest.
        action: String,
        /// The last connection error.
        #[source]
        source: Box<OciDistributionError>,
    },
    /// A request failed for another reason (after retries, when the failure was
    /// transient).
    #[error("{action} on {registry}/{repository} failed: {source}")]
    Request {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was being done, naming the reference or digest.
        action: String,
        /// The last error.
        #[source]
        source: Box<OciDistributionError>,
    },
    /// A manifest or index served by the registry is not one.
    #[error("invalid manifest {reference} from {registry}/{repository}: {reason}")]
    InvalidManifest {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest asked for.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Served bytes do not hash to the digest they were asked for by.
    #[error(
        "digest mismatch for {subject} from {registry}/{repository}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was fetched: `manifest …` or `blob …`.
        subject: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes served.
        actual: String,
    },
    /// Served content is larger than the limit for what it is.
    #[error("{subject} from {registry}/{repository} is larger than {limit} bytes")]
    TooLarge {
        /// `host[:port]` of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was fetched: `manifest …` or `blob …`.
        subject: String,
        /// The limit in bytes.
        limit: u64,
    },
}

/// The HTTP status of a failed request, if the registry answered.
fn status(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::Toomanyrequests => Some(429),
                OciErrorCode::BlobUnknown
                | OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound => Some(404),
                _ => None,
            })
        }
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

/// Turns a client error from `action` (naming `subject`, e.g. `blob sha256:…`) on
/// `registry`/`repository` into a [`RegistryError`].
pub(crate) fn classify(
    registry: &str,
    repository: &str,
    action: &str,
    subject: &str,
    e: OciDistributionError,
) -> RegistryError {
    let unreachable = match &e {
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout(),
        _ => false,
    };
    if unreachable {
        return RegistryError::Unavailable {
            registry: registry.to_string(),
            repository: repository.to_string(),
            action: action.to_string(),
            source: Box::new(e),
        };
    }
    if let OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
        expected,
        actual,
    }) = &e
    {
        return RegistryError::DigestMismatch {
            registry: registry.to_string(),
            repository: repository.to_string(),
            subject: subject.to_string(),
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    match status(&e) {
        Some(401 | 403) => RegistryError::Unauthorized {
            registry: registry.to_string(),
            repository: repository.to_string(),
            action: action.to_string(),
            detail: e.to_string(),
        },
        _ if matches!(e, OciDistributionError::AuthenticationFailure(_)) => {
            RegistryError::Unauthorized {
                registry: registry.to_string(),
                repository: repository.to_string(),
                action: action.to_string(),
                detail: e.to_string(),
            }
        }
        Some(404) => RegistryError::NotFound {
            registry: registry.to_string(),
            repository: repository.to_string(),
            subject: subject.to_string(),
        },
        _ => RegistryError::Request {
            registry: registry.to_string(),
            repository: repository.to_string(),
            action: action.to_string(),
            source: Box::new(e),
        },
    }
}

impl RegistryError {
    /// True for [`RegistryError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_typed_errors_naming_the_subject() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: String::new(),
        };
        let e = classify(
            "r:5000",
            "base",
            "fetching blob",
            "blob sha256:ab",
            server(404),
        );
        assert!(e.is_not_found());
        assert!(e.to_string().contains("blob sha256:ab"), "{e}");
        assert!(e.to_string().contains("r:5000/base"), "{e}");
        let e = classify("r", "base", "fetching", "manifest 1", server(403));
        assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
        assert!(is_transient(&server(503)) && is_transient(&server(429)));
        assert!(!is_transient(&server(404)) && !is_transient(&server(401)));
        let envelope: oci_client::errors::OciEnvelope =
            serde_json::from_str(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}"#)
                .unwrap();
        let e = OciDistributionError::RegistryError {
            envelope,
            url: "u".into(),
        };
        assert!(classify("r", "base", "fetching", "manifest 9", e).is_not_found());
    }
}
