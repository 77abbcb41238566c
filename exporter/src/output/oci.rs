//! The `oci` exporter: an OCI image layout (`oci-layout`, `index.json`, `blobs/`),
//! streamed as a deterministic tar to `dest` or a caller's writer, or written as a
//! directory with `tar=false`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::context::ExportContext;
use crate::error::Result;
use crate::exporter::{Exporter, ExporterInstance};
use crate::options::OutputKind;
use crate::output::layout::{LayoutExporter, LayoutFormat, WriterFactory};

/// The OCI layout alone, any number of platforms.
pub(crate) static OCI_LAYOUT: LayoutFormat = LayoutFormat {
    kind: OutputKind::Oci,
    max_platforms: None,
    extra_entries: |_| Ok(Vec::new()),
};

/// Exports an OCI image layout.
///
/// With `tar=false` the layout is written as a directory at `dest`. Blobs already there
/// with the right size are kept. Blobs of a store that keeps them as local files
/// ([`ReaderAt::local_path`](strata_content::ReaderAt::local_path), e.g. `LocalStore`) are not copied when the filesystem
/// allows otherwise: a reflink (btrfs, xfs) where it can, else a **hard link to the
/// store's file**, else a kernel copy (another filesystem, no permission, too many
/// links). Blobs are immutable, so sharing them is safe as long as nobody edits a
/// layout blob in place: that would change the store's blob as well (`strata fsck`
/// reports it by digest). Tools that replace files instead (skopeo, umoci, `cp`) are
/// unaffected. Export to another filesystem to get independent copies.
///
/// [`ReaderAt::local_path`]: strata_content::ReaderAt::local_path
pub struct OciExporter(LayoutExporter);

impl OciExporter {
    /// An `oci` exporter over `ctx`; tars go to the `dest` option.
    pub fn new(ctx: ExportContext) -> OciExporter {
        OciExporter(LayoutExporter::new(&OCI_LAYOUT, ctx))
    }

    /// Streams tars to writers from `sink` (e.g. stdout) when no `dest` is given.
    pub fn with_writer(self, sink: WriterFactory) -> OciExporter {
        OciExporter(self.0.with_writer(sink))
    }
}

#[async_trait]
impl Exporter for OciExporter {
    async fn resolve(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        self.0.resolve(&options)
    }
}
