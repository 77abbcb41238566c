//! Helpers over any [`ContentStore`], like containerd's `content` package:
//! [`write_blob`], [`read_blob`], [`copy`], and adapters from a [`ReaderAt`] to
//! streaming readers ([`ReaderAtStream`] for async code, [`BlockingReader`] for
//! blocking code).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{ContentStore, ContentWriter, Labels, ReaderAt, WriterOptions};

/// Size of the chunks the helpers read and write.
const CHUNK: usize = 1 << 20;

/// How long [`write_blob`] waits for another writer holding the same ingest ref
/// (containerd's `OpenWriter` retries the same way while a ref is locked).
const LOCKED_REF_WAIT: Duration = Duration::from_secs(120);

/// Opens a writer for `reference`, retrying with backoff while the ref is locked by a
/// live writer (`FailedPrecondition`), for up to two minutes.
pub async fn open_writer<S: ContentStore + ?Sized>(
    store: &S,
    opts: WriterOptions,
) -> Result<Box<dyn ContentWriter>> {
    let mut delay = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    loop {
        match store.writer(opts.clone()).await {
            Err(Error::FailedPrecondition(m)) if waited < LOCKED_REF_WAIT => {
                tracing::debug!(reference = %opts.reference, "ingest locked, waiting: {m}");
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Writes `bytes` as the blob `expected` under ingest ref `reference`.
///
/// Content that is already present is a success. In that case the `labels` given are
/// still merged onto the existing blob (key by key, other labels untouched): containerd's
/// `content.WriteBlob` drops them, but strata's callers (BuildKit-style exporters) rely
/// on the GC labels of a blob they "write" being present afterwards.
pub async fn write_blob<S: ContentStore + ?Sized>(
    store: &S,
    reference: &str,
    bytes: &[u8],
    expected: &Descriptor,
    labels: Labels,
) -> Result<()> {
    let opts = WriterOptions {
        reference: reference.to_string(),
        expected: Some(expected.clone()),
    };
    let committed = match open_writer(store, opts).await {
        Ok(w) => copy(w, bytes, expected.size, &expected.digest, labels.clone()).await?,
        Err(Error::AlreadyExists(_)) => false,
        Err(e) => return Err(e),
    };
    if !committed && !labels.is_empty() {
        let mut info = store.info(&expected.digest).await?;
        let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
        info.labels = labels;
        store.update(info, &paths).await?;
    }
    Ok(())
}

/// Reads the whole blob `desc`, refusing blobs larger than `limit` bytes with an
/// `InvalidArgument` naming the digest. The bytes read are checked against the
/// descriptor's size and digest.
pub async fn read_blob<S: ContentStore + ?Sized>(
    store: &S,
    desc: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>> {
    let reader = store.reader(desc).await?;
    let size = reader.size();
    if size > limit || desc.size > limit {
        return Err(Error::InvalidArgument(format!(
            "content {} is {} bytes, more than the limit of {limit}",
            desc.digest,
            size.max(desc.size)
        )));
    }
    if desc.size != 0 && size != desc.size {
        return Err(Error::SizeMismatch {
            subject: format!("content {}", desc.digest),
            expected: desc.size,
            actual: size,
        });
    }
    let mut out = vec![0u8; size as usize];
    let mut off = 0usize;
    while off < out.len() {
        let n = reader.read_at(&mut out[off..], off as u64).await?;
        if n == 0 {
            return Err(Error::SizeMismatch {
                subject: format!("content {}", desc.digest),
                expected: size,
                actual: off as u64,
            });
        }
        off += n;
    }
    let actual = Digest::sha256_of(&out);
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            subject: format!("content {}", desc.digest),
            expected: desc.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(out)
}

/// Copies `reader` into `writer` and commits it with `size`, `expected` and `labels`
/// (containerd's `content.Copy`). When the writer resumes an ingest, the bytes it
/// already has are skipped from `reader`.
///
/// Returns `true` if this call committed the content, `false` if it was already
/// present (`AlreadyExists` is a success; the labels were then not applied).
pub async fn copy<R: AsyncRead + Unpin>(
    mut writer: Box<dyn ContentWriter>,
    mut reader: R,
    size: u64,
    expected: &Digest,
    labels: Labels,
) -> Result<bool> {
    let skip = writer.offset();
    if skip > 0 {
        let skipped = tokio::io::copy(&mut (&mut reader).take(skip), &mut tokio::io::sink())
            .await
            .map_err(|e| Error::io(format!("skipping {skip} resumed bytes of {expected}"), e))?;
        if skipped != skip {
            // The source is shorter than what the ingest holds: start over.
            writer.truncate(0).await?;
            return Err(Error::SizeMismatch {
                subject: format!("content {expected}"),
                expected: skip,
                actual: skipped,
            });
        }
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io(format!("reading source of {expected}"), e))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
    }
    match writer.commit(size, Some(expected), labels).await {
        Ok(_) => Ok(true),
        Err(Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

type ReadFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>>> + Send>>;

/// A [`ReaderAt`] read front to back as a tokio [`AsyncRead`].
pub struct ReaderAtStream {
    reader: Arc<dyn ReaderAt>,
    offset: u64,
    pending: Option<ReadFuture>,
}

impl ReaderAtStream {
    /// Streams `reader` from its start.
    pub fn new(reader: Box<dyn ReaderAt>) -> Self {
        Self::from_arc(Arc::from(reader), 0)
    }

    /// Streams a shared reader from `offset`.
    pub fn from_arc(reader: Arc<dyn ReaderAt>, offset: u64) -> Self {
        ReaderAtStream {
            reader,
            offset,
            pending: None,
        }
    }
}

impl AsyncRead for ReaderAtStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_none() {
            let want = buf.remaining().min(CHUNK);
            let reader = self.reader.clone();
            let offset = self.offset;
            self.pending = Some(Box::pin(async move {
                let mut v = vec![0u8; want];
                let n = reader.read_at(&mut v, offset).await?;
                v.truncate(n);
                Ok(v)
            }));
        }
        let fut = self.pending.as_mut().expect("set above");
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(res) => {
                self.pending = None;
                match res {
                    Ok(v) => {
                        // `want` was bounded by `remaining()` when the read started and
                        // a caller may shrink its buffer between polls: copy what fits
                        // and rewind for the rest.
                        let n = v.len().min(buf.remaining());
                        buf.put_slice(&v[..n]);
                        self.offset += n as u64;
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err(io::Error::other(e))),
                }
            }
        }
    }
}

/// A [`ReaderAt`] read front to back as a blocking [`std::io::Read`].
///
/// Each read runs the async read on the given runtime with `Handle::block_on`, so it
/// must be used from a blocking thread (`tokio::task::spawn_blocking`), never from an
/// async task. For a `LocalStore`, opening the blob file directly
/// (`LocalStore::open_blob_file`) avoids the round trip.
pub struct BlockingReader {
    reader: Arc<dyn ReaderAt>,
    offset: u64,
    handle: tokio::runtime::Handle,
}

impl BlockingReader {
    /// Reads `reader` from its start, driving reads on `handle`.
    pub fn new(reader: Box<dyn ReaderAt>, handle: tokio::runtime::Handle) -> Self {
        BlockingReader {
            reader: Arc::from(reader),
            offset: 0,
            handle,
        }
    }
}

impl io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .handle
            .block_on(self.reader.read_at(buf, self.offset))
            .map_err(io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}
