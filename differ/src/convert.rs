//! Re-compressing an existing layer blob (the exporter's `force-compression`).

use std::io;
use std::sync::Arc;

use strata_content::ContentStore;
use strata_oci::{labels, Descriptor};

use crate::layer_reader::open_layer;
use crate::layer_writer::write_hashed_layer;
use crate::{CompareOptions, DecompressionLimit, Error, LayerBlob, Result};

/// Re-compresses the layer `desc` (any compression the media type names) into
/// `opts.compression` at `opts.level`, in one streaming pass: the source is
/// decompressed and its digest verified while it is read, the tar is hashed once
/// (diffID, by the reader) and written as a new blob exactly as
/// [`Comparer::compare`](crate::Comparer::compare) writes one (labels, lease, media
/// type, progress from `opts`). If the source carries a `containerd.io/uncompressed`
/// label that disagrees with the tar actually read, the conversion fails with
/// [`Error::CorruptLayer`] and nothing is committed; a source whose tar passes
/// [`DecompressionLimit::DEFAULT`] fails with [`Error::TarTooLarge`].
pub async fn convert_layer(
    store: Arc<dyn ContentStore>,
    desc: &Descriptor,
    opts: &CompareOptions,
) -> Result<LayerBlob> {
    let expected_diff_id = match store.info(&desc.digest).await {
        Ok(info) => info.labels.get(labels::UNCOMPRESSED).cloned(),
        Err(e) => return Err(e.into()),
    };
    let mut reader = open_layer(Arc::clone(&store), desc, DecompressionLimit::DEFAULT).await?;
    let source = desc.digest.to_string();
    write_hashed_layer(store, opts, move |w| {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(reader.typed_error(e)),
            };
            w.write_all(&buf[..n]).map_err(|e| {
                Error::Content(strata_content::Error::io(
                    format!("re-compressing layer {source}"),
                    e,
                ))
            })?;
        }
        let (diff_id, size) = reader.finish()?;
        match expected_diff_id {
            Some(label) if label != diff_id.as_str() => Err(Error::CorruptLayer {
                digest: source,
                reason: format!("its tar hashes to {diff_id}, but it is labelled {label}"),
            }),
            _ => Ok((diff_id, size)),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_writer::tests::{sample_tar, write_bytes};
    use strata_content::{Filter, MemoryStore};
    use strata_oci::Compression;

    async fn layer(store: Arc<dyn ContentStore>, c: Compression, tar: Vec<u8>) -> LayerBlob {
        let opts = CompareOptions {
            compression: c,
            ..CompareOptions::default()
        };
        write_bytes(store, &opts, tar).await.expect("write layer")
    }

    #[tokio::test]
    async fn converts_between_all_compressions_keeping_the_diff_id() {
        let tar = sample_tar(8, 90_000);
        let all = [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zstd,
            Compression::ZstdChunked,
        ];
        for from in all {
            for to in all {
                let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
                let src = layer(Arc::clone(&store), from, tar.clone()).await;
                let direct = layer(Arc::new(MemoryStore::new()), to, tar.clone()).await;
                let opts = CompareOptions {
                    compression: to,
                    ..CompareOptions::default()
                };
                let converted = convert_layer(Arc::clone(&store), &src.descriptor, &opts)
                    .await
                    .expect("convert");
                // Same bytes as writing the tar in that compression directly.
                assert_eq!(converted, direct, "{from} -> {to}");
                let info = store
                    .info(&converted.descriptor.digest)
                    .await
                    .expect("info");
                assert_eq!(
                    info.labels.get(labels::UNCOMPRESSED),
                    Some(&src.diff_id.to_string())
                );
            }
        }
    }

    #[tokio::test]
    async fn a_lying_diff_id_label_fails_and_commits_nothing() {
        let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
        let src = layer(Arc::clone(&store), Compression::Gzip, sample_tar(2, 1000)).await;
        let mut info = store.info(&src.descriptor.digest).await.expect("info");
        info.labels.insert(
            labels::UNCOMPRESSED.into(),
            strata_oci::Digest::sha256_of(b"other").to_string(),
        );
        store
            .update(info, &[format!("labels.{}", labels::UNCOMPRESSED)])
            .await
            .expect("update");
        let opts = CompareOptions {
            compression: Compression::Zstd,
            ..CompareOptions::default()
        };
        let err = convert_layer(Arc::clone(&store), &src.descriptor, &opts)
            .await
            .expect_err("lying label");
        assert!(matches!(err, Error::CorruptLayer { .. }), "{err}");
        assert_eq!(store.walk(&Filter::All).await.expect("walk").len(), 1);
        assert!(store.list_statuses().await.expect("statuses").is_empty());
    }
}
