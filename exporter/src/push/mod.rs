//! Pushing an image from the content store to a registry over the OCI distribution
//! API, with BuildKit's and containerd's push semantics.
//!
//! [`Pusher::push`] walks the image from its root (index → manifests → configs and
//! layers) and sends children before parents, so the registry never holds a manifest
//! whose blobs are missing:
//!
//! - every blob is first checked with a `HEAD` request and skipped when the repository
//!   already has it;
//! - when the store's `containerd.io/distribution.source.<registry>` label names
//!   another repository of the same registry that holds the blob, it is mounted from
//!   there instead of uploaded (after a successful push the label gains the target
//!   repository, as containerd and BuildKit do);
//! - uploads stream from the store in 1 MiB reads into one streamed `PUT` (no blob is
//!   ever held in memory whole), at most [`PushOptions::jobs`] at a time;
//! - a request that fails transiently (no connection, 5xx, 429) is retried with
//!   exponential backoff;
//! - credentials come from the docker config file's `auths` ([`auth`]), else the push
//!   is anonymous.
//!
//! The HTTP work is done by the `oci-client` crate.

pub mod auth;
mod error;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use strata_content::{ContentStore, ReaderAt};
use strata_oci::{media_types, walk_image, BlobRole, Descriptor, Digest, ImageGraph, WalkError};

pub use error::PushError;
use error::{classify, is_transient};

use crate::progress::{Progress, ProgressTask};

/// How much of a blob is read from the store per upload chunk.
const READ_CHUNK: u64 = 1 << 20;
/// The largest manifest or index read into memory (registries refuse larger ones).
const MAX_MANIFEST: u64 = 4 << 20;

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Plain HTTP instead of HTTPS (`registry.insecure=true`).
    pub insecure: bool,
    /// How many blobs are checked or uploaded at the same time (at least 1).
    pub jobs: usize,
    /// How many times a transiently failed request is tried again.
    pub retries: usize,
    /// The first retry's delay; each next one doubles it (with jitter).
    pub retry_delay: Duration,
    /// The docker config file to read credentials from; `None` is docker's own
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            jobs: 4,
            retries: 3,
            retry_delay: Duration::from_millis(200),
            docker_config: None,
        }
    }
}

/// What happened to one blob of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository already had it.
    Existed,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded from the content store.
    Uploaded,
}

/// The result of a push.
#[derive(Clone, Debug)]
pub struct PushReport {
    /// Where the root was pushed: `host/repo:tag`, or `host/repo@digest` when pushed
    /// by digest.
    pub reference: String,
    /// The root's digest.
    pub digest: Digest,
    /// Every layer and config blob with what happened to it.
    pub blobs: BTreeMap<Digest, BlobOutcome>,
    /// The manifests and indexes pushed, children first.
    pub manifests: Vec<Digest>,
}

impl PushReport {
    /// How many blobs were uploaded (neither present already nor mounted).
    pub fn uploaded(&self) -> usize {
        self.blobs
            .values()
            .filter(|o| **o == BlobOutcome::Uploaded)
            .count()
    }
}

/// Pushes images from a content store to registries.
pub struct Pusher {
    store: Arc<dyn ContentStore>,
    opts: PushOptions,
}

/// One push in progress: the client, the target and what it needs to report.
struct Session {
    client: Client,
    store: Arc<dyn ContentStore>,
    opts: PushOptions,
    target: Reference,
    registry: String,
    repository: String,
    progress: Progress,
}

impl Pusher {
    /// A pusher reading blobs from `store`.
    pub fn new(store: Arc<dyn ContentStore>, opts: PushOptions) -> Pusher {
        Pusher { store, opts }
    }

