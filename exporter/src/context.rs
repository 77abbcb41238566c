//! [`ExportContext`]: the stores, the differ and the concurrency limit every exporter
//! is built from; [`UnpackTarget`]: where `unpack=true` extracts an image.

use std::fmt;
use std::sync::Arc;

use strata_cache::Materializer;
use strata_content::{ContentStore, ImageStore, LeaseManager};
use strata_differ::Comparer;

/// Where the `image` exporter's `unpack=true` extracts the image: a [`Materializer`]
/// (content store, applier, snapshotter) and the name containerd knows that
/// snapshotter by, which goes into the config's
/// `containerd.io/gc.ref.snapshot.<name>` label.
///
/// The materializer's content store must be the one the export writes to (the
/// layers are read from it). A snapshotter whose snapshots a garbage collector can
/// remove (containerd's) should answer
/// [`Snapshotter::with_lease`](strata_snapshotter::Snapshotter::with_lease): the
/// extraction then runs under the export's lease until the image record and the
/// config label keep the snapshots.
#[derive(Clone)]
pub struct UnpackTarget {
    /// Extracts the layers, once per chainID.
    pub materializer: Materializer,
    /// The snapshotter's name as containerd knows it (`overlayfs`, `native`, …).
    pub snapshotter_name: String,
}

impl fmt::Debug for UnpackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnpackTarget")
            .field("snapshotter_name", &self.snapshotter_name)
            .finish_non_exhaustive()
    }
}

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
    /// Where `unpack=true` extracts images; `None` refuses the option.
    pub unpack: Option<UnpackTarget>,
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
            unpack: None,
        }
    }

    /// The same context with another concurrency limit.
    pub fn with_jobs(mut self, jobs: usize) -> ExportContext {
        self.jobs = jobs.max(1);
        self
    }

    /// The same context with somewhere for `unpack=true` to extract images.
    pub fn with_unpack_target(mut self, target: UnpackTarget) -> ExportContext {
        self.unpack = Some(target);
        self
    }
}
