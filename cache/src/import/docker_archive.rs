//! `docker-archive:FILE[:NAME:TAG]`: what `docker save` (and `skopeo copy …
//! docker-archive:`) writes. Newer docker writes an OCI layout beside `manifest.json`;
//! that layout is used when present. Otherwise the image is `manifest.json`'s entry
//! (`Config`, `RepoTags`, `Layers`: layer tars, uncompressed as docker writes them, or
//! gzip/zstd as crane and jib do), and a Docker schema2
//! manifest is synthesised for it, so the rest of the import is the same code path as
//! for every other source.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use strata_oci::{layout, media_types, to_canonical_vec, Compression, Descriptor, Digest};

use crate::import::archive::TarArchive;
use crate::import::error::ImportError;
use crate::import::image::{diff_ids, ImageRoot};
use crate::import::layout::{
    index_archive, open_archived_layout, ArchiveBlob, ArchiveProvider, MAX_INDEX_FILE,
};
use crate::import::location::parse_registry_reference;
use strata_oci::MAX_CONFIG_SIZE;

/// The name of `docker save`'s list of images.
const MANIFEST_FILE: &str = "manifest.json";
/// How errors name this kind of source.
const KIND: &str = "docker archive";

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchivedImage {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Opens the image `name` (`NAME:TAG` as in `RepoTags`; none: the only one) of the
/// `docker save` archive `file`.
pub(crate) async fn open_docker_archive(
    reference: &str,
    file: &Path,
    name: Option<&str>,
) -> Result<ImageRoot, ImportError> {
    let archive = index_archive(reference, file).await?;
    if archive.entry(layout::INDEX_FILE).is_some() && archive.entry(layout::LAYOUT_FILE).is_some() {
        let mut tried = open_archived_layout(reference, archive.clone(), KIND, name).await;
        if let (Err(ImportError::TagNotFound { .. }), Some(name)) = (&tried, name) {
            // `docker save` names images in full (`docker.io/library/busybox:1`).
            if let Ok(full) = parse_registry_reference(name) {
                let full = full.to_string();
                if let ok @ Ok(_) =
                    open_archived_layout(reference, archive.clone(), KIND, Some(&full)).await
                {
                    tried = ok;
                }
            }
        }
        return tried;
    }
    open_legacy(reference, archive, name).await
}

/// The image of a `manifest.json`-only archive, with its manifest synthesised.
async fn open_legacy(
    reference: &str,
    archive: Arc<TarArchive>,
    name: Option<&str>,
) -> Result<ImageRoot, ImportError> {
    let malformed = |reason: String| ImportError::Malformed {
        image: reference.to_string(),
        reason,
    };
    let manifest_json = archive
        .read(MANIFEST_FILE, MAX_INDEX_FILE)
        .await
        .map_err(malformed)?
        .ok_or_else(|| {
            malformed(format!(
                "{} has neither {MANIFEST_FILE} nor an OCI layout (not a docker archive)",
                archive.file().display()
            ))
        })?;
    let images: Vec<ArchivedImage> =
        serde_json::from_slice(&manifest_json).map_err(|e| ImportError::MalformedJson {
            image: reference.to_string(),
            role: "docker archive list",
            blob: MANIFEST_FILE.to_string(),
            reason: e.to_string(),
        })?;
    let image = select(reference, &images, name)?;

    let config = archive
        .read(&image.config, MAX_CONFIG_SIZE)
        .await
        .map_err(malformed)?
        .ok_or_else(|| {
            malformed(format!(
                "{MANIFEST_FILE} names config {} which the archive does not have",
                image.config
            ))
        })?;
    let config_desc = Descriptor::new(
        media_types::DOCKER_CONFIG,
        Digest::sha256_of(&config),
        config.len() as u64,
    );
    let diff_ids = diff_ids(reference, &config_desc.digest, &config)?;
    if diff_ids.len() != image.layers.len() {
        return Err(ImportError::LayerCountMismatch {
            image: reference.to_string(),
            blob: config_desc.digest.clone(),
            config: config_desc.digest.clone(),
            layers: image.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut extra = BTreeMap::new();
    extra.insert(
        config_desc.digest.clone(),
        ArchiveBlob::Entry(image.config.clone()),
    );
    let mut layers = Vec::new();
    for (path, diff_id) in image.layers.iter().zip(diff_ids) {
        let missing = || {
            malformed(format!(
                "{MANIFEST_FILE} names layer {path} which the archive does not have"
            ))
        };
        let range = archive.entry(path).ok_or_else(missing)?;
        let sniffed = {
            let (archive, entry) = (archive.clone(), path.clone());
            tokio::task::spawn_blocking(move || archive.sniff(&entry))
                .await
                .map_err(|e| malformed(format!("reading layer {path}: {e}")))?
                .map_err(|e| malformed(format!("reading layer {path}: {e}")))?
                .ok_or_else(missing)?
        };
        let descriptor = match sniffed {
            // `docker save` writes plain tars: the blob's digest is its diff_id. It is
            // verified when the blob is fetched, so a layer that is not its diff_id
            // fails then.
            (Compression::Uncompressed, _) | (_, None) => {
                Descriptor::new(media_types::DOCKER_LAYER, diff_id, range.size)
            }
            // Other tools (crane, jib) write compressed layers: hashed here; the
            // diff_id is checked when the layer is applied.
            (compression, Some(digest)) => Descriptor::new(
                // Docker schema2 has no zstd type; the OCI one is what containerd uses.
                compression
                    .layer_media_type(false)
                    .unwrap_or(media_types::OCI_LAYER_ZSTD),
                digest,
                range.size,
            ),
        };
        extra.insert(descriptor.digest.clone(), ArchiveBlob::Entry(path.clone()));
        layers.push(descriptor);
    }
    let manifest = to_canonical_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_types::DOCKER_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }))
    .map_err(|e| malformed(format!("synthesising the manifest: {e}")))?;
    let root = Descriptor::new(
        media_types::DOCKER_MANIFEST,
        Digest::sha256_of(&manifest),
        manifest.len() as u64,
    );
    extra.insert(root.digest.clone(), ArchiveBlob::Bytes(Arc::new(manifest)));
    Ok(ImageRoot {
        reference: reference.to_string(),
        name: name
            .map(str::to_string)
            .or_else(|| image.repo_tags.first().cloned())
            .unwrap_or_else(|| reference.to_string()),
        root,
        provider: Arc::new(ArchiveProvider {
            archive,
            kind: KIND,
            extra,
        }),
    })
}

/// The entry of `manifest.json` named `name` (as written in `RepoTags`, or the same
/// image normalized); without a name, the only entry.
fn select<'a>(
    reference: &str,
    images: &'a [ArchivedImage],
    name: Option<&str>,
) -> Result<&'a ArchivedImage, ImportError> {
    let available: Vec<String> = images
        .iter()
        .flat_map(|i| i.repo_tags.iter().cloned())
        .collect();
    let Some(name) = name else {
        return match images {
            [only] => Ok(only),
            _ => Err(ImportError::AmbiguousImage {
                image: reference.to_string(),
                available,
            }),
        };
    };
    let normalized = |n: &str| parse_registry_reference(n).ok().map(|r| r.to_string());
    let wanted = normalized(name);
    images
        .iter()
        .find(|i| {
            i.repo_tags
                .iter()
                .any(|t| t == name || (wanted.is_some() && normalized(t) == wanted))
        })
        .ok_or_else(|| ImportError::TagNotFound {
            image: reference.to_string(),
            tag: name.to_string(),
            available,
        })
}
