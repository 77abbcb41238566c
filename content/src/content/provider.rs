//! [`BlobProvider`]: where blobs that are not (yet) in a content store come from — a
//! registry, an OCI layout, an archive, another store — and [`fetch_blob`], which
//! brings one into a store, verified while it streams.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{copy, open_writer, AbortOnDrop, ContentStore, ReaderAtStream, WriterOptions};
use crate::error::{Error, Result};
use crate::label::Labels;
use std::collections::BTreeSet;

use strata_oci::{labels, Descriptor, Digest};

/// The registry repository a blob was pulled from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DistributionSource {
    /// The registry host (`host[:port]`, `docker.io` for Docker Hub).
    pub registry: String,
    /// The repository in that registry (`library/debian`).
    pub repository: String,
}

impl DistributionSource {
    /// The key of the content label listing the repositories of `registry` a blob is
    /// in ([`labels::DISTRIBUTION_SOURCE`]`.<registry>`).
    pub fn label_key(registry: &str) -> String {
        format!("{}.{registry}", labels::DISTRIBUTION_SOURCE)
    }

    /// The repositories a distribution-source label value lists (comma-separated).
    pub fn repositories(value: &str) -> impl Iterator<Item = &str> {
        value.split(',').map(str::trim).filter(|r| !r.is_empty())
    }

    /// Records on the blob `digest` of `store` that this source holds it, keeping the
    /// repositories recorded before (as containerd's `AppendDistributionSourceLabel`).
    pub async fn record(&self, store: &dyn ContentStore, digest: &Digest) -> Result<()> {
        let key = Self::label_key(&self.registry);
        let mut info = store.info(digest).await?;
        let mut repos: BTreeSet<String> = info
            .labels
            .get(&key)
            .map(|v| Self::repositories(v).map(str::to_string).collect())
            .unwrap_or_default();
        if !repos.insert(self.repository.clone()) {
            return Ok(());
        }
        let value = repos.into_iter().collect::<Vec<_>>().join(",");
        info.labels.insert(key.clone(), value);
        store.update(info, &[format!("labels.{key}")]).await?;
        Ok(())
    }
}

/// A source of blobs by descriptor. Providers stream bytes as they are; the caller
/// verifies size and digest ([`fetch_blob`] does).
#[async_trait]
pub trait BlobProvider: Send + Sync {
    /// How errors name this provider: `registry HOST/REPO`, `oci layout DIR`,
    /// `docker archive FILE`, `store …`.
    fn name(&self) -> String;

    /// Opens the bytes of `desc`. `NotFound` naming the digest and the provider when
    /// it does not have the blob.
    async fn open(&self, desc: &Descriptor) -> Result<Box<dyn AsyncRead + Send + Unpin>>;

    /// The registry repository the blobs come from, when they come from one: a push
    /// to the same registry mounts them from there instead of uploading.
    fn distribution_source(&self) -> Option<DistributionSource> {
        None
    }
}

/// A content store as a provider of its own blobs.
#[derive(Clone)]
pub struct StoreProvider {
    store: Arc<dyn ContentStore>,
    name: String,
}

impl StoreProvider {
    /// Provides the blobs of `store`; errors name it `name` (`store DIR`, …).
    pub fn new(store: Arc<dyn ContentStore>, name: impl Into<String>) -> StoreProvider {
        StoreProvider {
            store,
            name: name.into(),
        }
    }
}

#[async_trait]
impl BlobProvider for StoreProvider {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn open(&self, desc: &Descriptor) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        let reader = self.store.reader(desc).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("blob {} in {}", desc.digest, self.name)),
            e => e,
        })?;
        Ok(Box::new(ReaderAtStream::new(reader)))
    }
}

