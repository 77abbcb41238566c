//! What the `oci` and `docker` outputs share: the OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`), an exporter and instance parameterized by the
//! [`LayoutFormat`], and the writers of the archive as a deterministic tar (to a file
//! or a caller's writer) or as a directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use strata_content::{BlockingReader, ContentStore, ReaderAt};
use strata_oci::{layout, to_canonical_vec, Descriptor};

use crate::context::ExportContext;
use crate::error::{Error, Result};
use crate::exporter::{response, ExporterInstance};
use crate::options::{Destination, ImageOptions, OutputKind, OutputOptions};
use crate::output::blob_file::place_blob_file;
use crate::progress::Progress;
use crate::source::Source;
use crate::writer::{CommittedImage, ImageWriter, PlatformImage};

/// Opens the writer a tar output is streamed to (called once per export).
pub type WriterFactory = Arc<dyn Fn() -> std::io::Result<Box<dyn Write + Send>> + Send + Sync>;

/// What one layout output writes besides the OCI layout.
pub(crate) struct LayoutFormat {
    /// The output (`oci` or `docker`): its name and options.
    pub kind: OutputKind,
    /// The most platforms the archive holds (`None`: any number).
    pub max_platforms: Option<usize>,
    /// Files written before the layout's own (docker's `manifest.json`, …).
    pub extra_entries: fn(&ArchiveContent) -> Result<Vec<Entry>>,
}

/// One image of an archive: its root, the names `index.json` (and docker's
/// `manifest.json`) give it, and its runnable platform images.
pub(crate) struct ArchiveImage {
    /// The root (manifest or index), as `index.json` lists it.
    pub root: Descriptor,
    /// Its names (none: one unnamed `index.json` entry).
    pub names: Vec<String>,
    /// Its platforms' manifests, configs and layers (attestation manifests left out).
    pub platforms: Vec<PlatformImage>,
}

/// What an archive holds: its images and every blob they consist of.
pub(crate) struct ArchiveContent {
    /// The images, in the order `index.json` lists them.
    pub images: Vec<ArchiveImage>,
    /// Every blob (roots, manifests, configs, layers), each once.
    pub blobs: Vec<Descriptor>,
}

impl ArchiveContent {
    /// The archive of an export: `committed` under `names`.
    fn committed(committed: &CommittedImage, names: &[String]) -> ArchiveContent {
        ArchiveContent {
            images: vec![ArchiveImage {
                root: committed.descriptor.clone(),
                names: names.to_vec(),
                platforms: committed.images.clone(),
            }],
            blobs: committed.blobs(),
        }
    }
}

