//! The [`Exporter`] and [`ExporterInstance`] traits and BuildKit's response keys.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine as _;

use crate::error::Result;
use crate::progress::Progress;
use crate::source::Source;
use crate::writer::CommittedImage;
use strata_oci::to_canonical_vec;

/// Response key: the digest of the root (manifest or index).
pub const RESPONSE_IMAGE_DIGEST: &str = "containerimage.digest";
/// Response key: the config digest (single-platform exports).
pub const RESPONSE_CONFIG_DIGEST: &str = "containerimage.config.digest";
/// Response key: the root descriptor as base64 of its JSON.
pub const RESPONSE_DESCRIPTOR: &str = "containerimage.descriptor";
/// Response key: the image names, comma-separated.
pub const RESPONSE_IMAGE_NAME: &str = "image.name";

/// A kind of export target (`image`, `oci`, `docker`, `registry`) that turns options
/// into a configured instance.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// Checks `options` (BuildKit's names, parsed by [`OutputOptions::parse`]) and
    /// returns an instance ready to export. Unknown options are an error naming them.
    ///
    /// [`OutputOptions::parse`]: crate::OutputOptions::parse
    async fn resolve(&self, options: BTreeMap<String, String>)
        -> Result<Box<dyn ExporterInstance>>;
}

/// A configured exporter.
#[async_trait]
pub trait ExporterInstance: Send + Sync {
    /// The exporter's name (`image`, `oci`, `docker`, `registry`).
    fn name(&self) -> &str;

    /// Exports `source`, reporting to `progress`; returns BuildKit's response map
    /// ([`RESPONSE_IMAGE_DIGEST`], [`RESPONSE_CONFIG_DIGEST`], [`RESPONSE_DESCRIPTOR`],
    /// [`RESPONSE_IMAGE_NAME`]). Dropping the future cancels the export; its lease is
    /// released.
    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>>;
}

/// BuildKit's response map for a committed image.
pub(crate) fn response(committed: &CommittedImage, names: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        RESPONSE_IMAGE_DIGEST.to_string(),
        committed.descriptor.digest.to_string(),
    );
    if let Some(c) = &committed.config_digest {
        out.insert(RESPONSE_CONFIG_DIGEST.to_string(), c.to_string());
    }
    if let Ok(json) = to_canonical_vec(&committed.descriptor) {
        out.insert(
            RESPONSE_DESCRIPTOR.to_string(),
            base64::engine::general_purpose::STANDARD.encode(json),
        );
    }
    if !names.is_empty() {
        out.insert(RESPONSE_IMAGE_NAME.to_string(), names.join(","));
    }
    out
}
