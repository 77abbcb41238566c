//! Ingests over containerd's `Write` stream: opening one (resuming what containerd
//! has), writing in chunks, truncating, committing with a checked size and digest, and
//! the per-store claim on an ingest ref while a writer holds it.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::channel::mpsc;
use futures::SinkExt;
use strata_content::{
    ContentStore, ContentWriter, Error, Info, Labels, Result, Status, WriterOptions,
};
use strata_oci::Digest;
use tonic::Code;

use crate::convert::{labels_to, size_from, time_from};
use crate::proto::content;
use crate::store::{ContainerdStore, LiveRefs};

/// The most bytes sent in one `Write` message (containerd's limit is 16 MiB).
const WRITE_CHUNK: usize = 1 << 20;

impl ContainerdStore {
    /// Opens containerd's `Write` stream for an ingest and reads its state (a `STAT`).
    pub(crate) async fn open_writer(&self, opts: &WriterOptions) -> Result<Writer> {
        let reference = opts.reference.clone();
        let (total, expected) = match &opts.expected {
            Some(d) => (d.size, Some(d.digest.clone())),
            None => (0, None),
        };
        let (mut tx, rx) = mpsc::channel::<content::WriteContentRequest>(2);
        tx.send(content::WriteContentRequest {
            action: content::WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: total as i64,
            expected: expected.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::io(format!("ingest {reference}"), std::io::Error::other(e)))?;
        let what = format!("opening ingest {reference:?}");
        let mut responses = self
            .conn
            .content()
            .write(self.req(rx))
            .await
            .map_err(|s| self.err(&what, s))?
            .into_inner();
        let first = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(Error::Unavailable(format!(
                    "containerd at {}: {what}: the write stream closed",
                    self.conn.socket().display()
                )))
            }
            Err(s) => {
                return Err(match (s.code(), &expected) {
                    (Code::AlreadyExists, Some(d)) => {
                        Error::AlreadyExists(format!("content {d} (ingest {reference:?})"))
                    }
                    _ => self.err(&what, s),
                })
            }
        };
        let digest = Digest::parse(&first.digest)?;
        if let (Some(d), Ok(mut map)) = (&expected, self.expected.lock()) {
            map.insert(reference.clone(), d.clone());
        }
        Ok(Writer {
            store: self.clone(),
            reference,
            stream: Some(WriteStream { tx, responses }),
            offset: size_from(first.offset),
            digest,
            total: size_from(first.total),
            expected,
            started_at: time_from(first.started_at),
            updated_at: time_from(first.updated_at),
        })
    }
}

/// Marks an ingest ref as held by a live writer of this store until dropped.
pub(crate) struct LiveRef {
    live: LiveRefs,
    reference: String,
}

impl LiveRef {
    pub(crate) fn claim(live: &LiveRefs, reference: &str) -> Result<LiveRef> {
        let mut set = live
            .lock()
            .map_err(|_| Error::FailedPrecondition("ingest lock table poisoned".into()))?;
        if !set.insert(reference.to_string()) {
            return Err(Error::FailedPrecondition(format!(
                "ingest {reference:?} is locked by a live writer"
            )));
        }
        Ok(LiveRef {
            live: Arc::clone(live),
            reference: reference.to_string(),
        })
    }
}

impl Drop for LiveRef {
    fn drop(&mut self) {
        if let Ok(mut set) = self.live.lock() {
            set.remove(&self.reference);
        }
    }
}

/// The two halves of one `Write` stream.
struct WriteStream {
    tx: mpsc::Sender<content::WriteContentRequest>,
    responses: tonic::Streaming<content::WriteContentResponse>,
}

impl WriteStream {
    /// Ends the stream and waits for containerd to finish it (and release the ref).
    async fn close(mut self) {
        self.tx.close_channel();
        while let Ok(Some(_)) = self.responses.message().await {}
    }
}

/// One ingest's `Write` stream.
pub(crate) struct Writer {
    store: ContainerdStore,
    reference: String,
    stream: Option<WriteStream>,
    offset: u64,
    digest: Digest,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
}

impl Writer {
    /// Sends one request and waits for containerd's answer to it.
    async fn round_trip(
        &mut self,
        req: content::WriteContentRequest,
    ) -> Result<content::WriteContentResponse> {
        let what = format!("writing ingest {:?}", self.reference);
        let closed = || {
            Error::Unavailable(format!(
                "containerd at {}: {what}: the write stream closed",
                self.store.conn.socket().display()
            ))
        };
        let Some(stream) = self.stream.as_mut() else {
            return Err(closed());
        };
        if stream.tx.send(req).await.is_err() {
            // The stream ended: containerd's status, read next, says why.
        }
        match stream.responses.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(closed()),
            Err(s) => Err(self.store.err(&what, s)),
        }
    }

    /// Ends the stream and waits until containerd has released the ingest.
    async fn finish(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.close().await;
        }
    }

    /// Ends the stream, then aborts the ingest.
    async fn abort(mut self) {
        self.finish().await;
        self.store.forget_expected(&self.reference);
        if let Err(e) = self
            .store
            .conn
            .content()
            .abort(self.store.req(content::AbortRequest {
                r#ref: self.reference.clone(),
            }))
            .await
        {
            tracing::warn!(reference = %self.reference, "aborting a failed ingest: {e}");
        }
    }
}

