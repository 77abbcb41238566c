//! [`WalkingDiffer`]: the [`Comparer`] and [`Applier`] of strata.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use strata_content::ContentStore;
use strata_oci::{Descriptor, Digest};
use strata_snapshotter::{Mount, MountLayout, TempMount};

use crate::apply::{apply_tar, ApplyFailure};
use crate::changes::{double_walk, overlay_changes, upperdir_is_plain, ChangeSet};
use crate::error::{Error, Result};
use crate::file_metadata::ContentCheck;
use crate::layer_reader::open_layer;
use crate::layer_writer::write_layer;
use crate::tar_entries::LayerTarWriter;
use crate::{Applier, ApplyOptions, CompareOptions, Comparer, DecompressionLimit, LayerBlob};

/// Computes layers by walking trees (containerd's walking differ), with a fast path
/// for overlay snapshots that reads only the upperdir, and applies layers onto trees.
///
/// `compare` mounts what needs mounting ([`TempMount`]), detects the changes and
/// writes the tar on a blocking thread straight into the content store's ingest, so the
/// blob is hashed, compressed and committed in one pass; on any error nothing is committed.
/// `apply` unpacks a layer, verifying the blob's digest, and returns its diffID; it
/// refuses entries that escape the root, device nodes it may not create and entries
/// past the limits ([`Error::RefusedEntry`]), and layers that decompress past their
/// [`DecompressionLimit`] ([`Error::TarTooLarge`]).
///
/// By default a regular file present in both trees with the same size, mtime (with
/// nanoseconds), mode, owner and xattrs is taken as unchanged, as containerd does (its
/// bytes are compared only when neither mtime has a sub-second part). A rewrite that
/// keeps size and mtime (`touch -r` after an edit, tools that restore mtimes) is then
/// missing from the layer; [`with_exact_content`](Self::with_exact_content) catches it.
#[derive(Clone)]
pub struct WalkingDiffer {
    store: Arc<dyn ContentStore>,
    check: ContentCheck,
    limit: DecompressionLimit,
}

impl WalkingDiffer {
    /// A differ writing layers to (and reading layers from) `store`, with containerd's
    /// change rule.
    pub fn new(store: Arc<dyn ContentStore>) -> Self {
        WalkingDiffer {
            store,
            check: ContentCheck::Metadata,
            limit: DecompressionLimit::DEFAULT,
        }
    }

    /// Bounds the tar `apply` reads from a compressed layer by `limit` instead of
    /// [`DecompressionLimit::DEFAULT`].
    pub fn with_decompression_limit(mut self, limit: DecompressionLimit) -> Self {
        self.limit = limit;
        self
    }

    /// With `exact`, the double walk compares the bytes of every regular file whose
    /// metadata match in both trees (streamed, stopping at the first differing block),
    /// unless both names are the same inode on the same device — hardlinked or
    /// bind-mounted trees cost nothing. It reads up to both trees' unchanged files once;
    /// use it for independent copies, where equal mtimes are weak evidence. The overlay
    /// fast path (an overlay snapshot on its parent) keeps containerd's rule.
    pub fn with_exact_content(mut self, exact: bool) -> Self {
        self.check = match exact {
            true => ContentCheck::Exact,
            false => ContentCheck::Metadata,
        };
        self
    }
}

#[async_trait]
impl Comparer for WalkingDiffer {
    async fn compare(
        &self,
        lower: &[Mount],
        upper: &[Mount],
        opts: &CompareOptions,
    ) -> Result<LayerBlob> {
        let lower = lower.to_vec();
        let upper = upper.to_vec();
        let epoch = opts.source_date_epoch;
        let check = self.check;
        let prioritized = match opts.compression {
            strata_oci::Compression::Estargz => opts.estargz_prioritized_files.clone(),
            _ => None,
        };
        write_layer(Arc::clone(&self.store), opts, move |sink| {
            write_diff(&lower, &upper, epoch, check, prioritized.as_deref(), sink)
        })
        .await
    }
}

