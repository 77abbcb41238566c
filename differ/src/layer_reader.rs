//! Reading a layer blob back as its uncompressed tar: a blocking [`Read`] that
//! decompresses according to the media type, verifies the blob's size and digest
//! against its descriptor while reading, and hashes the tar (the diffID).

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use strata_content::{Compression, ContentStore, Descriptor, Digest, Digester};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// Bytes per read from the store.
const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the decompressor.
const READ_AHEAD: usize = 4;

/// The first failure seen while reading, kept typed so callers get it back even when
/// a tar parser wrapped the `io::Error` it travelled in.
type FailureSlot = Arc<Mutex<Option<Error>>>;

fn record(slot: &FailureSlot, err: Error) -> io::Error {
    let msg = err.to_string();
    if let Ok(mut s) = slot.lock() {
        if s.is_none() {
            *s = Some(err);
        }
    }
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The raw blob bytes, prefetched by an async task, checked against the descriptor.
struct VerifiedBlob {
    rx: mpsc::Receiver<strata_content::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    digester: Digester,
    desc: Descriptor,
    failure: FailureSlot,
    verified: bool,
}

impl VerifiedBlob {
    fn check_end(&mut self) -> io::Result<()> {
        if self.verified {
            return Ok(());
        }
        let subject = self.desc.digest.to_string();
        if self.digester.len() != self.desc.size {
            return Err(record(
                &self.failure,
                Error::Content(strata_content::Error::SizeMismatch {
                    subject,
                    expected: self.desc.size,
                    actual: self.digester.len(),
                }),
            ));
        }
        let actual = self.digester.digest();
        if actual != self.desc.digest {
            return Err(record(
                &self.failure,
                Error::Content(strata_content::Error::DigestMismatch {
                    subject,
                    expected: self.desc.digest.to_string(),
                    actual: actual.to_string(),
                }),
            ));
        }
        self.verified = true;
        Ok(())
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.digester.update(&chunk);
                    if self.digester.len() > self.desc.size {
                        return Err(record(
                            &self.failure,
                            Error::Content(strata_content::Error::SizeMismatch {
                                subject: self.desc.digest.to_string(),
                                expected: self.desc.size,
                                actual: self.digester.len(),
                            }),
                        ));
                    }
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(record(&self.failure, Error::Content(e))),
                None => {
                    self.check_end()?;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

enum Decoder {
    Plain(Box<BufReader<VerifiedBlob>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<VerifiedBlob>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<VerifiedBlob>>>),
}

impl Decoder {
    fn raw(&mut self) -> &mut BufReader<VerifiedBlob> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }
}

/// A layer's uncompressed tar, read from the store (see [`open_layer`]).
///
/// Reads block on the async runtime: use it on a blocking thread
/// (`tokio::task::spawn_blocking`), never on an async worker. A read error is an
/// `io::Error`; [`LayerReader::typed_error`] turns it back into the typed [`Error`]
/// (digest or size mismatch, corrupt stream, store failure). Call
/// [`LayerReader::finish`] after the tar has been consumed: it reads what is left,
/// verifies the blob's digest and returns the diffID.
pub struct LayerReader {
    decoder: Decoder,
    diff: Digester,
    digest: Digest,
    failure: FailureSlot,
    task: tokio::task::JoinHandle<()>,
}

/// Opens the layer `desc` in `store` for reading its uncompressed tar. The compression
/// comes from the media type (`UnsupportedMediaType` otherwise); a missing blob is
/// `Content(NotFound)` naming it. Must be called within a tokio runtime.
pub async fn open_layer(store: Arc<dyn ContentStore>, desc: &Descriptor) -> Result<LayerReader> {
    let compression = Compression::from_layer_media_type(&desc.media_type)
        .ok_or_else(|| Error::UnsupportedMediaType(desc.media_type.clone()))?;
    let reader = store.reader(desc).await?;
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let task = tokio::spawn(async move {
        let mut offset = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            match reader.read_at(&mut buf, offset).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    offset += n as u64;
                    if tx.send(Ok(buf)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let failure: FailureSlot = Arc::new(Mutex::new(None));
    let raw = BufReader::with_capacity(
        64 * 1024,
        VerifiedBlob {
            rx,
            chunk: Vec::new(),
            pos: 0,
            digester: Digester::new(),
            desc: desc.clone(),
            failure: Arc::clone(&failure),
            verified: false,
        },
    );
    let decoder = match compression {
        Compression::Uncompressed => Decoder::Plain(Box::new(raw)),
        Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(raw))),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| Error::CorruptLayer {
                    digest: desc.digest.to_string(),
                    reason: format!("starting the zstd decoder: {e}"),
                })?;
            Decoder::Zstd(Box::new(decoder))
        }
    };
    Ok(LayerReader {
        decoder,
        diff: Digester::new(),
        digest: desc.digest.clone(),
        failure,
        task,
    })
}

impl LayerReader {
    /// The typed error behind an `io::Error` this reader (or a parser reading from it)
    /// returned: the recorded verification/store failure if there was one, else a
    /// [`Error::CorruptLayer`] naming the blob.
    pub fn typed_error(&self, err: io::Error) -> Error {
        if let Ok(mut slot) = self.failure.lock() {
            if let Some(e) = slot.take() {
                return e;
            }
        }
        let reason = if err.kind() == io::ErrorKind::UnexpectedEof {
            format!("truncated: {err}")
        } else {
            err.to_string()
        };
        Error::CorruptLayer {
            digest: self.digest.to_string(),
            reason,
        }
    }

    /// Reads the rest of the layer (the tar's trailing padding and the compressed
    /// stream's end), verifies the blob's size and digest, and returns the diffID and
    /// the uncompressed size.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        if let Err(e) = io::copy(&mut self, &mut io::sink()) {
            return Err(self.typed_error(e));
        }
        // Anything after the compressed stream's end still counts toward the digest.
        let raw = self.decoder.raw();
        let drained = loop {
            match raw.fill_buf() {
                Ok([]) => break Ok(()),
                Ok(b) => {
                    let n = b.len();
                    raw.consume(n);
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = drained {
            return Err(self.typed_error(e));
        }
        let size = self.diff.len();
        Ok((self.diff.clone().finish(), size))
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.decoder {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        };
        match result {
            Ok(n) => {
                self.diff.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                // A decoder error may stem from a failure recorded underneath; keep
                // the typed one, else record the decoder's as corruption.
                let corrupt = Error::CorruptLayer {
                    digest: self.digest.to_string(),
                    reason: if e.kind() == io::ErrorKind::UnexpectedEof {
                        format!("truncated stream: {e}")
                    } else {
                        e.to_string()
                    },
                };
                Err(record(&self.failure, corrupt))
            }
        }
    }
}

impl Drop for LayerReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