/// Where an archive goes: a directory, a tar file, or a caller's writer.
pub(crate) enum ArchiveTarget<'a> {
    /// An OCI layout directory.
    Dir(&'a Path),
    /// A tar file, replaced atomically.
    TarFile(&'a Path),
    /// A tar streamed to a writer.
    Writer(Box<dyn Write + Send>),
}

/// Writes `content` in `format` to `target`, streaming blobs from `store`; tar
/// entries get `mtime`.
pub(crate) async fn write_archive(
    format: &LayoutFormat,
    store: Arc<dyn ContentStore>,
    content: &ArchiveContent,
    target: ArchiveTarget<'_>,
    mtime: u64,
) -> Result<()> {
    let mut entries = layout_entries(content)?;
    entries.splice(0..0, (format.extra_entries)(content)?);
    match target {
        ArchiveTarget::Dir(dir) => write_dir(store, entries, dir).await,
        ArchiveTarget::TarFile(path) => write_tar_file(store, entries, path, mtime).await,
        ArchiveTarget::Writer(w) => write_tar(store, entries, w, mtime).await,
    }
}

/// An exporter writing a layout in `format`, to `dest` or to writers from `sink`.
pub(crate) struct LayoutExporter {
    format: &'static LayoutFormat,
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    sink: Option<WriterFactory>,
}

impl LayoutExporter {
    /// An exporter over `ctx` writing to the `dest` option.
    pub(crate) fn new(format: &'static LayoutFormat, ctx: ExportContext) -> LayoutExporter {
        LayoutExporter {
            format,
            writer: Arc::new(ImageWriter::new(ctx.clone())),
            ctx,
            sink: None,
        }
    }

    /// Streams tars to writers from `sink` when no `dest` is given.
    pub(crate) fn with_writer(mut self, sink: WriterFactory) -> LayoutExporter {
        self.sink = Some(sink);
        self
    }

    /// Parses `options` for the format's kind; a tar needs `dest` or a writer.
    pub(crate) fn resolve(
        &self,
        options: &BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        let parsed = OutputOptions::parse(self.format.kind, options)?;
        let output = parsed.destination.unwrap_or_default();
        if output.dest.is_none() && self.sink.is_none() {
            return Err(Error::InvalidOption {
                key: "dest".into(),
                value: String::new(),
                reason: "a destination path is required (no writer was given)".into(),
            });
        }
        Ok(Box::new(LayoutInstance {
            format: self.format,
            ctx: self.ctx.clone(),
            writer: self.writer.clone(),
            sink: self.sink.clone(),
            opts: parsed.image,
            output,
        }))
    }
}

struct LayoutInstance {
    format: &'static LayoutFormat,
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    sink: Option<WriterFactory>,
    opts: ImageOptions,
    output: Destination,
}

#[async_trait]
impl ExporterInstance for LayoutInstance {
    fn name(&self) -> &str {
        self.format.kind.name()
    }

    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>> {
        if let Some(max) = self.format.max_platforms {
            if source.platform_count() > max {
                return Err(Error::TooManyPlatforms {
                    exporter: self.format.kind.name().into(),
                    count: source.platform_count(),
                });
            }
        }
        let committed = self
            .writer
            .commit_local(&source, &self.opts, &progress)
            .await?;
        let written = self.write(&committed, &progress).await;
        // The caller has the result (or the error); nothing in the store needs to be
        // kept for it.
        committed.lease.release_after(written).await
    }
}

impl LayoutInstance {
    /// Writes the layout (or archive) of `committed` to the destination; the response.
    async fn write(
        &self,
        committed: &CommittedImage,
        progress: &Progress,
    ) -> Result<BTreeMap<String, String>> {
        let content = ArchiveContent::committed(committed, &self.opts.names);
        let task = progress.start(
            format!("sending:{}", committed.descriptor.digest),
            "sending tarball".to_string(),
        );
        let mtime = self.opts.source_date_epoch.unwrap_or(0).max(0) as u64;
        let target = match (&self.output.dest, self.output.tar, &self.sink) {
            (Some(dir), false, _) => Ok(ArchiveTarget::Dir(dir)),
            (Some(path), true, _) => Ok(ArchiveTarget::TarFile(path)),
            (None, _, Some(sink)) => sink()
                .map(ArchiveTarget::Writer)
                .map_err(|e| Error::io("opening the output writer", e)),
            (None, _, None) => Err(Error::Interrupted("no destination".into())),
        };
        let res = match target {
            Ok(target) => {
                write_archive(
                    self.format,
                    self.ctx.content.clone(),
                    &content,
                    target,
                    mtime,
                )
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            task.fail(&e);
            return Err(e);
        }
        task.complete();
        Ok(response(committed, &self.opts.names))
    }
}

/// One file of an archive.
pub(crate) enum Entry {
    /// A small file built in memory.
    Bytes(String, Vec<u8>),
    /// A blob streamed from the store.
    Blob(String, Descriptor),
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Bytes(p, _) | Entry::Blob(p, _) => p,
        }
    }
}

/// The path of a blob inside a layout.
pub(crate) fn blob_path(desc: &Descriptor) -> String {
    layout::blob_path(&desc.digest)
}

/// `oci-layout`, `index.json` (per image, one entry per name, or one unnamed) and
/// every blob.
pub(crate) fn layout_entries(content: &ArchiveContent) -> Result<Vec<Entry>> {
    let mut manifests = Vec::new();
    for image in &content.images {
        if image.names.is_empty() {
            manifests.push(image.root.clone());
        }
        for name in &image.names {
            manifests.push(layout::index_entry(&image.root, name, layout::RefName::Tag));
        }
    }
    let index = to_canonical_vec(&layout::index(&manifests)).map_err(|source| Error::Encode {
        what: "the layout's index.json".into(),
        source,
    })?;
    let mut entries = vec![
        Entry::Bytes(
            layout::LAYOUT_FILE.into(),
            layout::LAYOUT_FILE_CONTENT.to_vec(),
        ),
        Entry::Bytes(layout::INDEX_FILE.into(), index),
    ];
    for blob in &content.blobs {
        entries.push(Entry::Blob(blob_path(blob), blob.clone()));
    }
    Ok(entries)
}