    /// Pushes the image rooted at `root` (a manifest or an index in the store) to
    /// `name` (`[HOST[:PORT]/]REPO[:TAG]`; `by_digest` drops the tag and pushes the root
    /// by its digest only). Progress shows one step per blob with the bytes sent.
    pub async fn push(
        &self,
        name: &str,
        root: &Descriptor,
        by_digest: bool,
        progress: &Progress,
    ) -> Result<PushReport, PushError> {
        let parsed = Reference::try_from(name).map_err(|e| PushError::InvalidReference {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        if parsed.digest().is_some() {
            return Err(PushError::InvalidReference {
                name: name.to_string(),
                reason: "a name to push to cannot contain a digest".into(),
            });
        }
        let registry = parsed.resolve_registry().to_string();
        let repository = parsed.repository().to_string();
        let target = if by_digest {
            Reference::with_digest(
                parsed.registry().to_string(),
                repository.clone(),
                root.digest.to_string(),
            )
        } else {
            Reference::with_tag(
                parsed.registry().to_string(),
                repository.clone(),
                parsed.tag().unwrap_or("latest").to_string(),
            )
        };
        let auth = self.auth_for(&registry)?;
        let config = ClientConfig {
            protocol: if self.opts.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // One streamed PUT per blob: the body is read from the store as it is sent.
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(300)),
            ..ClientConfig::default()
        };
        // oci-client is built without a bundled crypto provider (see the workspace
        // Cargo.toml); install ring's once per process. An Err means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::try_from(config).map_err(|e| PushError::Request {
            registry: registry.clone(),
            action: "creating the HTTP client".into(),
            source: e,
        })?;
        let session = Arc::new(Session {
            client,
            store: self.store.clone(),
            opts: self.opts.clone(),
            target,
            registry,
            repository,
            progress: progress.clone(),
        });
        // Boxed: proves the future Send at these concrete lifetimes (rust-lang/rust#102211).
        session.push(root, &auth).boxed().await
    }

    fn auth_for(&self, registry: &str) -> Result<RegistryAuth, PushError> {
        let path = match &self.opts.docker_config {
            Some(p) => Some(p.clone()),
            None => auth::default_docker_config(),
        };
        let creds = match path {
            Some(p) => auth::credentials_for(&p, registry)?,
            None => None,
        };
        Ok(match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        })
    }
}

