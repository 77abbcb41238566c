//! [`RegistryClient`]: one repository of one registry, authenticated, with retried
//! requests; the requests a push makes (check, mount, upload, manifest). Pulls are in
//! [`crate::pull`].

use std::future::Future;

use backon::Retryable;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use strata_oci::{Descriptor, Digest};

use crate::error::{classify, is_transient, RegistryError};
use crate::options::RegistryOptions;
use crate::reference::{ImageReference, ManifestRef};

/// What a client is going to do in its repository (the token it asks for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read manifests and blobs.
    Pull,
    /// Read and write.
    Push,
}

/// A connection to one repository of one registry.
pub struct RegistryClient {
    pub(crate) client: Client,
    pub(crate) opts: RegistryOptions,
    /// The repository, tag `latest` (blob requests ignore the tag).
    pub(crate) base: Reference,
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) auth: RegistryAuth,
}

impl RegistryClient {
    /// Connects to the repository of `image` with the docker config's credentials
    /// for its registry: the registry is asked (with retries) how to authenticate, so
    /// an unreachable registry fails here.
    pub async fn connect(
        image: &ImageReference,
        opts: &RegistryOptions,
        access: Access,
    ) -> Result<RegistryClient, RegistryError> {
        let registry = image.registry.clone();
        let repository = image.repository.clone();
        let lookup_opts = opts.clone();
        let lookup_registry = registry.clone();
        // Credential helpers are programs: run them off the async threads.
        let creds =
            tokio::task::spawn_blocking(move || lookup_opts.credentials_for(&lookup_registry))
                .await
                .map_err(|e| RegistryError::CredentialHelper {
                    helper: "(lookup)".into(),
                    registry: registry.clone(),
                    reason: e.to_string(),
                })??;
        let auth = creds
            .map(|c| c.to_registry_auth())
            .unwrap_or(RegistryAuth::Anonymous);
        let client = opts
            .client()
            .map_err(|e| classify(&registry, &repository, "creating the HTTP client", "", e))?;
        let base = Reference::with_tag(registry.clone(), repository.clone(), "latest".into());
        let me = RegistryClient {
            client,
            opts: opts.clone(),
            base,
            registry,
            repository,
            auth,
        };
        let op = match access {
            Access::Pull => RegistryOperation::Pull,
            Access::Push => RegistryOperation::Push,
        };
        me.retrying("authenticating", "the registry", || {
            me.client.auth(&me.base, &me.auth, op)
        })
        .await?;
        Ok(me)
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The image `manifest` names in this repository.
    pub fn image(&self, manifest: &ManifestRef) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
        .with_manifest(manifest)
    }

    /// Runs `op` with retries on transient failures; classifies the final error
    /// as `action` on `subject`.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        action: &str,
        subject: &str,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        self.retrying_when(action, subject, || true, op).await
    }

    /// [`Self::retrying`], retrying only while `also` holds.
    async fn retrying_when<T, F, Fut>(
        &self,
        action: &str,
        subject: &str,
        also: impl Fn() -> bool,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        op.retry(self.opts.backoff())
            .sleep(tokio::time::sleep)
            .when(|e| also() && is_transient(e))
            .notify(|e, delay| {
                tracing::warn!(registry = %self.registry, %action, error = %e, ?delay, "retrying");
            })
            .await
            .map_err(|e| {
                let action = format!("{action} {subject}");
                classify(&self.registry, &self.repository, &action, subject, e)
            })
    }

    /// Whether the repository has the blob `digest` (a `HEAD` request).
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let d = digest.to_string();
        self.retrying("checking", &format!("blob {d}"), || {
            self.client.blob_exists(&self.base, &d)
        })
        .await
    }

    /// Mounts the blob `digest` from the repository `from` of the same registry.
    /// `false` when the registry refuses (it does not have it there, or the
    /// credentials cannot read `from`): the caller uploads instead.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> bool {
        let source = Reference::with_tag(self.registry.clone(), from.to_string(), "latest".into());
        match self
            .client
            .mount_blob(&self.base, &source, digest.as_str())
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%digest, %from, error = %e, "cross-repository mount refused");
                false
            }
        }
    }

    /// Uploads the blob `desc` as one streamed `PUT` of the body `open_body` returns
    /// (called again for each retry). A failure is retried when transient and
    /// `body_failed()` is false (a body that failed itself is not retried).
    pub async fn upload_blob<F, Fut, S>(
        &self,
        desc: &Descriptor,
        mut open_body: F,
        body_failed: impl Fn() -> bool,
    ) -> Result<(), RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let digest = desc.digest.to_string();
        let subject = format!("blob {digest}");
        self.retrying_when(
            "uploading",
            &subject,
            || !body_failed(),
            || {
                let body = open_body();
                let digest = &digest;
                async move {
                    let body = body.await?.map_err(OciDistributionError::IoError);
                    self.client
                        .push_blob_stream(&self.base, body, digest, Some(desc.size))
                        .await
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// Pushes a manifest or index (`bytes`, of `media_type`) under `reference` (a tag
    /// or its digest).
    pub async fn push_manifest(
        &self,
        reference: &ManifestRef,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), RegistryError> {
        let subject = format!("manifest {reference}");
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::InvalidManifest {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                reference: reference.to_string(),
                reason: format!("media type {media_type:?} is not a header value"),
            }
        })?;
        let target = self.image(reference).to_oci();
        self.retrying("pushing", &subject, || {
            self.client
                .push_manifest_raw(&target, bytes.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
    }
}