/// Writes `entries` as a deterministic tar (sorted as given, fixed owners, modes and
/// `mtime`) to `sink`, streaming blobs from `store`.
pub(crate) async fn write_tar(
    store: Arc<dyn ContentStore>,
    entries: Vec<Entry>,
    sink: Box<dyn Write + Send>,
    mtime: u64,
) -> Result<()> {
    // Open readers up front (async), then stream on a blocking thread.
    let mut opened = Vec::new();
    for e in entries {
        let reader = match &e {
            Entry::Blob(_, d) => Some(store.reader(d).await?),
            Entry::Bytes(..) => None,
        };
        opened.push((e, reader));
    }
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut tar = tar::Builder::new(sink);
        let mut dirs = std::collections::BTreeSet::new();
        for (entry, reader) in opened {
            let path = entry.path().to_string();
            // Parent directories first, once each.
            let mut parent = String::new();
            for comp in path.split('/').take(path.split('/').count() - 1) {
                parent.push_str(comp);
                parent.push('/');
                if dirs.insert(parent.clone()) {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
                    tar.append_data(&mut h, &parent, std::io::empty())
                        .map_err(|e| Error::io(format!("writing {parent} to the tar"), e))?;
                }
            }
            let res = match (entry, reader) {
                (Entry::Bytes(_, bytes), _) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
                    tar.append_data(&mut h, &path, bytes.as_slice())
                }
                (Entry::Blob(_, desc), Some(reader)) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, desc.size, mtime);
                    let body = BlockingReader::new(reader, handle.clone()).take(desc.size);
                    tar.append_data(&mut h, &path, body)
                }
                (Entry::Blob(..), None) => unreachable!("readers are opened for every blob"),
            };
            res.map_err(|e| Error::io(format!("writing {path} to the tar"), e))?;
        }
        let mut sink = tar
            .into_inner()
            .map_err(|e| Error::io("finishing the tar", e))?;
        sink.flush().map_err(|e| Error::io("flushing the tar", e))?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Interrupted(format!("tar writer: {e}")))?
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// Writes the tar to `path` through a temporary file renamed into place, so a failed
/// or cancelled export leaves no partial archive.
pub(crate) async fn write_tar_file(
    store: Arc<dyn ContentStore>,
    entries: Vec<Entry>,
    path: &Path,
    mtime: u64,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".strata-export-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    let file = tmp
        .reopen()
        .map_err(|e| Error::io(format!("opening {}", tmp.path().display()), e))?;
    let sink: Box<dyn Write + Send> = Box::new(std::io::BufWriter::new(file));
    write_tar(store, entries, sink, mtime).await?;
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", tmp.path().display()), e))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Interrupted(format!("tar writer: {e}")))?
}

/// Writes the layout as a directory; `index.json` last, so a reader never sees an
/// index pointing at missing blobs. A blob already present with the right size is kept
/// (content-addressed: same name, same bytes). A blob the store keeps as a local file is
/// reflinked, hard-linked or kernel-copied (see [`blob_file`](super::blob_file): a hard
/// link shares the store's file, so a dest blob must not be edited in place); other
/// stores' blobs are streamed through their reader.
pub(crate) async fn write_dir(
    store: Arc<dyn ContentStore>,
    entries: Vec<Entry>,
    dir: &Path,
) -> Result<()> {
    let mut deferred = Vec::new();
    for entry in entries {
        let path = dir.join(entry.path());
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        match entry {
            Entry::Bytes(name, bytes) => deferred.push((name, bytes)),
            Entry::Blob(_, desc) => {
                if let Ok(meta) = tokio::fs::metadata(&path).await {
                    if meta.len() == desc.size {
                        continue; // content-addressed: same name, same bytes
                    }
                }
                let reader = store.reader(&desc).await?;
                let tmp = path.with_extension("partial");
                match reader.local_path() {
                    // A file whose length is not the recorded size is streamed (and
                    // checked) like any other store's blob, never shared.
                    Some(src) if reader.size() == desc.size => {
                        let src = src.to_path_buf();
                        let dest = path.clone();
                        let placement =
                            tokio::task::spawn_blocking(move || place_blob_file(&src, &tmp, &dest))
                                .await
                                .map_err(|e| {
                                    Error::Interrupted(format!("placing {}: {e}", path.display()))
                                })??;
                        tracing::debug!(digest = %desc.digest, ?placement, "layout blob placed");
                    }
                    _ => copy_from_reader(reader.as_ref(), &desc, &tmp, &path).await?,
                }
            }
        }
    }
    // index.json (and the docker files) after every blob.
    deferred.sort_by_key(|(name, _)| name == "index.json");
    for (name, bytes) in deferred {
        let path = dir.join(&name);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// Streams `desc` from `reader` into `tmp`, syncs it and renames it to `path`.
async fn copy_from_reader(
    reader: &dyn ReaderAt,
    desc: &Descriptor,
    tmp: &Path,
    path: &Path,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < desc.size {
        let n = reader.read_at(&mut buf, offset).await?;
        if n == 0 {
            return Err(Error::InvalidContent {
                digest: desc.digest.to_string(),
                reason: format!("ended at {offset} of {} bytes", desc.size),
            });
        }
        let n = n.min((desc.size - offset) as usize);
        file.write_all(&buf[..n])
            .await
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        offset += n as u64;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
    tokio::fs::rename(tmp, path)
        .await
        .map_err(|e| Error::io(format!("renaming to {}", path.display()), e))
}