/// Copies the blob `desc` from `provider` into `store` unless the store has it (a
/// present blob is still added to the store's lease, as any write of it would be).
/// The bytes are hashed while they stream and committed only when size and digest
/// match (at most `desc.size + 1` bytes are read, so a provider that sends more cannot
/// fill the disk); on any error, or when the future is dropped, the ingest is aborted
/// and nothing is left behind. `labels` are set on the committed blob (merged onto a
/// present one), and the provider's distribution source is added to the blob's.
///
/// Returns `true` when this call fetched the blob, `false` when it was present.
/// Errors name the blob and the provider.
pub async fn fetch_blob(
    store: &Arc<dyn ContentStore>,
    provider: &dyn BlobProvider,
    desc: &Descriptor,
    labels: Labels,
) -> Result<bool> {
    let source = provider.distribution_source();
    let reference = format!("fetch-{}", desc.digest);
    let mut guard = AbortOnDrop::new(Arc::clone(store), reference.clone());
    let opts = WriterOptions {
        reference: reference.clone(),
        expected: Some(desc.clone()),
    };
    let writer = match open_writer(store.as_ref(), opts).await {
        Ok(w) => w,
        // Present already: the open added it to the store's lease, if any.
        Err(Error::AlreadyExists(_)) => {
            guard.disarm();
            let info = store.info(&desc.digest).await?;
            add_labels(store.as_ref(), info, labels).await?;
            if let Some(source) = source {
                source.record(store.as_ref(), &desc.digest).await?;
            }
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let mut labels = labels;
    if let Some(source) = &source {
        labels.insert(
            DistributionSource::label_key(&source.registry),
            source.repository.clone(),
        );
    }
    let fetched = async {
        let reader = provider.open(desc).await?;
        copy(
            writer,
            reader.take(desc.size + 1),
            desc.size,
            &desc.digest,
            labels,
        )
        .await
    }
    .await;
    let committed = match fetched {
        Ok(committed) => committed,
        Err(e) => {
            if let Err(abort) = store.abort(&reference).await {
                if !abort.is_not_found() {
                    tracing::warn!(%reference, error = %abort, "aborting a failed fetch");
                }
            }
            guard.disarm();
            return Err(name_provider(e, desc, provider));
        }
    };
    guard.disarm();
    Ok(committed)
}

/// Merges `labels` onto the blob `info` describes.
async fn add_labels(store: &dyn ContentStore, mut info: crate::Info, labels: Labels) -> Result<()> {
    if labels.iter().all(|(k, v)| info.labels.get(k) == Some(v)) {
        return Ok(());
    }
    let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
    info.labels = labels;
    store.update(info, &paths).await?;
    Ok(())
}

/// Says which provider and blob an error of a fetch was about.
fn name_provider(e: Error, desc: &Descriptor, provider: &dyn BlobProvider) -> Error {
    let from = provider.name();
    match e {
        Error::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            subject: format!("blob {} from {from}", desc.digest),
            expected,
            actual,
        },
        Error::SizeMismatch {
            expected, actual, ..
        } => Error::SizeMismatch {
            subject: format!("blob {} from {from}", desc.digest),
            expected,
            actual,
        },
        Error::Io { context, source } => Error::Io {
            context: format!("{context} (blob {} from {from})", desc.digest),
            source,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use strata_oci::{media_types, Digest};

    /// Serves fixed bytes for any descriptor.
    struct Fixed(Vec<u8>);

    #[async_trait]
    impl BlobProvider for Fixed {
        fn name(&self) -> String {
            "fixed bytes".into()
        }
        async fn open(&self, _: &Descriptor) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
            Ok(Box::new(std::io::Cursor::new(self.0.clone())))
        }
        fn distribution_source(&self) -> Option<DistributionSource> {
            Some(DistributionSource {
                registry: "localhost:5000".into(),
                repository: "base".into(),
            })
        }
    }

    fn desc_of(bytes: &[u8]) -> Descriptor {
        Descriptor::new(
            media_types::OCI_LAYER_GZIP,
            Digest::sha256_of(bytes),
            bytes.len() as u64,
        )
    }

    #[tokio::test]
    async fn fetches_once_verified_and_labelled() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let bytes = b"layer bytes".to_vec();
        let desc = desc_of(&bytes);
        assert!(
            fetch_blob(&store, &Fixed(bytes.clone()), &desc, Labels::new())
                .await
                .unwrap()
        );
        assert!(!fetch_blob(&store, &Fixed(bytes), &desc, Labels::new())
            .await
            .unwrap());
        let info = store.info(&desc.digest).await.unwrap();
        assert_eq!(
            info.labels
                .get("containerd.io/distribution.source.localhost:5000"),
            Some(&"base".to_string())
        );
    }

    #[tokio::test]
    async fn distribution_sources_accumulate() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let bytes = b"shared layer".to_vec();
        let desc = desc_of(&bytes);
        fetch_blob(&store, &Fixed(bytes), &desc, Labels::new())
            .await
            .unwrap();
        let other = DistributionSource {
            registry: "localhost:5000".into(),
            repository: "other".into(),
        };
        other.record(store.as_ref(), &desc.digest).await.unwrap();
        other.record(store.as_ref(), &desc.digest).await.unwrap();
        let info = store.info(&desc.digest).await.unwrap();
        let value = &info.labels[&DistributionSource::label_key("localhost:5000")];
        assert_eq!(value, "base,other");
        assert_eq!(
            DistributionSource::repositories(value).collect::<Vec<_>>(),
            ["base", "other"]
        );
    }

    #[tokio::test]
    async fn a_lying_provider_leaves_nothing() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let desc = desc_of(b"what the manifest says");
        for served in [b"what the manifest sayz".to_vec(), vec![b'x'; 1000], vec![]] {
            let err = fetch_blob(&store, &Fixed(served), &desc, Labels::new())
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&desc.digest.to_string()), "{text}");
            assert!(matches!(
                err,
                Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
            ));
            assert!(store.info(&desc.digest).await.unwrap_err().is_not_found());
            assert!(store.list_statuses().await.unwrap().is_empty());
        }
    }
}
