//! Images the store already records (by an `image` export, a pull or a tag), used
//! after the fact: pushed to a registry with the [`Pusher`] ([`push_image`]) or
//! written as an OCI layout or docker archive by the `oci` and `docker` outputs' own
//! code ([`save_images`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use strata_content::{read_blob, ContentStore, Image, ImageStore};
use strata_oci::{
    annotations, walk_image, Descriptor, Digest, ImageGraph, ImageNode, WalkError,
    MAX_MANIFEST_SIZE,
};

use crate::error::{Error, Result};
use crate::options::{Destination, OutputKind, OutputOptions};
use crate::output::docker::DOCKER_ARCHIVE;
use crate::output::layout::{write_archive, ArchiveContent, ArchiveImage, ArchiveTarget};
use crate::output::oci::OCI_LAYOUT;
use crate::progress::Progress;
use crate::push::{PushReport, Pusher};
use crate::writer::PlatformImage;

/// An image record and the graph of the content it points at, read from a store.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// The record.
    pub record: Image,
    /// Its manifests and indexes (children first, the root last) and its configs and
    /// layers.
    pub graph: ImageGraph,
}

impl StoredImage {
    /// Reads the record `name` from `images` and walks its graph in `content`, every
    /// manifest and index verified against its digest. An unknown name is
    /// [`Error::NoImage`]; a missing or corrupt manifest names its digest.
    pub async fn read(
        content: &dyn ContentStore,
        images: &dyn ImageStore,
        name: &str,
    ) -> Result<StoredImage> {
        let record = get_record(images, name).await?;
        let graph = walk_image(&record.target, |desc| async move {
            read_blob(content, &desc, MAX_MANIFEST_SIZE).await
        })
        .await
        .map_err(|e| match e {
            WalkError::Fetch(e) => Error::Content(e),
            WalkError::Invalid(e) => Error::InvalidContent {
                digest: e.digest.to_string(),
                reason: format!("in image {name}: {}", e.reason),
            },
        })?;
        Ok(StoredImage { record, graph })
    }

    /// Every blob of the image (indexes, manifests, configs, layers), each once, sorted
    /// by digest, as plain descriptors (media type, digest, size).
    pub fn blobs(&self) -> Vec<Descriptor> {
        let plain =
            |d: &Descriptor| Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
        let mut out: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for node in &self.graph.nodes {
            out.insert(node.descriptor.digest.clone(), plain(&node.descriptor));
        }
        for (desc, _) in self.graph.blobs.values() {
            out.insert(desc.digest.clone(), plain(desc));
        }
        out.into_values().collect()
    }

    /// The image's runnable platform images, in index order: every manifest but
    /// attestation manifests (`vnd.docker.reference.type=attestation-manifest`).
    pub fn platform_images(&self) -> Vec<PlatformImage> {
        self.graph
            .nodes
            .iter()
            .filter_map(|node| match &node.node {
                ImageNode::Manifest(m) => Some((node, m)),
                ImageNode::Index(_) => None,
            })
            .filter(|(node, _)| {
                node.descriptor
                    .annotations
                    .get(annotations::DOCKER_REFERENCE_TYPE)
                    .map(String::as_str)
                    != Some(annotations::ATTESTATION_MANIFEST)
            })
            .map(|(node, m)| PlatformImage {
                platform: node.descriptor.platform.clone(),
                manifest: node.descriptor.clone(),
                config: m.config.clone(),
                layers: m.layers.clone(),
            })
            .collect()
    }
}

/// The record `name`, or [`Error::NoImage`] naming it.
async fn get_record(images: &dyn ImageStore, name: &str) -> Result<Image> {
    images.get_image(name).await.map_err(|e| match e {
        e if e.is_not_found() => Error::NoImage {
            name: name.to_string(),
        },
        other => Error::Content(other),
    })
}

/// Pushes the image recorded as `name` to `reference` (default: `name` itself;
/// `[docker://][HOST[:PORT]/]REPO[:TAG]`) with `pusher`: the whole graph under its
/// root — for an index every platform's manifest and any attestation manifests — each
/// blob checked with `HEAD` first (so a second push uploads nothing), mounted from
/// another repository of the registry when the store's distribution-source label names
/// one, else uploaded from the store. An unknown `name` is [`Error::NoImage`]; a
/// failed push is [`Error::Push`]. Progress: a `push:REF` step around the pusher's
/// steps, as the `registry` output shows it.
pub async fn push_image(
    pusher: &Pusher,
    images: &dyn ImageStore,
    name: &str,
    reference: Option<&str>,
    progress: &Progress,
) -> Result<PushReport> {
    let record = get_record(images, name).await?;
    let to = reference.unwrap_or(name);
    let task = progress.start(format!("push:{to}"), format!("pushing {to}"));
    match pusher.push(to, &record.target, false, progress).await {
        Ok(report) => {
            task.complete();
            Ok(report)
        }
        Err(e) => {
            task.fail(&e);
            Err(e.into())
        }
    }
}

