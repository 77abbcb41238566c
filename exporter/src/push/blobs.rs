//! One blob of a push: present already (`HEAD`), mounted from another repository of
//! the same registry, or uploaded from the content store or the blob's provider.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use strata_content::{BlobProvider, ContentStore, DistributionSource, StoreProvider};
use strata_oci::{BlobRole, Descriptor, Digest};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::{BlobOutcome, PushError, Session};
use crate::progress::ProgressTask;

/// How the content store is named in errors.
pub(super) const STORE: &str = "the content store";

/// How much of a blob is read per upload chunk.
const READ_CHUNK: usize = 1 << 20;

/// The failure of a blob's source during an upload, kept so it is reported (and not
/// retried) as a read error rather than as the HTTP client's body error.
type SourceFailure = Arc<Mutex<Option<strata_content::Error>>>;

impl Session {
    /// Other repositories of this registry holding `digest`: from the store's label
    /// and from the blob's provider.
    async fn mount_candidates(&self, digest: &Digest) -> Vec<String> {
        let mut from: Vec<String> = match self.store.info(digest).await {
            Ok(info) => info
                .labels
                .get(&DistributionSource::label_key(self.client.registry()))
                .map(|v| {
                    DistributionSource::repositories(v)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if let Some(source) = self
            .providers
            .get(digest)
            .and_then(|p| p.distribution_source())
        {
            if source.registry == self.client.registry() {
                from.push(source.repository);
            }
        }
        let mut seen = BTreeSet::new();
        from.retain(|r| !r.is_empty() && r != self.client.repository() && seen.insert(r.clone()));
        from
    }

    /// Records in the store that the target repository now holds `digest` (nothing
    /// for a blob the store does not hold).
    async fn remember_source(&self, digest: &Digest) {
        let source = DistributionSource {
            registry: self.client.registry().to_string(),
            repository: self.client.repository().to_string(),
        };
        let res = match source.record(self.store.as_ref(), digest).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        };
        if let Err(e) = res {
            // The push itself succeeded; a missing label only costs a later mount.
            tracing::warn!(%digest, error = %e, "recording the distribution source label");
        }
    }

    /// Where the bytes of `desc` come from: the store when it holds the blob, else the
    /// blob's provider (the store's `NotFound` when there is none).
    async fn blob_source(&self, desc: &Descriptor) -> Result<Arc<dyn BlobProvider>, PushError> {
        match self.store.info(&desc.digest).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                if let Some(provider) = self.providers.get(&desc.digest) {
                    return Ok(provider.clone());
                }
            }
            Err(source) => {
                return Err(PushError::Content {
                    digest: desc.digest.to_string(),
                    from: STORE.into(),
                    source,
                })
            }
        }
        let store: Arc<dyn ContentStore> = self.store.clone();
        Ok(Arc::new(StoreProvider::new(store, STORE)))
    }

    /// A finished step of the progress for a blob that needed no upload.
    fn report_done(&self, desc: &Descriptor, text: String) {
        let task = self
            .progress
            .start(format!("pushing:{}", desc.digest), text);
        task.update(desc.size, Some(desc.size));
        task.complete();
    }

    pub(super) async fn push_blob(
        &self,
        desc: &Descriptor,
        kind: BlobRole,
    ) -> Result<BlobOutcome, PushError> {
        let digest = &desc.digest;
        if self.client.blob_exists(digest).await? {
            let repository = self.client.repository();
            self.report_done(desc, format!("{kind} {digest} already in {repository}"));
            self.remember_source(digest).await;
            return Ok(BlobOutcome::Existed);
        }
        for from in self.mount_candidates(digest).await {
            if self.client.mount_blob(digest, &from).await {
                self.report_done(desc, format!("{kind} {digest} mounted from {from}"));
                self.remember_source(digest).await;
                return Ok(BlobOutcome::Mounted);
            }
        }
        let source = self.blob_source(desc).await?;
        let task = self.progress.start(
            format!("pushing:{digest}"),
            format!("pushing {kind} {digest}"),
        );
        task.update(0, Some(desc.size));
        let failed: SourceFailure = Arc::default();
        let res = self
            .client
            .upload_blob(
                desc,
                || open_body(source.clone(), desc.clone(), task.clone(), failed.clone()),
                || failed.lock().map(|f| f.is_some()).unwrap_or(true),
            )
            .await;
        let res = res.map_err(|e| match failed.lock().ok().and_then(|mut f| f.take()) {
            Some(source_error) => PushError::Content {
                digest: digest.to_string(),
                from: source.name(),
                source: source_error,
            },
            None => PushError::from(e),
        });
        match res {
            Ok(()) => {
                task.update(desc.size, Some(desc.size));
                task.complete();
                self.remember_source(digest).await;
                Ok(BlobOutcome::Uploaded)
            }
            Err(e) => {
                task.fail(&e);
                Err(e)
            }
        }
    }
}

/// Opens `desc` at `source` as a stream of chunks, reporting the bytes handed to the
/// HTTP client on `task`; a failure of the source is kept in `failed`.
async fn open_body(
    source: Arc<dyn BlobProvider>,
    desc: Descriptor,
    task: ProgressTask,
    failed: SourceFailure,
) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let keep = |e: strata_content::Error, failed: &SourceFailure| {
        let text = e.to_string();
        if let Ok(mut slot) = failed.lock() {
            *slot = Some(e);
        }
        std::io::Error::other(text)
    };
    let size = desc.size;
    // A source serving more than the blob's size fails the digest check on the
    // registry; reading one byte more is enough for that.
    let reader = source
        .open(&desc)
        .await
        .map_err(|e| keep(e, &failed))?
        .take(size + 1);
    let subject = format!("reading blob {} from {}", desc.digest, source.name());
    task.update(0, Some(size));
    let mut sent = 0u64;
    Ok(
        ReaderStream::with_capacity(reader, READ_CHUNK).map(move |chunk| match chunk {
            Ok(bytes) => {
                sent += bytes.len() as u64;
                task.update(sent.min(size), Some(size));
                Ok(bytes)
            }
            Err(e) => Err(keep(strata_content::Error::io(subject.clone(), e), &failed)),
        }),
    )
}
