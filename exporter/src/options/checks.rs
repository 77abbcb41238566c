//! Checks of option combinations the parser runs once every option is read.

use strata_oci::Compression;

use super::{Destination, ImageOptions, OutputKind, OPTION_OCI_ARTIFACT};
use crate::error::{Error, Result};

/// The level must be one the compression has; zstd needs OCI media types.
pub(super) fn check_compression(image: &ImageOptions) -> Result<()> {
    if let Some(level) = image.compression_level {
        let range = match image.compression {
            Compression::Uncompressed => None,
            Compression::Gzip | Compression::Estargz => Some(0..=9),
            Compression::Zstd | Compression::ZstdChunked => Some(1..=22),
        };
        if let Some(r) = range {
            if !r.contains(&level) {
                return Err(Error::InvalidOption {
                    key: "compression-level".into(),
                    value: level.to_string(),
                    reason: format!(
                        "{} levels are {}..={}",
                        image.compression,
                        r.start(),
                        r.end()
                    ),
                });
            }
        }
    }
    if image.oci_artifact && !image.oci_media_types {
        return Err(Error::InvalidOption {
            key: OPTION_OCI_ARTIFACT.into(),
            value: "true".into(),
            reason: "conflicts with oci-mediatypes=false (an OCI artifact needs OCI media types)"
                .into(),
        });
    }
    if !image.oci_media_types && image.compression.layer_media_type(false).is_none() {
        return Err(Error::UnsupportedCompression {
            compression: image.compression,
            media_types: "Docker",
        });
    }
    Ok(())
}

/// The docker archive is a tar; a directory needs a path. (Whether a tar without
/// `dest` has somewhere to go depends on the exporter's writer, checked there.)
pub(super) fn check_destination(kind: OutputKind, destination: &Destination) -> Result<()> {
    if kind == OutputKind::Docker && !destination.tar {
        return Err(Error::InvalidOption {
            key: "tar".into(),
            value: "false".into(),
            reason: "the docker exporter only writes tars".into(),
        });
    }
    if !destination.tar && destination.dest.is_none() {
        return Err(Error::InvalidOption {
            key: "dest".into(),
            value: String::new(),
            reason: "tar=false needs a destination directory".into(),
        });
    }
    Ok(())
}
