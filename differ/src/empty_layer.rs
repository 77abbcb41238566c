//! The empty layer: the blob of a layer without changes (an empty tar), known without
//! writing it, so exporters can recognize and drop empty layers by digest.

use strata_oci::{Compression, Descriptor, Digest};

use crate::compression::compress_to_vec;
use crate::{Error, LayerBlob, Result};

/// The size of an empty layer's tar: two 512-byte zero blocks (the end-of-archive
/// marker), as `tar` and containerd write it.
pub const EMPTY_TAR_SIZE: usize = 1024;

/// The diffID of an empty layer: the digest of a tar of [`EMPTY_TAR_SIZE`] zero bytes,
/// whatever the compression of its blob.
pub fn empty_layer_diff_id() -> Digest {
    Digest::sha256_of(&[0u8; EMPTY_TAR_SIZE])
}

/// The blob of an empty layer (a tar of [`EMPTY_TAR_SIZE`] zero bytes) in `compression`
/// at `level`: its descriptor (OCI media type), diffID and bytes. Deterministic, so
/// exporters can recognize and drop empty layers by digest.
pub fn empty_layer(compression: Compression, level: Option<i32>) -> Result<(LayerBlob, Vec<u8>)> {
    let tar = [0u8; EMPTY_TAR_SIZE];
    let bytes = compress_to_vec(&tar, compression, level, Some(1))
        .map_err(|e| Error::Content(strata_content::Error::io("compressing the empty layer", e)))?;
    let media_type = compression
        .layer_media_type(true)
        .unwrap_or(strata_oci::media_types::OCI_LAYER);
    let blob = LayerBlob {
        descriptor: Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as u64),
        diff_id: empty_layer_diff_id(),
        uncompressed_size: EMPTY_TAR_SIZE as u64,
    };
    Ok((blob, bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_content::{ContentStore, MemoryStore};

    use super::*;
    use crate::layer_writer::tests::{opts, write_bytes};

    #[test]
    fn empty_layer_matches_a_written_empty_tar() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        for compression in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zstd,
        ] {
            let (blob, bytes) = empty_layer(compression, None).expect("empty");
            let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
            let written = rt
                .block_on(write_bytes(store, &opts(compression), vec![0u8; 1024]))
                .expect("write");
            assert_eq!(blob, written);
            assert_eq!(bytes.len() as u64, blob.descriptor.size);
        }
        // The well-known diffID of an empty layer.
        assert_eq!(
            empty_layer(Compression::Gzip, None)
                .expect("empty")
                .0
                .diff_id
                .as_str(),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        );
    }
}
