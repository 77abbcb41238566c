//! [`RegistryOptions`]: which hosts speak plain HTTP, where credentials come from,
//! how requests are retried; and the HTTP client built from them.

use std::path::PathBuf;
use std::time::Duration;

use backon::ExponentialBuilder;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::Client;

use crate::auth::{credentials_for, default_docker_config, Credentials};
use crate::error::RegistryError;

/// How to talk to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`HOST[:PORT]`, as in image references) spoken to over plain HTTP;
    /// every other one over HTTPS.
    pub insecure_hosts: Vec<String>,
    /// The docker config file to read credentials from; `None` is docker's own
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// How many times a transiently failed request is tried again.
    pub retries: usize,
    /// The first retry's delay; each next one doubles it (with jitter).
    pub retry_delay: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a response may be silent.
    pub read_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_hosts: Vec::new(),
            docker_config: None,
            retries: 3,
            retry_delay: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(300),
        }
    }
}

impl RegistryOptions {
    /// Whether `registry` (`HOST[:PORT]`) is spoken to over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure_hosts.iter().any(|h| h == registry)
    }

    /// The backoff of retried requests.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.retries)
            .with_jitter()
    }

    /// The credentials for `registry` from the docker config (helpers run here:
    /// call from a blocking context).
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        match self.docker_config.clone().or_else(default_docker_config) {
            Some(path) => credentials_for(&path, registry),
            None => Ok(None),
        }
    }

    /// An HTTP client speaking HTTPS to every registry except the insecure hosts.
    /// Blob uploads are one streamed `PUT` each.
    pub(crate) fn client(&self) -> Result<Client, oci_client::errors::OciDistributionError> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure_hosts.clone()),
            use_monolithic_push: true,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            ..ClientConfig::default()
        };
        // oci-client is built without a bundled crypto provider (see the workspace
        // Cargo.toml); install ring's once per process. An Err means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::try_from(config)
    }
}
