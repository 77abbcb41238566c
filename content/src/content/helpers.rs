//! Helpers over any [`ContentStore`], like containerd's `content` package:
//! [`open_writer`], [`write_blob`], [`read_blob`] and [`copy`].

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ContentStore, ContentWriter, WriterOptions};
use crate::error::{Error, Result};
use crate::label::Labels;
use strata_oci::Descriptor;
use strata_oci::Digest;

/// Size of the chunks the helpers read and write.
pub(super) const CHUNK: usize = 1 << 20;

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
/// on the GC labels of a blob they "write" being present afterwards. When the write or
/// the commit fails, the ingest is aborted before the error is returned, so nothing
/// partial is left behind.
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
        Ok(w) => match copy(w, bytes, expected.size, &expected.digest, labels.clone()).await {
            Ok(committed) => committed,
            Err(e) => {
                if let Err(abort) = store.abort(reference).await {
                    if !abort.is_not_found() {
                        tracing::warn!(%reference, error = %abort, "aborting a failed blob write");
                    }
                }
                return Err(e);
            }
        },
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
