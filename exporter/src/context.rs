//! [`ExportContext`]: the stores, the differ and the concurrency limit every exporter
//! is built from.

use std::sync::Arc;

use strata_content::{ContentStore, ImageStore, LeaseManager};
use strata_differ::Comparer;

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
