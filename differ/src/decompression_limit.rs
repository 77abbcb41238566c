//! [`DecompressionLimit`]: how many bytes of tar a compressed layer blob may expand to.

use strata_oci::Compression;

/// How many bytes of tar a layer blob may decompress to: `max(floor, ratio × blob
/// size)` for a gzip or zstd layer; an uncompressed layer's tar is its blob, so its
/// bound is the blob's size.
///
/// OCI descriptors give only the compressed size (an uncompressed size was proposed,
/// opencontainers/image-spec#1246, and not adopted), and containerd and Docker bound
/// nothing, so a small blob can expand without end (gzip reaches ~1000:1 on zeros,
/// zstd far more). The default, [`DecompressionLimit::DEFAULT`], allows 4 GiB for any
/// layer and 200 times the blob beyond that (Apache `mod_deflate`'s default
/// `DeflateInflateRatioLimit`): far above real layers (2–10:1), while 10 GiB of zeros
/// in a 10 MB gzip blob is refused. Reading a layer stops with
/// [`Error::TarTooLarge`](crate::Error::TarTooLarge) when its tar passes the bound; the
/// applier refuses an entry whose header claims data past it
/// ([`Refusal::PastTarLimit`](crate::Refusal::PastTarLimit)) before reading any of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecompressionLimit {
    /// Bytes of tar allowed per byte of compressed blob.
    pub ratio: u64,
    /// Bytes of tar always allowed, whatever the ratio.
    pub floor: u64,
}

impl DecompressionLimit {
    /// 4 GiB, or 200 bytes of tar per byte of blob when that is more.
    pub const DEFAULT: DecompressionLimit = DecompressionLimit {
        ratio: 200,
        floor: 4 << 30,
    };

    /// The bytes of tar a blob of `blob_size` bytes compressed with `compression` may
    /// decompress to.
    pub fn tar_bytes(&self, compression: Compression, blob_size: u64) -> u64 {
        match compression {
            Compression::Uncompressed => blob_size,
            Compression::Gzip
            | Compression::Zstd
            | Compression::Estargz
            | Compression::ZstdChunked => self.floor.max(self.ratio.saturating_mul(blob_size)),
        }
    }
}

impl Default for DecompressionLimit {
    fn default() -> Self {
        DecompressionLimit::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_the_floor_or_the_ratio_and_the_blob_itself_when_uncompressed() {
        let limit = DecompressionLimit::DEFAULT;
        assert_eq!(limit.tar_bytes(Compression::Gzip, 1 << 20), 4 << 30);
        assert_eq!(
            limit.tar_bytes(Compression::Zstd, 100 << 20),
            200 * (100 << 20)
        );
        assert_eq!(limit.tar_bytes(Compression::Uncompressed, 5000), 5000);
        assert_eq!(limit.tar_bytes(Compression::Gzip, u64::MAX), u64::MAX);
    }
}