impl Drop for Writer {
    /// A writer dropped mid-ingest: its stream is ended in the background, and the
    /// ref counts as closing (so `abort` and a new writer wait for containerd to
    /// release it) until containerd has finished the stream.
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Ok(mut closing) = self.store.closing.lock() {
            closing.insert(self.reference.clone());
        }
        let closing = Arc::clone(&self.store.closing);
        let reference = self.reference.clone();
        handle.spawn(async move {
            stream.close().await;
            if let Ok(mut closing) = closing.lock() {
                closing.remove(&reference);
            }
        });
    }
}

/// A [`Writer`] and the claim on its ref, released together.
pub(crate) struct LiveWriter {
    pub(crate) w: Writer,
    pub(crate) _guard: LiveRef,
}

#[async_trait]
impl ContentWriter for LiveWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        for chunk in buf.chunks(WRITE_CHUNK) {
            let offset = self.w.offset;
            let resp = self
                .w
                .round_trip(content::WriteContentRequest {
                    action: content::WriteAction::Write as i32,
                    r#ref: self.w.reference.clone(),
                    offset: offset as i64,
                    data: chunk.to_vec(),
                    ..Default::default()
                })
                .await?;
            let now = size_from(resp.offset);
            if now != offset + chunk.len() as u64 {
                return Err(Error::io(
                    format!("writing ingest {:?}", self.w.reference),
                    std::io::Error::other(format!(
                        "containerd is at offset {now} after writing {} bytes at {offset}",
                        chunk.len()
                    )),
                ));
            }
            self.w.offset = now;
            // containerd hashes as it writes and answers with the digest so far, which
            // covers a resumed ingest's earlier bytes too.
            self.w.digest = Digest::parse(&resp.digest)?;
            self.w.updated_at = SystemTime::now();
        }
        Ok(())
    }

    fn digest(&self) -> Digest {
        self.w.digest.clone()
    }

    fn offset(&self) -> u64 {
        self.w.offset
    }

    async fn status(&self) -> Result<Status> {
        Ok(Status {
            reference: self.w.reference.clone(),
            offset: self.w.offset,
            total: self.w.total,
            expected: self.w.expected.clone(),
            started_at: self.w.started_at,
            updated_at: self.w.updated_at,
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::InvalidArgument(format!(
                "ingest {:?}: only truncating to 0 is supported, not {size}",
                self.w.reference
            )));
        }
        // containerd truncates when a write says offset 0 on a non-empty ingest.
        let resp = self
            .w
            .round_trip(content::WriteContentRequest {
                action: content::WriteAction::Write as i32,
                r#ref: self.w.reference.clone(),
                offset: 0,
                ..Default::default()
            })
            .await?;
        self.w.offset = size_from(resp.offset);
        self.w.digest = Digest::parse(&resp.digest)?;
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info> {
        let LiveWriter { mut w, _guard } = *self;
        let subject = format!("ingest {:?}", w.reference);
        let mismatch = if size != 0 && size != w.offset {
            Some(Error::SizeMismatch {
                subject: subject.clone(),
                expected: size,
                actual: w.offset,
            })
        } else if let Some(want) = expected.or(w.expected.as_ref()) {
            (*want != w.digest).then(|| Error::DigestMismatch {
                subject: subject.clone(),
                expected: want.to_string(),
                actual: w.digest.to_string(),
            })
        } else {
            None
        };
        if let Some(e) = mismatch {
            w.abort().await;
            return Err(e);
        }
        let digest = w.digest.clone();
        let resp = w
            .round_trip(content::WriteContentRequest {
                action: content::WriteAction::Commit as i32,
                r#ref: w.reference.clone(),
                total: w.offset as i64,
                expected: digest.to_string(),
                offset: w.offset as i64,
                labels: labels_to(&labels),
                ..Default::default()
            })
            .await;
        // Let containerd finish the stream (it releases the ref) before the ref is
        // released here.
        w.finish().await;
        if matches!(resp, Ok(_) | Err(Error::AlreadyExists(_))) {
            w.store.forget_expected(&w.reference);
        }
        match resp {
            Ok(_) => {}
            Err(Error::AlreadyExists(_)) => {
                return Err(Error::AlreadyExists(format!(
                    "content {digest} ({subject})"
                )))
            }
            Err(e) => {
                w.abort().await;
                return Err(e);
            }
        }
        let store = w.store.clone();
        drop(w);
        store.info(&digest).await
    }
}
