//! Adapters from a random-access [`ReaderAt`] to streaming readers: [`ReaderAtStream`]
//! for async code, [`BlockingReader`] for blocking code.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::helpers::CHUNK;
use crate::content::ReaderAt;
use crate::error::Result;

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
