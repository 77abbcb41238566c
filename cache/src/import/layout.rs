//! OCI image layouts as image sources: a directory (`oci:DIR[:TAG]`) or a tar of one
//! (`oci-archive:FILE[:TAG]`), their blobs served in place, and the choice of an image
//! among `index.json`'s entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use strata_content::{BlobProvider, Error as ContentError, Result as ContentResult};
use strata_oci::{annotations, layout, Descriptor, Digest, Index};
use tokio::io::AsyncRead;

use crate::import::archive::TarArchive;
use crate::import::error::ImportError;
use crate::import::image::ImageRoot;

/// The largest `index.json` (or `manifest.json`) read.
pub(crate) const MAX_INDEX_FILE: u64 = 4 << 20;

/// The blobs of an OCI image layout directory (`blobs/<alg>/<hex>`). A blob path that
/// leads outside the directory (through a symlink) is refused.
#[derive(Clone, Debug)]
pub struct OciLayoutProvider {
    root: PathBuf,
}

impl OciLayoutProvider {
    /// Serves the blobs of the layout at `dir`; the error names it when it cannot be
    /// resolved.
    pub fn open(dir: &Path) -> std::io::Result<OciLayoutProvider> {
        Ok(OciLayoutProvider {
            root: dir.canonicalize()?,
        })
    }

    /// The path of `digest`'s blob, inside the layout.
    fn blob_file(&self, digest: &Digest) -> ContentResult<PathBuf> {
        let path = self.root.join(layout::blob_path(digest));
        let resolved = match path.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(format!(
                    "blob {digest} in {}",
                    self.name()
                )))
            }
            Err(e) => return Err(ContentError::io(format!("resolving {}", path.display()), e)),
        };
        if !resolved.starts_with(&self.root) {
            return Err(ContentError::InvalidArgument(format!(
                "blob {digest} of {} leads outside it, to {}",
                self.name(),
                resolved.display()
            )));
        }
        Ok(resolved)
    }
}

#[async_trait]
impl BlobProvider for OciLayoutProvider {
    fn name(&self) -> String {
        format!("oci layout {}", self.root.display())
    }

    async fn open(&self, desc: &Descriptor) -> ContentResult<Box<dyn AsyncRead + Send + Unpin>> {
        let path = self.blob_file(&desc.digest)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ContentError::io(format!("opening {}", path.display()), e))?;
        Ok(Box::new(file))
    }
}

/// A blob an archive serves besides `blobs/<alg>/<hex>`.
#[derive(Clone, Debug)]
pub(crate) enum ArchiveBlob {
    /// An entry of the archive (a `docker save` config or layer).
    Entry(String),
    /// Bytes made while opening the archive (a synthesised manifest).
    Bytes(Arc<Vec<u8>>),
}

/// The blobs of an archive (`oci-archive` or `docker-archive`), read in place:
/// `blobs/<alg>/<hex>` entries, and `extra` blobs by digest.
#[derive(Clone, Debug)]
pub(crate) struct ArchiveProvider {
    pub archive: Arc<TarArchive>,
    pub kind: &'static str,
    pub extra: BTreeMap<Digest, ArchiveBlob>,
}

#[async_trait]
impl BlobProvider for ArchiveProvider {
    fn name(&self) -> String {
        format!("{} {}", self.kind, self.archive.file().display())
    }

    async fn open(&self, desc: &Descriptor) -> ContentResult<Box<dyn AsyncRead + Send + Unpin>> {
        let entry = match self.extra.get(&desc.digest) {
            Some(ArchiveBlob::Bytes(bytes)) => {
                return Ok(Box::new(std::io::Cursor::new(bytes.as_ref().clone())))
            }
            Some(ArchiveBlob::Entry(name)) => name.clone(),
            None => layout::blob_path(&desc.digest),
        };
        match self.archive.open(&entry).await {
            Ok(Some((_, reader))) => Ok(reader),
            Ok(None) => Err(ContentError::NotFound(format!(
                "blob {} in {}",
                desc.digest,
                self.name()
            ))),
            Err(e) => Err(ContentError::io(
                format!("reading {entry} of {}", self.name()),
                e,
            )),
        }
    }
}

/// Indexes the archive `file` on a blocking thread.
pub(crate) async fn index_archive(
    reference: &str,
    file: &Path,
) -> Result<Arc<TarArchive>, ImportError> {
    let path = file.to_path_buf();
    let indexed = tokio::task::spawn_blocking(move || TarArchive::index(&path))
        .await
        .map_err(|e| ImportError::Malformed {
            image: reference.to_string(),
            reason: format!("indexing {}: {e}", file.display()),
        })?;
    indexed
        .map(Arc::new)
        .map_err(|reason| ImportError::Malformed {
            image: reference.to_string(),
            reason,
        })
}

