//! Pushing an image from the content store to a registry over the OCI distribution
//! API, with BuildKit's and containerd's push semantics.
//!
//! [`Pusher::push`] walks the image from its root (index → manifests → configs and
//! layers) and sends children before parents, so the registry never holds a manifest
//! whose blobs are missing:
//!
//! - every blob is first checked with a `HEAD` request and skipped when the repository
//!   already has it;
//! - when the store's `containerd.io/distribution.source.<registry>` label, or the
//!   blob's provider ([`Pusher::with_providers`]), names another repository of the same
//!   registry that holds the blob, it is mounted from there instead of uploaded (after
//!   a successful push the store's label gains the target repository, as containerd
//!   and BuildKit do);
//! - uploads stream from the store — or, for a blob the store does not hold (a base
//!   image's layer pulled lazily), from its provider, without writing it to the store —
//!   in 1 MiB reads into one streamed `PUT` (no blob is ever held in memory whole), at
//!   most [`PushOptions::jobs`] at a time;
//! - a request that fails transiently (no connection, 5xx, 429) is retried with
//!   exponential backoff.
//!
//! Credentials, plain-HTTP hosts, retries and error classification are
//! `strata-registry`'s ([`RegistryOptions`]).

mod blobs;
mod error;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use strata_content::{BlobProvider, ContentStore};
use strata_oci::{annotations, media_types, walk_image, Descriptor, Digest, ImageGraph, WalkError};
use strata_registry::{Access, ImageReference, ManifestRef, RegistryClient, RegistryOptions};

pub use error::PushError;

use crate::progress::Progress;

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Plain HTTP instead of HTTPS to the push target's registry
    /// (`registry.insecure=true`): its host is added to
    /// [`RegistryOptions::insecure_hosts`].
    pub insecure: bool,
    /// How many blobs are checked or uploaded at the same time (at least 1).
    pub jobs: usize,
    /// Credentials, plain-HTTP hosts and retries.
    pub registry: RegistryOptions,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            jobs: 4,
            registry: RegistryOptions::default(),
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
    /// Uploaded from the content store or the blob's provider.
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
    /// The manifests and indexes pushed, in push order: image manifests, then
    /// attestation manifests, then the root.
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

/// Where blobs the content store does not hold come from, by digest.
pub type BlobProviders = BTreeMap<Digest, Arc<dyn BlobProvider>>;

/// Pushes images from a content store to registries.
pub struct Pusher {
    store: Arc<dyn ContentStore>,
    opts: PushOptions,
    providers: BlobProviders,
}

/// One push in progress: the repository's client, the target and what it needs to
/// report.
struct Session {
    client: RegistryClient,
    store: Arc<dyn ContentStore>,
    providers: BlobProviders,
    jobs: usize,
    target: ManifestRef,
    progress: Progress,
}

impl Pusher {
    /// A pusher reading blobs from `store`.
    pub fn new(store: Arc<dyn ContentStore>, opts: PushOptions) -> Pusher {
        Pusher {
            store,
            opts,
            providers: BlobProviders::new(),
        }
    }

    /// Blobs the store does not hold stream from `providers` (by digest) when they
    /// must be uploaded; a provider's distribution source in the target registry is
    /// tried as a cross-repository mount first.
    pub fn with_providers(mut self, providers: BlobProviders) -> Pusher {
        self.providers = providers;
        self
    }