/// Where [`save_images`] writes, in which format: `type=oci|docker` with `dest=PATH`
/// and, for `oci`, `tar=true|false` (the outputs' own option names and checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveOptions {
    /// [`OutputKind::Oci`] (an OCI layout) or [`OutputKind::Docker`] (a
    /// docker-archive tar).
    pub kind: OutputKind,
    /// The tar file, or (`tar=false`, `oci` only) the layout directory.
    pub dest: PathBuf,
    /// Whether `dest` is a tar (default) or a directory.
    pub tar: bool,
}

impl SaveOptions {
    /// Parses `dest` and `tar` for `kind` as the `oci` and `docker` outputs do; any
    /// other option (or kind) is an error naming it, and `dest` is required.
    pub fn parse(kind: OutputKind, options: &BTreeMap<String, String>) -> Result<SaveOptions> {
        if !kind.writes_files() {
            return Err(Error::InvalidOption {
                key: "type".into(),
                value: kind.name().into(),
                reason: "images are saved as type=oci or type=docker".into(),
            });
        }
        if let Some((key, value)) = options.iter().find(|(k, _)| *k != "dest" && *k != "tar") {
            return Err(Error::InvalidOption {
                key: key.clone(),
                value: value.clone(),
                reason: "images are saved as they are stored: only dest and tar apply".into(),
            });
        }
        let parsed = OutputOptions::parse(kind, options)?;
        match parsed.destination {
            Some(Destination {
                dest: Some(dest),
                tar,
            }) => Ok(SaveOptions { kind, dest, tar }),
            _ => Err(Error::InvalidOption {
                key: "dest".into(),
                value: String::new(),
                reason: "a destination path is required".into(),
            }),
        }
    }
}

/// Writes the images recorded as `names` to `options.dest`, with the code the `oci`
/// and `docker` outputs write an export with:
///
/// - `oci`: one OCI image layout (a tar, or a directory with `tar=false`) holding every
///   image; each name is an `index.json` entry with its
///   `org.opencontainers.image.ref.name` (the tag, as BuildKit and `ctr images export`
///   write it) and `io.containerd.image.name` (the full name) annotations; an index
///   keeps every platform and attestation manifest.
/// - `docker`: a docker-archive whose `manifest.json` has one entry per image, with
///   every name of it in `RepoTags` (names of the same root share an entry). Each
///   image must have one platform (attestation manifests aside): otherwise
///   [`Error::InvalidContent`] naming the image.
///
/// Every name is read (and every blob checked present) before anything is written;
/// an unknown name is [`Error::NoImage`] and writes nothing. A tar `dest` is written
/// to a temporary file renamed over it, so an existing file is replaced whole and a
/// failure leaves it as it was. A directory `dest` is written into: blobs already
/// there are kept, `index.json` is replaced last by one listing exactly the saved
/// names. Returns the images saved, in the order of `names` (each once).
pub async fn save_images(
    content: Arc<dyn ContentStore>,
    images: &dyn ImageStore,
    names: &[String],
    options: &SaveOptions,
    progress: &Progress,
) -> Result<Vec<StoredImage>> {
    let mut stored: Vec<StoredImage> = Vec::new();
    for name in names {
        if !stored.iter().any(|s| &s.record.name == name) {
            stored.push(StoredImage::read(content.as_ref(), images, name).await?);
        }
    }
    let archive = archive_content(&stored, options.kind)?;
    for blob in &archive.blobs {
        content.info(&blob.digest).await?;
    }
    let task = progress.start(
        format!("saving:{}", options.dest.display()),
        format!("saving {} to {}", names.join(", "), options.dest.display()),
    );
    let (format, target) = match (options.kind, options.tar) {
        (OutputKind::Docker, _) => (&DOCKER_ARCHIVE, ArchiveTarget::TarFile(&options.dest)),
        (_, true) => (&OCI_LAYOUT, ArchiveTarget::TarFile(&options.dest)),
        (_, false) => (&OCI_LAYOUT, ArchiveTarget::Dir(&options.dest)),
    };
    match write_archive(format, content, &archive, target, 0).await {
        Ok(()) => {
            task.complete();
            Ok(stored)
        }
        Err(e) => {
            task.fail(&e);
            Err(e)
        }
    }
}

/// The archive of `stored`: for `oci` one image per record (each record's own root
/// descriptor); for `docker` one per root digest, holding every name of it.
fn archive_content(stored: &[StoredImage], kind: OutputKind) -> Result<ArchiveContent> {
    let mut images: Vec<ArchiveImage> = Vec::new();
    let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for image in stored {
        for blob in image.blobs() {
            blobs.insert(blob.digest.clone(), blob);
        }
        let root = &image.record.target;
        let name = image.record.name.clone();
        if kind == OutputKind::Docker {
            if let Some(same) = images.iter_mut().find(|i| i.root.digest == root.digest) {
                same.names.push(name);
                continue;
            }
            let platforms = image.platform_images();
            if platforms.len() != 1 {
                return Err(Error::InvalidContent {
                    digest: root.digest.to_string(),
                    reason: format!(
                        "image {name} has {} platform images; a docker archive holds one \
                         per image (save it with type=oci)",
                        platforms.len()
                    ),
                });
            }
        }
        images.push(ArchiveImage {
            root: root.clone(),
            names: vec![name],
            platforms: image.platform_images(),
        });
    }
    Ok(ArchiveContent {
        images,
        blobs: blobs.into_values().collect(),
    })
}