/// The image `tag` names in an `index.json` (its `org.opencontainers.image.ref.name`
/// or `io.containerd.image.name`); without a tag, its only entry.
pub(crate) fn select_index_entry(
    reference: &str,
    index_json: &[u8],
    tag: Option<&str>,
) -> Result<Descriptor, ImportError> {
    let index: Index =
        serde_json::from_slice(index_json).map_err(|e| ImportError::MalformedJson {
            image: reference.to_string(),
            role: "index",
            blob: layout::INDEX_FILE.to_string(),
            reason: e.to_string(),
        })?;
    let names = |d: &Descriptor| -> Vec<String> {
        [annotations::REF_NAME, annotations::CONTAINERD_IMAGE_NAME]
            .iter()
            .filter_map(|k| d.annotations.get(*k).cloned())
            .collect()
    };
    let available: Vec<String> = index
        .manifests
        .iter()
        .map(|d| {
            names(d)
                .into_iter()
                .next()
                .unwrap_or_else(|| d.digest.to_string())
        })
        .collect();
    match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|d| names(d).iter().any(|n| n == tag))
            .cloned()
            .ok_or_else(|| ImportError::TagNotFound {
                image: reference.to_string(),
                tag: tag.to_string(),
                available,
            }),
        None => match index.manifests.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ImportError::AmbiguousImage {
                image: reference.to_string(),
                available,
            }),
        },
    }
}

/// The name an `index.json` entry gives its image (containerd's full name), if any.
fn entry_name(entry: &Descriptor) -> Option<String> {
    entry
        .annotations
        .get(annotations::CONTAINERD_IMAGE_NAME)
        .cloned()
}

/// Opens the image `tag` of the layout directory `dir`.
pub(crate) async fn open_oci_layout(
    reference: &str,
    dir: &Path,
    tag: Option<&str>,
) -> Result<ImageRoot, ImportError> {
    let malformed = |reason: String| ImportError::Malformed {
        image: reference.to_string(),
        reason,
    };
    let provider = OciLayoutProvider::open(dir)
        .map_err(|e| malformed(format!("opening layout {}: {e}", dir.display())))?;
    let index_path = provider.root.join(layout::INDEX_FILE);
    let size = tokio::fs::metadata(&index_path)
        .await
        .map_err(|e| malformed(format!("{} is not an OCI layout: {e}", dir.display())))?
        .len();
    if size > MAX_INDEX_FILE {
        return Err(malformed(format!(
            "{} is {size} bytes, more than the limit of {MAX_INDEX_FILE}",
            index_path.display()
        )));
    }
    let index_json = tokio::fs::read(&index_path)
        .await
        .map_err(|e| malformed(format!("reading {}: {e}", index_path.display())))?;
    let root = select_index_entry(reference, &index_json, tag)?;
    Ok(ImageRoot {
        reference: reference.to_string(),
        name: entry_name(&root).unwrap_or_else(|| reference.to_string()),
        root,
        provider: Arc::new(provider),
    })
}

/// Opens the image `tag` of the OCI layout tar `file`.
pub(crate) async fn open_oci_archive(
    reference: &str,
    file: &Path,
    tag: Option<&str>,
) -> Result<ImageRoot, ImportError> {
    let archive = index_archive(reference, file).await?;
    open_archived_layout(reference, archive, "oci archive", tag).await
}

/// Opens the image `tag` of the OCI layout inside an indexed archive.
pub(crate) async fn open_archived_layout(
    reference: &str,
    archive: Arc<TarArchive>,
    kind: &'static str,
    tag: Option<&str>,
) -> Result<ImageRoot, ImportError> {
    let malformed = |reason: String| ImportError::Malformed {
        image: reference.to_string(),
        reason,
    };
    let index_json = archive
        .read(layout::INDEX_FILE, MAX_INDEX_FILE)
        .await
        .map_err(malformed)?
        .ok_or_else(|| {
            malformed(format!(
                "{} has no {} (not an OCI layout)",
                archive.file().display(),
                layout::INDEX_FILE
            ))
        })?;
    let root = select_index_entry(reference, &index_json, tag)?;
    Ok(ImageRoot {
        reference: reference.to_string(),
        name: entry_name(&root).unwrap_or_else(|| reference.to_string()),
        root,
        provider: Arc::new(ArchiveProvider {
            archive,
            kind,
            extra: BTreeMap::new(),
        }),
    })
}