    /// Pushes the image rooted at `root` (a manifest or an index in the store) to
    /// `name` (`[docker://][HOST[:PORT]/]REPO[:TAG]`; `by_digest` drops the tag and
    /// pushes the root by its digest only). Progress shows one step per blob with the
    /// bytes sent.
    pub async fn push(
        &self,
        name: &str,
        root: &Descriptor,
        by_digest: bool,
        progress: &Progress,
    ) -> Result<PushReport, PushError> {
        let image = ImageReference::parse(name)?;
        if image.digest.is_some() {
            return Err(PushError::InvalidReference {
                name: name.to_string(),
                reason: "a name to push to cannot contain a digest".into(),
            });
        }
        let target = if by_digest {
            ManifestRef::Digest(root.digest.clone())
        } else {
            image.manifest_ref()
        };
        let mut registry_opts = self.opts.registry.clone();
        if self.opts.insecure {
            registry_opts.insecure_hosts.push(image.registry.clone());
        }
        // Authenticating pings the registry: an unreachable or refusing registry fails
        // here, before any blob work starts.
        let client = RegistryClient::connect(&image, &registry_opts, Access::Push).await?;
        let session = Arc::new(Session {
            client,
            store: self.store.clone(),
            providers: self.providers.clone(),
            jobs: self.opts.jobs.max(1),
            target,
            progress: progress.clone(),
        });
        // Boxed: proves the future Send at these concrete lifetimes (rust-lang/rust#102211).
        session.push(root).boxed().await
    }
}

impl Session {
    async fn push(self: &Arc<Self>, root: &Descriptor) -> Result<PushReport, PushError> {
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
            .buffer_unordered(self.jobs)
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
        // Attestation manifests go after every image manifest, as BuildKit pushes
        // them: a registry may check an OCI artifact's `subject`, and a reader that
        // finds an attestation finds the image it is about.
        let (attestations, images): (Vec<_>, Vec<_>) =
            children.into_iter().partition(|(desc, _)| {
                desc.annotations
                    .get(annotations::DOCKER_REFERENCE_TYPE)
                    .is_some_and(|t| t == annotations::ATTESTATION_MANIFEST)
            });
        let mut manifests = self.push_manifests(images).await?;
        manifests.sort();
        let mut attestation_manifests = self.push_manifests(attestations).await?;
        attestation_manifests.sort();
        manifests.extend(attestation_manifests);
        let (desc, bytes) = root_entry;
        self.push_manifest(&self.target, &desc, bytes).await?;
        manifests.push(desc.digest.clone());
        Ok(PushReport {
            reference: self.client.image(&self.target).to_string(),
            digest: desc.digest,
            blobs,
            manifests,
        })
    }

    /// Pushes `manifests` by digest, at most `jobs` at a time; their digests.
    async fn push_manifests(
        self: &Arc<Self>,
        manifests: Vec<(Descriptor, Bytes)>,
    ) -> Result<Vec<Digest>, PushError> {
        futures::stream::iter(manifests)
            .map(|(desc, bytes)| {
                let this = self.clone();
                async move {
                    let by_digest = ManifestRef::Digest(desc.digest.clone());
                    this.push_manifest(&by_digest, &desc, bytes).await?;
                    Ok::<_, PushError>(desc.digest.clone())
                }
                .boxed()
            })
            .buffer_unordered(self.jobs)
            .try_collect()
            .await
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

    /// Reads a manifest or index (at most [`strata_oci::MAX_MANIFEST_SIZE`]
    /// bytes) from the store.
    async fn read_small(&self, desc: &Descriptor) -> Result<Vec<u8>, PushError> {
        let digest = desc.digest.to_string();
        let limit = strata_oci::MAX_MANIFEST_SIZE;
        if desc.size > limit {
            return Err(PushError::InvalidManifest {
                digest,
                reason: format!("{} bytes is larger than {limit}", desc.size),
            });
        }
        let store_error = |source| PushError::Content {
            digest: digest.clone(),
            from: blobs::STORE.into(),
            source,
        };
        let reader = self.store.reader(desc).await.map_err(store_error)?;
        let mut buf = vec![0u8; desc.size as usize];
        let mut offset = 0usize;
        while offset < buf.len() {
            let n = reader
                .read_at(&mut buf[offset..], offset as u64)
                .await
                .map_err(store_error)?;
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
        reference: &ManifestRef,
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
            format!(
                "pushing {kind} {} to {}",
                desc.digest,
                self.client.image(reference)
            ),
        );
        let res = self
            .client
            .push_manifest(reference, &desc.media_type, bytes)
            .await;
        match res {
            Ok(()) => {
                task.update(desc.size, Some(desc.size));
                task.complete();
                Ok(())
            }
            Err(e) => {
                let e = PushError::from(e);
                task.fail(&e);
                Err(e)
            }
        }
    }
}
