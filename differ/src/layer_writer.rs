//! One streaming pass from a tar producer to a committed layer blob: the tar is hashed
//! (diffID), compressed, and streamed into a content-store ingest through a bounded
//! channel; the blob is committed with its `containerd.io/uncompressed` label, or the
//! ingest is aborted so nothing partial is left.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_content::{AbortOnDrop, ContentStore, ContentWriter, Info, WriterOptions};
use strata_oci::{labels, Descriptor, Digest, Digester};
use tokio::sync::mpsc;

use crate::compression::Encoder;
use crate::{CompareOptions, Error, LayerBlob, Result};

/// Bytes of compressed output sent to the store per message.
const CHUNK: usize = 256 * 1024;
/// Messages in flight between the compressor and the store writer.
const CHANNEL_DEPTH: usize = 8;

/// The media type a blob of `opts` gets: `opts.media_type`, or the OCI layer type of
/// its compression.
pub(crate) fn layer_media_type(opts: &CompareOptions) -> String {
    opts.media_type.clone().unwrap_or_else(|| {
        opts.compression
            .layer_media_type(true)
            .unwrap_or(strata_oci::media_types::OCI_LAYER)
            .to_string()
    })
}

/// A unique ingest ref for a layer being written.
fn unique_ref() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "strata-layer-{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where compressed bytes go on the blocking side: batched into chunks and sent to the
/// async store writer.
struct ChannelSink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl ChannelSink {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer writer stopped"))
    }
}

