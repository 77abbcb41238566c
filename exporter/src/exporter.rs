//! The [`Exporter`] and [`ExporterInstance`] traits, the [`ExportContext`] every
//! exporter is built from, and BuildKit's response keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use strata_content::{ContentStore, ImageStore, LeaseManager};
use strata_differ::Comparer;

use crate::error::Result;
use crate::json::to_canonical_vec;
use crate::progress::Progress;
use crate::source::Source;
use crate::writer::CommittedImage;

/// Response key: the digest of the root (manifest or index).
pub const RESPONSE_IMAGE_DIGEST: &str = "containerimage.digest";
/// Response key: the config digest (single-platform exports).
pub const RESPONSE_CONFIG_DIGEST: &str = "containerimage.config.digest";
/// Response key: the root descriptor as base64 of its JSON.
pub const RESPONSE_DESCRIPTOR: &str = "containerimage.descriptor";
/// Response key: the image names, comma-separated.
pub const RESPONSE_IMAGE_NAME: &str = "image.name";

/// What exporters work with: the stores, the differ and the concurrency limit.
#[derive(Clone)]
pub struct ExportContext {
    /// Where blobs are written.
    pub content: Arc<dyn ContentStore>,
    /// Leases holding an export's blobs until they are anchored.
    pub leases: Arc<dyn LeaseManager>,
    /// Where the `image` exporter records images.
    pub images: Arc<dyn ImageStore>,
    /// Computes layer diffs.
    pub differ: Arc<dyn Comparer>,
    /// How many layers are computed at the same time (at least 1).
    pub jobs: usize,
}

impl ExportContext {
    /// A context with `jobs` set to the machine's available parallelism.
    pub fn new(
        content: Arc<dyn ContentStore>,
        leases: Arc<dyn LeaseManager>,
        images: Arc<dyn ImageStore>,
        differ: Arc<dyn Comparer>,
    ) -> ExportContext {
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ExportContext {
            content,
            leases,
            images,
            differ,
            jobs,
        }
    }

    /// The same context with another concurrency limit.
    pub fn with_jobs(mut self, jobs: usize) -> ExportContext {
        self.jobs = jobs.max(1);
        self
    }
}

/// A kind of export target (`image`, `oci`, `docker`) that turns options into a
/// configured instance.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// Checks `options` (BuildKit's names) and returns an instance ready to export.
    /// Unknown options are an error naming them.
    async fn resolve(&self, options: BTreeMap<String, String>)
        -> Result<Box<dyn ExporterInstance>>;
}

/// A configured exporter.
#[async_trait]
pub trait ExporterInstance: Send + Sync {
    /// The exporter's name (`image`, `oci`, `docker`).
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