impl Session {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.opts.retry_delay)
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.opts.retries)
            .with_jitter()
    }

    /// Runs `op` with retries on transient failures; classifies the final error.
    async fn retrying<T, F, Fut>(&self, action: &str, op: F) -> Result<T, PushError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        op.retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(is_transient)
            .notify(|e, delay| {
                tracing::warn!(registry = %self.registry, %action, error = %e, ?delay, "retrying");
            })
            .await
            .map_err(|e| classify(&self.registry, &self.repository, action, e))
    }

    async fn push(
        self: &Arc<Self>,
        root: &Descriptor,
        auth: &RegistryAuth,
    ) -> Result<PushReport, PushError> {
        // Authenticating pings the registry: an unreachable or refusing registry fails
        // here, before any blob work starts.
        self.retrying("authenticating", || {
            self.client
                .auth(&self.target, auth, RegistryOperation::Push)
        })
        .await?;

        let graph = self.walk(root).await?;
        let blobs: BTreeMap<Digest, BlobOutcome> = futures::stream::iter(graph.blobs.into_values())
            .map(|(desc, kind)| {
                let this = self.clone();
                async move {
                    let outcome = this.push_blob(&desc, kind).await?;
                    Ok::<_, PushError>((desc.digest.clone(), outcome))
                }
                // Boxing fixes the lifetimes the compiler must prove Send for
                // (rust-lang/rust#102211).
                .boxed()
            })
            .buffer_unordered(self.opts.jobs.max(1))
            .try_collect()
            .await?;

        // Manifests go children first; an index's manifests are independent of each
        // other, the root waits for all of them.
        let mut nodes: Vec<(Descriptor, Bytes)> = graph
            .nodes
            .into_iter()
            .map(|n| (n.descriptor, Bytes::from(n.bytes)))
            .collect();
        let (root_entry, children) = match nodes.pop() {
            Some(last) => (last, nodes),
            None => {
                return Err(PushError::InvalidManifest {
                    digest: root.digest.to_string(),
                    reason: "nothing to push".into(),
                })
            }
        };
        let mut manifests: Vec<Digest> = futures::stream::iter(children)
            .map(|(desc, bytes)| {
                let this = self.clone();
                async move {
                    let r = Reference::with_digest(
                        this.target.registry().to_string(),
                        this.repository.clone(),
                        desc.digest.to_string(),
                    );
                    this.push_manifest(&r, &desc, bytes).await?;
                    Ok::<_, PushError>(desc.digest.clone())
                }
                .boxed()
            })
            .buffer_unordered(self.opts.jobs.max(1))
            .try_collect()
            .await?;
        manifests.sort();
        let (desc, bytes) = root_entry;
        self.push_manifest(&self.target, &desc, bytes).await?;
        manifests.push(desc.digest.clone());
        Ok(PushReport {
            reference: self.target.whole(),
            digest: desc.digest,
            blobs,
            manifests,
        })
    }

    /// Reads the manifests under `root` and collects their blobs.
    async fn walk(&self, root: &Descriptor) -> Result<ImageGraph, PushError> {
        walk_image(root, |desc| async move { self.read_small(&desc).await })
            .await
            .map_err(|e| match e {
                WalkError::Fetch(e) => e,
                WalkError::Invalid(e) => PushError::InvalidManifest {
                    digest: e.digest.to_string(),
                    reason: e.reason,
                },
            })
    }

    /// Reads a manifest or index (at most [`MAX_MANIFEST`] bytes) from the store.
    async fn read_small(&self, desc: &Descriptor) -> Result<Vec<u8>, PushError> {
        let digest = desc.digest.to_string();
        if desc.size > MAX_MANIFEST {
            return Err(PushError::InvalidManifest {
                digest,
                reason: format!("{} bytes is larger than {MAX_MANIFEST}", desc.size),
            });
        }
        let reader = self
            .store
            .reader(desc)
            .await
            .map_err(|source| PushError::Content {
                digest: digest.clone(),
                source,
            })?;
        let mut buf = vec![0u8; desc.size as usize];
        let mut offset = 0usize;
        while offset < buf.len() {
            let n = reader
                .read_at(&mut buf[offset..], offset as u64)
                .await
                .map_err(|source| PushError::Content {
                    digest: digest.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(PushError::InvalidManifest {
                    digest,
                    reason: format!("ended at {offset} of {} bytes", desc.size),
                });
            }
            offset += n;
        }
        if Digest::sha256_of(&buf) != desc.digest {
            return Err(PushError::InvalidManifest {
                digest,
                reason: "the stored bytes do not match the digest".into(),
            });
        }
        Ok(buf)
    }

    async fn push_manifest(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        bytes: Bytes,
    ) -> Result<(), PushError> {
        let kind = if media_types::is_index(&desc.media_type) {
            "index"
        } else {
            "manifest"
        };
        let task = self.progress.start(
            format!("pushing:{}", desc.digest),
            format!("pushing {kind} {} to {}", desc.digest, reference.whole()),
        );
        let content_type = http::HeaderValue::from_str(&desc.media_type).map_err(|_| {
            PushError::InvalidManifest {
                digest: desc.digest.to_string(),
                reason: format!("media type {:?} is not a header value", desc.media_type),
            }
        })?;
        let action = format!("pushing {kind} {}", desc.digest);
        let res = self
            .retrying(&action, || {
                self.client
                    .push_manifest_raw(reference, bytes.clone(), content_type.clone())
            })
            .await;
        match res {
            Ok(_) => {
                task.update(desc.size, Some(desc.size));
                task.complete();
                Ok(())
            }
            Err(e) => {
                task.fail(&e);
                Err(e)
            }
        }
    }

    /// The label key naming this registry's repositories holding a blob.
    fn source_label(&self) -> String {
        format!(
            "{}.{}",
            strata_oci::labels::DISTRIBUTION_SOURCE,
            self.registry
        )
    }

    /// Repositories of this registry the store's label says hold `digest`.
    async fn known_sources(&self, digest: &Digest) -> Vec<String> {
        match self.store.info(digest).await {
            Ok(info) => info
                .labels
                .get(&self.source_label())
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty() && *r != self.repository)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Records in the store that the target repository now holds `digest`.
    async fn remember_source(&self, digest: &Digest) {
        let key = self.source_label();
        let res = async {
            let mut info = self.store.info(digest).await?;
            let mut repos: BTreeSet<String> = info
                .labels
                .get(&key)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default();
            if !repos.insert(self.repository.clone()) {
                return Ok(());
            }
            repos.retain(|r| !r.is_empty());
            let value = repos.into_iter().collect::<Vec<_>>().join(",");
            info.labels.insert(key.clone(), value);
            self.store
                .update(info, &[format!("labels.{key}")])
                .await
                .map(|_| ())
        }
        .await;
        if let Err(e) = res {
            // The push itself succeeded; a missing label only costs a later mount.
            tracing::warn!(%digest, error = %e, "recording the distribution source label");
        }
    }

    async fn push_blob(&self, desc: &Descriptor, kind: BlobRole) -> Result<BlobOutcome, PushError> {
        let digest = desc.digest.to_string();
        let exists = self
            .retrying(&format!("checking {kind} {digest}"), || {
                self.client.blob_exists(&self.target, &digest)
            })
            .await?;
        if exists {
            let task = self.progress.start(
                format!("pushing:{digest}"),
                format!("{kind} {digest} already in {}", self.repository),
            );
            task.update(desc.size, Some(desc.size));
            task.complete();
            self.remember_source(&desc.digest).await;
            return Ok(BlobOutcome::Existed);
        }
        for from in self.known_sources(&desc.digest).await {
            let source = Reference::with_tag(
                self.target.registry().to_string(),
                from.clone(),
                "latest".to_string(),
            );
            match self.client.mount_blob(&self.target, &source, &digest).await {
                Ok(()) => {
                    let task = self.progress.start(
                        format!("pushing:{digest}"),
                        format!("{kind} {digest} mounted from {from}"),
                    );
                    task.update(desc.size, Some(desc.size));
                    task.complete();
                    self.remember_source(&desc.digest).await;
                    return Ok(BlobOutcome::Mounted);
                }
                Err(e) => {
                    tracing::debug!(%digest, %from, error = %e, "cross-repository mount refused")
                }
            }
        }
        let task = self.progress.start(
            format!("pushing:{digest}"),
            format!("pushing {kind} {digest}"),
        );
        task.update(0, Some(desc.size));
        // A failed store read surfaces in the client as a body error; keep the real
        // cause so it is reported (and not retried) as a store error.
        let store_error: Arc<Mutex<Option<strata_content::Error>>> = Arc::default();
        let action = format!("uploading {kind} {digest}");
        let res = (|| async {
            let reader = self
                .store
                .reader(desc)
                .await
                .map_err(|e| OciDistributionError::IoError(std::io::Error::other(e)))?;
            let body = blob_stream(reader, desc.size, task.clone(), store_error.clone());
            self.client
                .push_blob_stream(&self.target, body, &digest, Some(desc.size))
                .await
        })
        .retry(self.backoff())
        .sleep(tokio::time::sleep)
        .when(|e| store_error.lock().map(|s| s.is_none()).unwrap_or(false) && is_transient(e))
        .notify(|e, delay| {
            tracing::warn!(registry = %self.registry, %action, error = %e, ?delay, "retrying");
        })
        .await;
        let res = match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let stored = store_error.lock().ok().and_then(|mut s| s.take());
                Err(match stored {
                    Some(source) => PushError::Content {
                        digest: digest.clone(),
                        source,
                    },
                    None => classify(&self.registry, &self.repository, &action, e),
                })
            }
        };
        match res {
            Ok(()) => {
                task.update(desc.size, Some(desc.size));
                task.complete();
                self.remember_source(&desc.digest).await;
                Ok(BlobOutcome::Uploaded)
            }
            Err(e) => {
                task.fail(&e);
                Err(e)
            }
        }
    }
}