#[async_trait]
impl Applier for WalkingDiffer {
    async fn apply_with(
        &self,
        desc: &Descriptor,
        mounts: &[Mount],
        options: &ApplyOptions,
    ) -> Result<Digest> {
        let reader = open_layer(Arc::clone(&self.store), desc, self.limit).await?;
        let mounts = mounts.to_vec();
        let layer = desc.digest.to_string();
        let options = *options;
        tokio::task::spawn_blocking(move || {
            let target = TempMount::mount(&mounts)?;
            let tar_limit = reader.tar_limit();
            let (reader, outcome) = apply_tar(reader, target.path(), &layer, tar_limit, &options);
            match outcome {
                Ok(()) => Ok(reader.finish()?.0),
                Err(ApplyFailure::Read(e)) => Err(reader.typed_error(e)),
                Err(ApplyFailure::Other(e)) => Err(e),
            }
        })
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::from(format!("<applying {}>", desc.digest)),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

/// Writes the layer from `lower` (empty: no parent) to `upper` into `sink`; `check`
/// applies to the double walk; `prioritized`: eStargz prefetch landmarks
/// ([`LayerTarWriter::write_all_prioritized`]).
fn write_diff(
    lower: &[Mount],
    upper: &[Mount],
    epoch: Option<i64>,
    check: ContentCheck,
    prioritized: Option<&[String]>,
    sink: &mut dyn Write,
) -> Result<()> {
    let write = |root: &Path, set: &ChangeSet, sink: &mut dyn Write| {
        let tar = LayerTarWriter::new(sink, epoch);
        match prioritized {
            Some(files) => tar.write_all_prioritized(root, set, files),
            None => tar.write_all(root, set),
        }
        .map(drop)
    };
    let lower_tree = if lower.is_empty() {
        None
    } else {
        Some(TempMount::mount(&read_only(lower))?)
    };
    if let Some(upperdir) = overlay_fast_path(lower_tree.as_ref(), upper)? {
        let lower_root = lower_tree
            .as_ref()
            .map(TempMount::path)
            .ok_or_else(|| Error::UnsupportedMount("overlay without a lower tree".into()))?;
        let set = overlay_changes(lower_root, &upperdir)?;
        tracing::debug!(changes = set.len(), "overlay fast path");
        return write(&upperdir, &set, sink);
    }
    // Read-only: comparing never writes, and an active snapshot may be mounted
    // read-write elsewhere at the same time.
    let upper_tree = TempMount::mount(&read_only(upper))?;
    let set = double_walk(
        lower_tree.as_ref().map(TempMount::path),
        upper_tree.path(),
        check,
    )?;
    tracing::debug!(changes = set.len(), "double walk");
    write(upper_tree.path(), &set, sink)
}

/// The upperdir to read alone, when `upper` is an overlay whose lowerdirs are exactly
/// the layers of `lower` and the upperdir uses no redirects or metacopy.
fn overlay_fast_path(lower: Option<&TempMount>, upper: &[Mount]) -> Result<Option<PathBuf>> {
    let Some(lower) = lower else {
        return Ok(None);
    };
    let MountLayout::Overlay {
        upper: Some(upperdir),
        lowers,
        ..
    } = MountLayout::from_mounts(upper)?
    else {
        return Ok(None);
    };
    let same_lowers = match lower.layout() {
        MountLayout::Directory { root, .. } => lowers.len() == 1 && same_dir(root, &lowers[0]),
        MountLayout::Overlay {
            upper: None,
            lowers: l2,
            ..
        } => l2.len() == lowers.len() && l2.iter().zip(&lowers).all(|(a, b)| same_dir(a, b)),
        MountLayout::Overlay { .. } => false,
    };
    if !same_lowers || !upperdir_is_plain(&upperdir)? {
        return Ok(None);
    }
    Ok(Some(upperdir))
}

/// `mounts` with the `ro` option.
fn read_only(mounts: &[Mount]) -> Vec<Mount> {
    mounts
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.options.retain(|o| o != "rw");
            if !m.is_read_only() {
                m.options.push("ro".to_string());
            }
            m
        })
        .collect()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
