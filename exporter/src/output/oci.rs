//! The `oci` exporter: an OCI image layout (`oci-layout`, `index.json`, `blobs/`),
//! streamed as a deterministic tar to `dest` or a caller's writer, or written as a
//! directory with `tar=false`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use strata_content::{media_types, BlockingReader, ContentStore, Descriptor, ReaderAt};

use crate::error::{Error, Result};
use crate::exporter::{response, ExportContext, Exporter, ExporterInstance};
use crate::json::to_canonical_vec;
use crate::options::{self, ImageOptions, OutputOptions};
use crate::output::blob_file::place_blob_file;
use crate::progress::Progress;
use crate::source::Source;
use crate::writer::{CommittedImage, ImageWriter};

/// Opens the writer a tar output is streamed to (called once per export).
pub type WriterFactory = Arc<dyn Fn() -> std::io::Result<Box<dyn Write + Send>> + Send + Sync>;

/// Annotation naming a layout entry (the tag part of the image name).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation carrying the full image name (containerd's).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Exports an OCI image layout.
///
/// With `tar=false` the layout is written as a directory at `dest`. Blobs already there
/// with the right size are kept. Blobs of a store that keeps them as local files
/// ([`ReaderAt::local_path`], e.g. `LocalStore`) are not copied when the filesystem
/// allows otherwise: a reflink (btrfs, xfs) where it can, else a **hard link to the
/// store's file**, else a kernel copy (another filesystem, no permission, too many
/// links). Blobs are immutable, so sharing them is safe as long as nobody edits a
/// layout blob in place: that would change the store's blob as well (`strata fsck`
/// reports it by digest). Tools that replace files instead (skopeo, umoci, `cp`) are
/// unaffected. Export to another filesystem to get independent copies.
pub struct OciExporter {
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    sink: Option<WriterFactory>,
}

impl OciExporter {
    /// An `oci` exporter over `ctx`; tars go to the `dest` option.
    pub fn new(ctx: ExportContext) -> OciExporter {
        OciExporter {
            writer: Arc::new(ImageWriter::new(ctx.clone())),
            ctx,
            sink: None,
        }
    }

    /// Streams tars to writers from `sink` (e.g. stdout) when no `dest` is given.
    pub fn with_writer(mut self, sink: WriterFactory) -> OciExporter {
        self.sink = Some(sink);
        self
    }
}

#[async_trait]
impl Exporter for OciExporter {
    async fn resolve(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        let (opts, output) = options::parse("oci", &options, true, true)?;
        check_destination(&output, self.sink.is_some())?;
        Ok(Box::new(LayoutInstance {
            kind: LayoutKind::Oci,
            ctx: self.ctx.clone(),
            writer: self.writer.clone(),
            sink: self.sink.clone(),
            opts,
            output,
        }))
    }
}

pub(crate) fn check_destination(output: &OutputOptions, has_sink: bool) -> Result<()> {
    if output.dest.is_none() && (!output.tar || !has_sink) {
        return Err(Error::InvalidOption {
            key: "dest".into(),
            value: String::new(),
            reason: if output.tar {
                "a destination path is required (no writer was given)".into()
            } else {
                "tar=false needs a destination directory".into()
            },
        });
    }
    Ok(())
}

/// Which archive a layout instance writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayoutKind {
    Oci,
    Docker,
}

pub(crate) struct LayoutInstance {
    pub kind: LayoutKind,
    pub ctx: ExportContext,
    pub writer: Arc<ImageWriter>,
    pub sink: Option<WriterFactory>,
    pub opts: ImageOptions,
    pub output: OutputOptions,
}

#[async_trait]
impl ExporterInstance for LayoutInstance {
    fn name(&self) -> &str {
        match self.kind {
            LayoutKind::Oci => "oci",
            LayoutKind::Docker => "docker",
        }
    }

    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>> {
        if self.kind == LayoutKind::Docker && source.platform_count() > 1 {
            return Err(Error::TooManyPlatforms {
                exporter: "docker".into(),
                count: source.platform_count(),
            });
        }
        let committed = self.writer.commit(&source, &self.opts, &progress).await?;
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
        let mut entries = layout_entries(committed, &self.opts.names)?;
        if self.kind == LayoutKind::Docker {
            entries.splice(
                0..0,
                crate::output::docker::archive_entries(committed, &self.opts.names)?,
            );
        }
        let task = progress.start(
            format!("sending:{}", committed.descriptor.digest),
            "sending tarball".to_string(),
        );
        let mtime = self.opts.source_date_epoch.unwrap_or(0).max(0) as u64;
        let res = match (&self.output.dest, self.output.tar) {
            (Some(dir), false) => write_dir(self.ctx.content.clone(), entries, dir).await,
            (Some(path), true) => {
                write_tar_file(self.ctx.content.clone(), entries, path, mtime).await
            }
            (None, _) => match &self.sink {
                Some(sink) => {
                    let w = sink().map_err(|e| Error::io("opening the output writer", e))?;
                    write_tar(self.ctx.content.clone(), entries, w, mtime).await
                }
                None => Err(Error::Interrupted("no destination".into())),
            },
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
    format!("blobs/{}/{}", desc.digest.algorithm(), desc.digest.hex())
}

/// The tag part of a name (`repo:tag` → `tag`), or the name itself.
fn ref_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) if !name.contains('@') => tag.to_string(),
        _ => name.to_string(),
    }
}

/// `oci-layout`, `index.json` (one entry per name, or one unnamed) and every blob.
pub(crate) fn layout_entries(committed: &CommittedImage, names: &[String]) -> Result<Vec<Entry>> {
    let mut manifests = Vec::new();
    if names.is_empty() {
        manifests.push(committed.descriptor.clone());
    }
    for name in names {
        let mut d = committed.descriptor.clone();
        d.annotations
            .insert(ANNOTATION_IMAGE_NAME.to_string(), name.clone());
        d.annotations
            .insert(ANNOTATION_REF_NAME.to_string(), ref_name(name));
        manifests.push(d);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let index = to_canonical_vec(&index).map_err(|source| Error::Encode {
        what: "the layout's index.json".into(),
        source,
    })?;
    let mut entries = vec![
        Entry::Bytes(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Entry::Bytes("index.json".into(), index),
    ];
    for blob in committed.blobs() {
        entries.push(Entry::Blob(blob_path(&blob), blob));
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
