//! Layer compressions and their media types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::media_types;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    Uncompressed,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
    /// eStargz (containerd/stargz-snapshotter `docs/estargz.md`): gzip with a member per
    /// file payload and chunk, a table of contents (`stargz.index.json`) and a footer,
    /// so a snapshotter can fetch files lazily. Valid gzip to every other reader; OCI
    /// media types only; its layer descriptor carries [`crate::annotations::ESTARGZ_TOC_DIGEST`]
    /// and [`crate::annotations::ESTARGZ_UNCOMPRESSED_SIZE`].
    Estargz,
    /// zstd:chunked (containers/storage `pkg/chunked`): zstd with a frame per file
    /// payload and per rolling-checksum chunk, a zstd-compressed table of contents and
    /// tar-split in skippable frames and a 64-byte footer, so containers/storage can
    /// pull files lazily. Valid zstd to every other reader (it decompresses to exactly
    /// the layer tar); OCI media types only; its layer descriptor carries
    /// [`crate::annotations::ZSTD_CHUNKED_MANIFEST_CHECKSUM`],
    /// [`crate::annotations::ZSTD_CHUNKED_MANIFEST_POSITION`] and
    /// [`crate::annotations::ZSTD_CHUNKED_TARSPLIT_POSITION`].
    #[serde(rename = "zstd:chunked")]
    ZstdChunked,
}

impl Compression {
    /// Whether blobs of this compression are gzip streams (gzip and eStargz).
    pub fn is_gzip(self) -> bool {
        matches!(self, Compression::Gzip | Compression::Estargz)
    }

    /// Whether blobs of this compression are zstd streams (zstd and zstd:chunked).
    pub fn is_zstd(self) -> bool {
        matches!(self, Compression::Zstd | Compression::ZstdChunked)
    }

    /// BuildKit's name for it: `uncompressed`, `gzip`, `zstd`, `estargz`,
    /// `zstd:chunked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Estargz => "estargz",
            Compression::ZstdChunked => "zstd:chunked",
        }
    }

    /// Parses BuildKit's names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "uncompressed" => Some(Compression::Uncompressed),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "estargz" => Some(Compression::Estargz),
            "zstd:chunked" => Some(Compression::ZstdChunked),
            _ => None,
        }
    }

    /// The layer media type for this compression, OCI or Docker; `None` where Docker
    /// schema2 has no type for it (zstd, zstd:chunked, eStargz: BuildKit refuses eStargz
    /// with Docker media types too).
    pub fn layer_media_type(self, oci: bool) -> Option<&'static str> {
        use media_types::*;
        Some(match (self, oci) {
            (Compression::Uncompressed, true) => OCI_LAYER,
            (Compression::Gzip, true) => OCI_LAYER_GZIP,
            (Compression::Zstd, true) => OCI_LAYER_ZSTD,
            (Compression::Estargz, true) => OCI_LAYER_GZIP,
            (Compression::ZstdChunked, true) => OCI_LAYER_ZSTD,
            (Compression::Uncompressed, false) => DOCKER_LAYER,
            (Compression::Gzip, false) => DOCKER_LAYER_GZIP,
            (Compression::Zstd | Compression::ZstdChunked | Compression::Estargz, false) => {
                return None
            }
        })
    }

    /// The compression a layer media type says its blob has; `None` for a media type
    /// that is not a layer. An eStargz blob's media type is gzip's: this says
    /// [`Compression::Gzip`] for it (which reads it); a zstd:chunked blob's is zstd's.
    pub fn from_layer_media_type(media_type: &str) -> Option<Compression> {
        use media_types::*;
        match media_type {
            OCI_LAYER | DOCKER_LAYER => Some(Compression::Uncompressed),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD => Some(Compression::Zstd),
            "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::Uncompressed)
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
