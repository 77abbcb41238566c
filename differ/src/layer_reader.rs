//! Reading a layer blob back as its uncompressed tar: a blocking [`Read`] that
//! decompresses according to the media type, verifies the blob's size and digest
//! against its descriptor while reading (never reading past its size), stops at the
//! layer's [`DecompressionLimit`], and hashes the tar (the diffID).

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use strata_content::ContentStore;
use strata_oci::{Compression, Descriptor, Digest, Digester};
use tokio::sync::mpsc;

use crate::{DecompressionLimit, Error, Result};

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
    /// Not started: decoders may read their header when built, which must happen on
    /// the blocking thread, so they are built on the first read.
    Start(Compression, Option<Box<BufReader<VerifiedBlob>>>),
    Plain(Box<BufReader<VerifiedBlob>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<VerifiedBlob>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<VerifiedBlob>>>),
}

impl Decoder {
    fn raw(&mut self) -> Option<&mut BufReader<VerifiedBlob>> {
        match self {
            Decoder::Start(_, r) => r.as_deref_mut(),
            Decoder::Plain(r) => Some(r),
            Decoder::Gzip(d) => Some(d.get_mut()),
            Decoder::Zstd(d) => Some(d.get_mut()),
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
pub(crate) struct LayerReader {
    decoder: Decoder,
    /// Hashes the tar; `None` for an uncompressed layer, whose tar is the blob
    /// already hashed (and verified) underneath, so its diffID is its digest.
    diff: Option<Digester>,
    /// Bytes of tar read so far.
    tar_bytes: u64,
    /// The most bytes of tar the layer may hold.
    tar_limit: u64,
    digest: Digest,
    size: u64,
    failure: FailureSlot,
    task: tokio::task::JoinHandle<()>,
}

/// Opens the layer `desc` in `store` for reading its uncompressed tar, at most
/// `limit`'s bytes of it ([`Error::TarTooLarge`] past them). The compression comes from
/// the media type (`UnsupportedMediaType` otherwise); a missing blob is
/// `Content(NotFound)` naming it. Must be called within a tokio runtime.
pub(crate) async fn open_layer(
    store: Arc<dyn ContentStore>,
    desc: &Descriptor,
    limit: DecompressionLimit,
) -> Result<LayerReader> {
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
    let decoder = Decoder::Start(compression, Some(Box::new(raw)));
    Ok(LayerReader {
        decoder,
        diff: (compression != Compression::Uncompressed).then(Digester::new),
        tar_bytes: 0,
        tar_limit: limit.tar_bytes(compression, desc.size),
        digest: desc.digest.clone(),
        size: desc.size,
        failure,
        task,
    })
}

/// Opens the layer `desc` in `store` as its uncompressed tar, for a reader outside this
/// crate (the SBOM scanner): decompressed according to the media type
/// (`UnsupportedMediaType` otherwise), at most `limit`'s bytes of it, the blob's size
/// and digest checked against `desc` when the stream is read to its end. Reads block
/// on the runtime: read it on a blocking thread, never on an async worker.
pub async fn open_layer_tar(
    store: Arc<dyn ContentStore>,
    desc: &Descriptor,
    limit: DecompressionLimit,
) -> Result<Box<dyn Read + Send>> {
    Ok(Box::new(open_layer(store, desc, limit).await?))
}

impl LayerReader {
    /// The most bytes of tar this layer may hold (its [`DecompressionLimit`]).
    pub(crate) fn tar_limit(&self) -> u64 {
        self.tar_limit
    }

    /// The typed error behind an `io::Error` this reader (or a parser reading from it)
    /// returned: the recorded verification/store failure if there was one, else a
    /// [`Error::CorruptLayer`] naming the blob.
    pub(crate) fn typed_error(&self, err: io::Error) -> Error {
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
    pub(crate) fn finish(mut self) -> Result<(Digest, u64)> {
        if let Err(e) = io::copy(&mut self, &mut io::sink()) {
            return Err(self.typed_error(e));
        }
        // Anything after the compressed stream's end still counts toward the digest.
        let Some(raw) = self.decoder.raw() else {
            return Err(self.typed_error(io::Error::other("layer decoder failed to start")));
        };
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
        // Draining ended at the blob's end, where its size and digest were verified.
        Ok(match self.diff.take() {
            Some(diff) => {
                let size = diff.len();
                (diff.finish(), size)
            }
            None => (self.digest.clone(), self.size),
        })
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Decoder::Start(compression, raw) = &mut self.decoder {
            let compression = *compression;
            let raw = raw
                .take()
                .ok_or_else(|| io::Error::other("layer decoder failed to start"))?;
            self.decoder = match compression {
                Compression::Uncompressed => Decoder::Plain(raw),
                Compression::Gzip | Compression::Estargz => {
                    Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(*raw)))
                }
                Compression::Zstd | Compression::ZstdChunked => {
                    match zstd::stream::read::Decoder::with_buffer(*raw) {
                        Ok(d) => Decoder::Zstd(Box::new(d)),
                        Err(e) => {
                            return Err(record(
                                &self.failure,
                                Error::CorruptLayer {
                                    digest: self.digest.to_string(),
                                    reason: format!("starting the zstd decoder: {e}"),
                                },
                            ))
                        }
                    }
                }
            };
        }
        let result = match &mut self.decoder {
            Decoder::Start(..) => Err(io::Error::other("layer decoder failed to start")),
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        };
        match result {
            Ok(n) => {
                self.tar_bytes += n as u64;
                if self.tar_bytes > self.tar_limit {
                    let too_large = Error::TarTooLarge {
                        layer: self.digest.to_string(),
                        limit: self.tar_limit,
                    };
                    return Err(record(&self.failure, too_large));
                }
                if let Some(diff) = &mut self.diff {
                    diff.update(&buf[..n]);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_writer::tests::{sample_tar, write_bytes};
    use crate::CompareOptions;
    use async_trait::async_trait;
    use strata_content::{
        ContentWriter, Filter, Info, MemoryStore, ReaderAt, Status, WriterOptions,
    };

    /// A store whose reads of `victim` return the bytes of `substitute` instead (a
    /// blob corrupted on disk, or a lying backend).
    struct SwappingStore {
        inner: MemoryStore,
        victim: Digest,
        substitute: Descriptor,
    }

    #[async_trait]
    impl ContentStore for SwappingStore {
        async fn info(&self, d: &Digest) -> strata_content::Result<Info> {
            self.inner.info(d).await
        }
        async fn update(&self, i: Info, f: &[String]) -> strata_content::Result<Info> {
            self.inner.update(i, f).await
        }
        async fn walk(&self, f: &Filter) -> strata_content::Result<Vec<Info>> {
            self.inner.walk(f).await
        }
        async fn delete(&self, d: &Digest) -> strata_content::Result<()> {
            self.inner.delete(d).await
        }
        async fn reader(&self, desc: &Descriptor) -> strata_content::Result<Box<dyn ReaderAt>> {
            if desc.digest == self.victim {
                self.inner.reader(&self.substitute).await
            } else {
                self.inner.reader(desc).await
            }
        }
        async fn writer(&self, o: WriterOptions) -> strata_content::Result<Box<dyn ContentWriter>> {
            self.inner.writer(o).await
        }
        async fn status(&self, r: &str) -> strata_content::Result<Status> {
            self.inner.status(r).await
        }
        async fn list_statuses(&self) -> strata_content::Result<Vec<Status>> {
            self.inner.list_statuses().await
        }
        async fn abort(&self, r: &str) -> strata_content::Result<()> {
            self.inner.abort(r).await
        }
        fn with_lease(&self, l: &str) -> Arc<dyn ContentStore> {
            self.inner.with_lease(l)
        }
    }

    async fn put(store: &dyn ContentStore, bytes: &[u8], media_type: &str) -> Descriptor {
        let desc = Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64);
        strata_content::write_blob(store, "put", bytes, &desc, Default::default())
            .await
            .expect("put blob");
        desc
    }

    /// Reads the layer to the end and finishes; the typed error if any step fails.
    async fn consume(store: Arc<dyn ContentStore>, desc: &Descriptor) -> Result<Digest> {
        let mut reader = open_layer(store, desc, DecompressionLimit::DEFAULT).await?;
        tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(&mut reader);
            let walked = (|| -> io::Result<()> {
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    io::copy(&mut entry, &mut io::sink())?;
                }
                Ok(())
            })();
            if let Err(e) = walked {
                return Err(reader.typed_error(e));
            }
            reader.finish().map(|(d, _)| d)
        })
        .await
        .expect("join")
    }

    async fn gzip_layer(store: Arc<dyn ContentStore>, tar: Vec<u8>) -> crate::LayerBlob {
        write_bytes(store, &CompareOptions::default(), tar)
            .await
            .expect("write layer")
    }

    #[tokio::test]
    async fn open_layer_tar_reads_back_the_uncompressed_tar() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let tar = sample_tar(3, 40_000);
        let layer = gzip_layer(Arc::clone(&store), tar.clone()).await;
        assert_ne!(layer.descriptor.digest, layer.diff_id, "compressed");
        let mut reader = open_layer_tar(store, &layer.descriptor, DecompressionLimit::DEFAULT)
            .await
            .expect("open");
        let read = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map(|_| bytes)
        })
        .await
        .expect("join")
        .expect("read");
        assert_eq!(read, tar);
    }

    #[tokio::test]
    async fn digest_mismatch_is_typed_and_names_the_blob() {
        let mem = MemoryStore::new();
        let good = gzip_layer(Arc::new(mem.clone()), sample_tar(4, 50_000)).await;
        let other = gzip_layer(Arc::new(mem.clone()), sample_tar(5, 50_000)).await;
        let store: Arc<dyn ContentStore> = Arc::new(SwappingStore {
            inner: mem,
            victim: good.descriptor.digest.clone(),
            substitute: other.descriptor.clone(),
        });
        // Same size, other bytes: a valid tar.gz whose digest is not the descriptor's.
        let mut desc = good.descriptor.clone();
        desc.size = other.descriptor.size;
        let err = consume(store, &desc).await.expect_err("mismatch");
        match err {
            Error::Content(strata_content::Error::DigestMismatch { subject, .. }) => {
                assert!(subject.contains(good.descriptor.digest.hex()), "{subject}")
            }
            other => panic!("expected a digest mismatch, got {other}"),
        }
    }

    #[tokio::test]
    async fn size_mismatch_is_typed() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let good = gzip_layer(Arc::clone(&store), sample_tar(2, 10_000)).await;
        let mut desc = good.descriptor.clone();
        desc.size += 10;
        let err = consume(store, &desc).await.expect_err("mismatch");
        assert!(
            matches!(
                err,
                Error::Content(strata_content::Error::SizeMismatch { .. })
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn corrupt_and_truncated_layers_are_corrupt_layer_errors() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let tar = sample_tar(6, 80_000);
        for (compression, media_type) in [
            (
                strata_oci::Compression::Gzip,
                strata_oci::media_types::OCI_LAYER_GZIP,
            ),
            (
                strata_oci::Compression::Zstd,
                strata_oci::media_types::OCI_LAYER_ZSTD,
            ),
        ] {
            let blob = crate::compression::compress_to_vec(&tar, compression, None, Some(2))
                .expect("compress");
            // Truncated: a blob committed (digest matches) but cut short.
            let cut = put(&*store, &blob[..blob.len() / 2], media_type).await;
            let err = consume(Arc::clone(&store), &cut)
                .await
                .expect_err("truncated");
            match &err {
                Error::CorruptLayer { digest, .. } => assert_eq!(digest, cut.digest.as_str()),
                other => panic!("{compression}: expected CorruptLayer, got {other}"),
            }
            // Corrupt: bytes flipped in the middle.
            let mut bad = blob.clone();
            let mid = bad.len() / 2;
            for b in &mut bad[mid..mid + 64] {
                *b ^= 0x5a;
            }
            let bad = put(&*store, &bad, media_type).await;
            let err = consume(Arc::clone(&store), &bad)
                .await
                .expect_err("corrupt");
            assert!(
                matches!(err, Error::CorruptLayer { .. }),
                "{compression}: {err}"
            );
        }
        // Not compressed at all, but labelled gzip.
        let plain = put(&*store, &tar, strata_oci::media_types::OCI_LAYER_GZIP).await;
        let err = consume(Arc::clone(&store), &plain)
            .await
            .expect_err("not gzip");
        assert!(matches!(err, Error::CorruptLayer { .. }), "{err}");
    }

    #[tokio::test]
    async fn unknown_media_type_and_missing_blob() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let desc = Descriptor::new(
            "application/vnd.oci.image.config.v1+json",
            Digest::sha256_of(b"x"),
            1,
        );
        assert!(matches!(
            open_layer(Arc::clone(&store), &desc, DecompressionLimit::DEFAULT).await,
            Err(Error::UnsupportedMediaType(_))
        ));
        let desc = Descriptor::new(
            strata_oci::media_types::OCI_LAYER,
            Digest::sha256_of(b"x"),
            1,
        );
        assert!(matches!(
            open_layer(store, &desc, DecompressionLimit::DEFAULT).await,
            Err(Error::Content(strata_content::Error::NotFound(_)))
        ));
    }
}