/// The bytes of a blob as a stream of chunks read from the store, reporting the
/// bytes handed to the HTTP client on `task`. A read error is kept in `failed`.
fn blob_stream(
    reader: Box<dyn ReaderAt>,
    size: u64,
    task: ProgressTask,
    failed: Arc<Mutex<Option<strata_content::Error>>>,
) -> impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static {
    task.update(0, Some(size));
    futures::stream::try_unfold(
        (reader, 0u64, task, failed),
        move |(reader, offset, task, failed)| async move {
            if offset >= size {
                return Ok(None);
            }
            let mut buf = vec![0u8; (size - offset).min(READ_CHUNK) as usize];
            let n = match reader.read_at(&mut buf, offset).await {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("blob ended at {offset} of {size} bytes"),
                    );
                    return Err(OciDistributionError::IoError(e));
                }
                Ok(n) => n,
                Err(e) => {
                    let text = e.to_string();
                    if let Ok(mut slot) = failed.lock() {
                        *slot = Some(e);
                    }
                    return Err(OciDistributionError::IoError(std::io::Error::other(text)));
                }
            };
            buf.truncate(n);
            let offset = offset + n as u64;
            task.update(offset, Some(size));
            Ok(Some((Bytes::from(buf), (reader, offset, task, failed))))
        },
    )
}