impl Write for ChannelSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.len() + buf.len() > CHUNK && !self.buf.is_empty() {
            self.send_buf()?;
        }
        if buf.len() >= CHUNK {
            self.tx
                .blocking_send(buf.to_vec())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer writer stopped"))?;
        } else {
            self.buf.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

/// What the producer hands the tar to: hashes and counts it (unless the producer
/// hashes it itself), then compresses it.
struct TarSink {
    diff: Option<Digester>,
    encoder: Encoder<ChannelSink>,
}

impl Write for TarSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        if let Some(diff) = &mut self.diff {
            diff.update(&buf[..n]);
        }
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.encoder.write_all(buf)?;
        if let Some(diff) = &mut self.diff {
            diff.update(buf);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a layer blob into `store`: runs `produce` on a blocking thread, handing it a
/// writer for the uncompressed tar; the tar is hashed (its diffID) and compressed per
/// `opts` and streamed into an ingest (under `opts.lease` when set, with ref
/// `opts.reference` or a unique one). Memory stays bounded: at most a few MiB of
/// compressed data are in flight, nothing buffers the whole layer.
///
/// On success the blob is committed with the label `containerd.io/uncompressed=<diffID>`
/// plus `opts.labels`, and its descriptor carries `opts.media_type` or the OCI layer
/// type of the compression. If the same blob is already in the store that is success
/// (its labels are updated). If `produce` or the store fails, the ingest is aborted:
/// nothing is committed and the error is returned (a store error takes precedence
/// over the producer's broken pipe it caused).
pub(crate) async fn write_layer<F>(
    store: Arc<dyn ContentStore>,
    opts: &CompareOptions,
    produce: F,
) -> Result<LayerBlob>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send + 'static,
{
    write_layer_inner(store, opts, true, move |w| produce(w).map(|()| None)).await
}

/// [`write_layer`] for a producer that already hashes the tar it writes (a layer
/// being re-compressed): it returns the tar's diffID and size, which are not computed
/// a second time. An error from the producer (e.g. a diffID that disagrees with a
/// label) aborts the ingest as any other.
pub(crate) async fn write_hashed_layer<F>(
    store: Arc<dyn ContentStore>,
    opts: &CompareOptions,
    produce: F,
) -> Result<LayerBlob>
where
    F: FnOnce(&mut dyn Write) -> Result<(Digest, u64)> + Send + 'static,
{
    write_layer_inner(store, opts, false, move |w| produce(w).map(Some)).await
}

/// The pass behind [`write_layer`] and [`write_hashed_layer`]: the tar is hashed here
/// when `hash_tar`, else `produce` returns its diffID and size.
async fn write_layer_inner<F>(
    store: Arc<dyn ContentStore>,
    opts: &CompareOptions,
    hash_tar: bool,
    produce: F,
) -> Result<LayerBlob>
where
    F: FnOnce(&mut dyn Write) -> Result<Option<(Digest, u64)>> + Send + 'static,
{
    let store = match &opts.lease {
        Some(lease) => store.with_lease(lease),
        None => store,
    };
    let reference = opts.reference.clone().unwrap_or_else(unique_ref);
    let media_type = layer_media_type(opts);
    // Declared before the writer so it is dropped after it (the ingest is unlocked
    // by then). The open runs as its own task: if this future is dropped while it
    // is in flight, the guard waits for it before aborting what it created.
    let mut abort_on_drop = AbortOnDrop::new(Arc::clone(&store), reference.clone());
    let mut writer = abort_on_drop
        .open(WriterOptions {
            reference: reference.clone(),
            expected: None,
        })
        .await?;
    if writer.offset() > 0 {
        // A stale ingest under a caller-chosen ref: start over.
        writer.truncate(0).await?;
    }

    let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let compression = opts.compression;
    let level = opts.level;
    let threads = opts.threads;
    let chunk_size = opts.estargz_chunk_size;
    // eStargz appends the TOC to the tar: the diffID is hashed here, over both.
    let hash_tar = hash_tar || compression == strata_oci::Compression::Estargz;
    type Produced = (Digest, u64, std::collections::BTreeMap<String, String>);
    let producer = tokio::task::spawn_blocking(move || -> Result<Produced> {
        let sink = ChannelSink {
            buf: Vec::with_capacity(CHUNK),
            tx,
        };
        let encoder = Encoder::with_chunk_size(sink, compression, level, threads, chunk_size)
            .map_err(|e| {
                Error::Content(strata_content::Error::io(
                    "starting the layer compressor",
                    e,
                ))
            })?;
        let mut tar = TarSink {
            diff: hash_tar.then(Digester::new),
            encoder,
        };
        let supplied = produce(&mut tar)?;
        let TarSink { mut diff, encoder } = tar;
        let finished = encoder.finish_layer().map_err(|e| {
            Error::Content(strata_content::Error::io(
                "finishing the layer compressor",
                e,
            ))
        })?;
        let mut sink = finished.out;
        if let Some(diff) = &mut diff {
            diff.update(&finished.appended);
        }
        let annotations = finished.annotations;
        sink.send_buf().map_err(|e| {
            Error::Content(strata_content::Error::io(
                "sending the layer's last bytes",
                e,
            ))
        })?;
        match (diff, supplied) {
            (Some(diff), _) => {
                let size = diff.len();
                Ok((diff.finish(), size, annotations))
            }
            (None, Some((diff_id, size))) => Ok((diff_id, size, annotations)),
            (None, None) => Err(Error::Content(strata_content::Error::io(
                "finishing the layer",
                io::Error::other("the producer returned no diffID for the tar it hashed"),
            ))),
        }
    });

    let pumped = pump(&mut *writer, rx, opts).await;
    let produced = match producer.await {
        Ok(r) => r,
        Err(join) => Err(Error::Content(strata_content::Error::io(
            format!("layer producer for ingest {reference}"),
            io::Error::other(join.to_string()),
        ))),
    };
    let (diff_id, uncompressed_size, annotations) = match (pumped, produced) {
        (Ok(()), Ok(v)) => v,
        (Err(e), _) | (Ok(()), Err(e)) => {
            drop(writer);
            abort_on_drop.disarm();
            if let Err(abort) = store.abort(&reference).await {
                if !abort.is_not_found() {
                    tracing::warn!(%reference, error = %abort, "aborting a failed layer ingest");
                }
            }
            return Err(e);
        }
    };

    let digest = writer.digest();
    let size = writer.offset();
    let mut blob_labels = opts.labels.clone();
    blob_labels.insert(labels::UNCOMPRESSED.to_string(), diff_id.to_string());
    let committed = writer
        .commit(size, Some(&digest), blob_labels.clone())
        .await;
    abort_on_drop.disarm();
    match committed {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => ensure_labels(&*store, &digest, blob_labels).await?,
        Err(e) => {
            let _ = store.abort(&reference).await;
            return Err(e.into());
        }
    }
    let mut descriptor = Descriptor::new(media_type, digest, size);
    descriptor.annotations = annotations;
    Ok(LayerBlob {
        descriptor,
        diff_id,
        uncompressed_size,
    })
}

/// Moves compressed chunks from the channel into the store writer, reporting progress.
async fn pump(
    writer: &mut dyn ContentWriter,
    mut rx: mpsc::Receiver<Vec<u8>>,
    opts: &CompareOptions,
) -> Result<()> {
    let mut written = 0u64;
    while let Some(chunk) = rx.recv().await {
        writer.write(&chunk).await?;
        written += chunk.len() as u64;
        if let Some(progress) = &opts.progress {
            progress(written);
        }
    }
    Ok(())
}

/// Makes sure an already-present blob carries `wanted` labels (adds or overwrites them,
/// keeps the others).
async fn ensure_labels(
    store: &dyn ContentStore,
    digest: &Digest,
    wanted: strata_content::Labels,
) -> Result<()> {
    let info = store.info(digest).await?;
    if wanted.iter().all(|(k, v)| info.labels.get(k) == Some(v)) {
        return Ok(());
    }
    let fieldpaths: Vec<String> = wanted.keys().map(|k| format!("labels.{k}")).collect();
    let mut labels = info.labels.clone();
    labels.extend(wanted);
    store.update(Info { labels, ..info }, &fieldpaths).await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layer_reader::open_layer;
    use std::io::Read;
    use strata_content::{Filter, MemoryStore, ResourceKind};
    use strata_oci::Compression;

    /// A small real tar (files and a directory) built with the `tar` crate.
    pub(crate) fn sample_tar(files: usize, file_size: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, "dir/", io::empty())
            .expect("dir");
        let body = crate::compression::tests::sample(file_size);
        for i in 0..files {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(file_size as u64);
            header.set_mtime(1_700_000_000);
            builder
                .append_data(&mut header, format!("dir/file{i}"), &body[..])
                .expect("file");
        }
        builder.into_inner().expect("tar")
    }

    /// Options writing a `compression` layer with two threads.
    pub(crate) fn opts(compression: Compression) -> CompareOptions {
        CompareOptions {
            compression,
            threads: Some(2),
            ..CompareOptions::default()
        }
    }

    /// Writes `tar` (in 10 kB writes) as a layer blob per `opts`.
    pub(crate) async fn write_bytes(
        store: Arc<dyn ContentStore>,
        opts: &CompareOptions,
        tar: Vec<u8>,
    ) -> Result<LayerBlob> {
        write_layer(store, opts, move |w| {
            for part in tar.chunks(10_000) {
                w.write_all(part).map_err(|e| Error::Io {
                    path: "test".into(),
                    source: e,
                })?;
            }
            Ok(())
        })
        .await
    }

    async fn read_back(
        store: Arc<dyn ContentStore>,
        desc: &Descriptor,
    ) -> Result<(Vec<u8>, Digest)> {
        let mut reader = open_layer(store, desc, crate::DecompressionLimit::DEFAULT).await?;
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            if let Err(e) = reader.read_to_end(&mut out) {
                return Err(reader.typed_error(e));
            }
            let (diff_id, size) = reader.finish()?;
            assert_eq!(size, out.len() as u64);
            Ok((out, diff_id))
        })
        .await
        .expect("join")
    }

    #[tokio::test]
    async fn writes_labels_and_reads_back_every_compression() {
        let tar = sample_tar(20, 70_000);
        for compression in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zstd,
            Compression::ZstdChunked,
        ] {
            let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
            let progress_seen = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&progress_seen);
            let mut o = opts(compression);
            o.labels.insert("x.test/mark".into(), "1".into());
            o.progress = Some(Arc::new(move |n| seen.store(n, Ordering::Relaxed)));
            let blob = write_bytes(Arc::clone(&store), &o, tar.clone())
                .await
                .expect("write");
            assert_eq!(blob.diff_id, Digest::sha256_of(&tar));
            assert_eq!(blob.uncompressed_size, tar.len() as u64);
            assert_eq!(
                blob.descriptor.media_type,
                compression.layer_media_type(true).expect("oci type")
            );
            assert_eq!(progress_seen.load(Ordering::Relaxed), blob.descriptor.size);
            let info = store
                .info(&blob.descriptor.digest)
                .await
                .expect("committed");
            assert_eq!(info.size, blob.descriptor.size);
            assert_eq!(
                info.labels.get(labels::UNCOMPRESSED),
                Some(&blob.diff_id.to_string())
            );
            assert_eq!(info.labels.get("x.test/mark"), Some(&"1".to_string()));
            let (back, diff_id) = read_back(Arc::clone(&store), &blob.descriptor)
                .await
                .expect("read back");
            assert!(back == tar, "{compression} round trip");
            assert_eq!(diff_id, blob.diff_id);
            assert!(store.list_statuses().await.expect("statuses").is_empty());
        }
    }

    #[tokio::test]
    async fn same_tar_same_blob_and_labels_restored() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let tar = sample_tar(3, 300_000);
        let a = write_bytes(Arc::clone(&store), &opts(Compression::Gzip), tar.clone())
            .await
            .expect("first");
        // Drop the label, then write the same layer again with another thread count.
        let mut info = store.info(&a.descriptor.digest).await.expect("info");
        info.labels.clear();
        store
            .update(info, &["labels".to_string()])
            .await
            .expect("clear labels");
        let mut o = opts(Compression::Gzip);
        o.threads = Some(1);
        let b = write_bytes(Arc::clone(&store), &o, tar)
            .await
            .expect("second");
        assert_eq!(a, b);
        let info = store.info(&b.descriptor.digest).await.expect("info");
        assert_eq!(
            info.labels.get(labels::UNCOMPRESSED),
            Some(&a.diff_id.to_string())
        );
        assert_eq!(store.walk(&Filter::All).await.expect("walk").len(), 1);
    }

    #[tokio::test]
    async fn producer_failure_commits_nothing() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let mut o = opts(Compression::Gzip);
        o.reference = Some("failing-layer".into());
        let err = write_layer(Arc::clone(&store), &o, |w| {
            // Enough data to have reached the store before failing.
            let tar = sample_tar(10, 200_000);
            w.write_all(&tar).map_err(|e| Error::Io {
                path: "x".into(),
                source: e,
            })?;
            Err(Error::TreeChanged {
                path: "/upper/etc/passwd".into(),
                reason: "size moved".into(),
            })
        })
        .await
        .expect_err("must fail");
        assert!(matches!(err, Error::TreeChanged { .. }), "{err}");
        assert!(store.walk(&Filter::All).await.expect("walk").is_empty());
        assert!(store.list_statuses().await.expect("statuses").is_empty());
    }

    #[tokio::test]
    async fn writes_under_the_lease() {
        use strata_content::LeaseManager;
        let mem = MemoryStore::new();
        mem.create_lease(Some("export-1"), Default::default())
            .await
            .expect("lease");
        let mut o = opts(Compression::Zstd);
        o.lease = Some("export-1".into());
        let blob = write_bytes(Arc::new(mem.clone()), &o, sample_tar(2, 5000))
            .await
            .expect("write");
        let held = mem.list_resources("export-1").await.expect("resources");
        assert!(
            held.iter()
                .any(|r| r.kind == ResourceKind::Content && r.id == blob.descriptor.digest.as_str()),
            "{held:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_write_aborts_its_ingest() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let o = opts(Compression::Gzip);
        let mut write = Box::pin(write_layer(Arc::clone(&store), &o, move |w| {
            w.write_all(&sample_tar(1, 1000)).map_err(|e| Error::Io {
                path: "test".into(),
                source: e,
            })?;
            let _ = started_tx.send(());
            // Blocks until the test lets go (or drops the sender).
            let _ = release_rx.recv();
            Ok(())
        }));
        let started = tokio::task::spawn_blocking(move || started_rx.recv());
        tokio::select! {
            done = &mut write => panic!("the write finished before it was dropped: {done:?}"),
            _ = started => {}
        }
        assert_eq!(store.list_statuses().await.expect("statuses").len(), 1);
        drop(write);
        drop(release_tx);
        // The abort runs on a spawned task: wait for it (bounded), then check.
        for _ in 0..500 {
            if store.list_statuses().await.expect("statuses").is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(store.list_statuses().await.expect("statuses").is_empty());
        assert!(store.walk(&Filter::All).await.expect("walk").is_empty());
    }
}
