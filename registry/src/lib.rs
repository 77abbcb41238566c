//! strata's one place for talking to OCI registries (over the `oci-client` crate):
//!
//! - [`ImageReference`]: `docker://HOST/REPO:TAG`, `…@sha256:…` or a bare name;
//! - credentials from the docker config file: `credHelpers`, `auths`, `credsStore`
//!   ([`credentials_for`]);
//! - [`RegistryOptions`]: plain-HTTP hosts, the docker config, retries;
//! - [`RegistryClient`]: one repository — manifests and blobs to pull (it is a
//!   [`strata_content::BlobProvider`]) and the requests a push makes;
//! - [`RegistryError`]: typed failures naming the registry, repository and the
//!   reference or digest; transient failures (no answer, 5xx, 429) are retried with
//!   exponential backoff.

#![deny(missing_docs)]

mod auth;
mod client;
mod error;
mod options;
mod pull;
mod reference;

pub use auth::{credentials_for, default_docker_config, Credentials};
pub use client::{Access, RegistryClient};
pub use error::RegistryError;
pub use options::RegistryOptions;
pub use reference::{ImageReference, ManifestRef};
