//! The import itself, one code path for every source: from an [`ImageRoot`] (a root
//! descriptor and a [`BlobProvider`]) to the verified manifest and config of one
//! platform ([`BaseImage`]), and to a chain of blob-backed refs ([`ImportedImage`]).

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use strata_content::{BlobProvider, Error as ContentError};
use strata_oci::{
    config_diff_ids, config_platform, media_types, Descriptor, Digest, Digester, ImageNode,
    Platform, MAX_CONFIG_SIZE, MAX_INDEX_DEPTH, MAX_MANIFEST_SIZE,
};
use tokio::io::AsyncReadExt;

use crate::blob_layer::{BlobLayer, Materializer};
use crate::immutable_ref::ImmutableRef;
use crate::import::error::ImportError;

/// An image found in its source, not read yet: what every source (a registry, a
/// layout, an archive, a store) resolves a reference to.
#[derive(Clone)]
pub struct ImageRoot {
    /// The reference as written (errors name it).
    pub reference: String,
    /// The image's name, for `org.opencontainers.image.base.name`.
    pub name: String,
    /// The root: a manifest or an index.
    pub root: Descriptor,
    /// Where its blobs come from.
    pub provider: Arc<dyn BlobProvider>,
}

impl fmt::Debug for ImageRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageRoot")
            .field("reference", &self.reference)
            .field("root", &self.root.digest.to_string())
            .field("provider", &self.provider.name())
            .finish()
    }
}

/// One platform's image, read and verified: its manifest, its config and its layers.
#[derive(Clone)]
pub struct BaseImage {
    /// The reference as written.
    pub reference: String,
    /// The image's name, for `org.opencontainers.image.base.name`.
    pub name: String,
    /// The manifest's descriptor (for an index's entry, as the index gives it).
    pub manifest: Descriptor,
    /// The manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The config's descriptor, as the manifest gives it.
    pub config_descriptor: Descriptor,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The layers, base first, with their diffIDs and history entries.
    pub layers: Vec<BlobLayer>,
    /// The image's platform, as its config gives it.
    pub platform: Platform,
    /// Where its blobs come from.
    pub provider: Arc<dyn BlobProvider>,
}

impl fmt::Debug for BaseImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseImage")
            .field("reference", &self.reference)
            .field("manifest", &self.manifest.digest.to_string())
            .field("platform", &self.platform.to_string())
            .field("layers", &self.layers)
            .finish()
    }
}

/// An image imported as a chain of blob-backed refs plus its config.
#[derive(Clone, Debug)]
pub struct ImportedImage {
    /// The top layer's ref (its parents are the lower layers); `None` for an image
    /// without layers.
    pub top: Option<ImmutableRef>,
    /// The base config's bytes, as they are in the image.
    pub config: Vec<u8>,
    /// The config's descriptor.
    pub config_descriptor: Descriptor,
    /// The manifest's descriptor.
    pub manifest: Descriptor,
    /// The image's name, for `org.opencontainers.image.base.name`.
    pub name: String,
    /// The image's platform.
    pub platform: Platform,
    /// The layers, base first (the same as the refs of `top`'s chain).
    pub layers: Vec<BlobLayer>,
}

/// Reads `root`'s image for `platform` (default: the host's) and builds its refs:
/// [`read_image`], then [`BaseImage::into_refs`]. Nothing is fetched but the manifest(s)
/// and the config; layers are fetched when a ref's tree is asked for.
pub async fn import_image(
    root: &ImageRoot,
    platform: Option<&Platform>,
    materializer: &Materializer,
) -> Result<ImportedImage, ImportError> {
    read_image(root, platform)
        .await?
        .into_refs(materializer)
        .await
}

/// Reads `root`'s image: the manifest (for an index, the entry for `platform`, the
/// host's by default), then the config, each verified against its descriptor, and
/// checks that every layer is of a media type strata reads and has a diff_id. A root
/// that is a single manifest is taken as it is, unless `platform` is given and its
/// config says another platform ([`ImportError::MissingPlatform`]).
pub async fn read_image(
    root: &ImageRoot,
    platform: Option<&Platform>,
) -> Result<BaseImage, ImportError> {
    let reference = root.reference.as_str();
    let mut desc = root.root.clone();
    let mut depth = 0;
    let manifest = loop {
        if !media_types::is_index(&desc.media_type) && !media_types::is_manifest(&desc.media_type) {
            return Err(ImportError::UnknownMediaType {
                image: reference.to_string(),
                blob: desc.digest,
                media_type: desc.media_type,
                role: "a manifest or index",
            });
        }
        let role = if media_types::is_index(&desc.media_type) {
            "index"
        } else {
            "manifest"
        };
        let bytes = read_verified(root, &desc, role, MAX_MANIFEST_SIZE).await?;
        let node = ImageNode::parse(&desc, &bytes).map_err(|e| ImportError::MalformedJson {
            image: reference.to_string(),
            role,
            blob: desc.digest.to_string(),
            reason: e.reason,
        })?;
        match node {
            ImageNode::Manifest(m) => break (desc, bytes, *m),
            ImageNode::Index(index) => {
                depth += 1;
                if depth > MAX_INDEX_DEPTH {
                    return Err(ImportError::MalformedJson {
                        image: reference.to_string(),
                        role,
                        blob: desc.digest.to_string(),
                        reason: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
                    });
                }
                let wanted = platform.cloned().unwrap_or_else(Platform::host);
                desc = pick_platform(&index.manifests, &wanted).ok_or_else(|| {
                    ImportError::MissingPlatform {
                        image: reference.to_string(),
                        blob: desc.digest.clone(),
                        platform: wanted.to_string(),
                        available: index
                            .manifests
                            .iter()
                            .map(|m| {
                                m.platform
                                    .as_ref()
                                    .map_or("unknown".into(), |p| p.to_string())
                            })
                            .collect(),
                    }
                })?;
            }
        }
    };
    let (manifest_desc, manifest_bytes, manifest) = manifest;
    let config_desc = manifest.config.clone();
    if config_desc.media_type != media_types::OCI_CONFIG
        && config_desc.media_type != media_types::DOCKER_CONFIG
    {
        return Err(ImportError::UnknownMediaType {
            image: reference.to_string(),
            blob: config_desc.digest,
            media_type: config_desc.media_type,
            role: "an image config",
        });
    }
    let config = read_verified(root, &config_desc, "config", MAX_CONFIG_SIZE).await?;
    let config_json: Map<String, Value> =
        serde_json::from_slice(&config).map_err(|e| ImportError::MalformedJson {
            image: reference.to_string(),
            role: "config",
            blob: config_desc.digest.to_string(),
            reason: e.to_string(),
        })?;
    let image_platform = config_platform(&config_json);
    if let Some(wanted) = platform {
        if media_types::is_manifest(&root.root.media_type)
            && !platform_matches(wanted, &image_platform)
        {
            return Err(ImportError::MissingPlatform {
                image: reference.to_string(),
                blob: manifest_desc.digest.clone(),
                platform: wanted.to_string(),
                available: vec![image_platform.to_string()],
            });
        }
    }
    let diff_ids = diff_ids(reference, &config_desc.digest, &config)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImportError::LayerCountMismatch {
            image: reference.to_string(),
            blob: manifest_desc.digest.clone(),
            config: config_desc.digest.clone(),
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    if let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| !media_types::is_layer(&l.media_type))
    {
        return Err(ImportError::UnknownMediaType {
            image: reference.to_string(),
            blob: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            role: "a layer",
        });
    }
    let mut history = layer_history(&config_json).into_iter();
    let layers = manifest
        .layers
        .into_iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| BlobLayer {
            descriptor,
            diff_id,
            history: history.next(),
            provider: root.provider.clone(),
        })
        .collect();
    Ok(BaseImage {
        reference: root.reference.clone(),
        name: root.name.clone(),
        manifest: manifest_desc,
        manifest_bytes,
        config_descriptor: config_desc,
        config,
        layers,
        platform: image_platform,
        provider: root.provider.clone(),
    })
}

impl BaseImage {
    /// The chain of blob-backed refs of the image's layers (bottom first), extracted
    /// by `materializer` only when a tree is asked for.
    pub async fn into_refs(
        self,
        materializer: &Materializer,
    ) -> Result<ImportedImage, ImportError> {
        let mut top: Option<ImmutableRef> = None;
        for layer in &self.layers {
            top = Some(
                ImmutableRef::from_blob(top, layer.clone(), materializer.clone())
                    .await
                    .map_err(|source| ImportError::Ref {
                        image: self.reference.clone(),
                        source: Box::new(source),
                    })?,
            );
        }
        Ok(ImportedImage {
            top,
            config: self.config,
            config_descriptor: self.config_descriptor,
            manifest: self.manifest,
            name: self.name,
            platform: self.platform,
            layers: self.layers,
        })
    }
}

/// Reads the blob `desc` from `root`'s provider: at most `limit` bytes, hashed while
/// read, and refused unless size and digest are the descriptor's.
pub(crate) async fn read_verified(
    root: &ImageRoot,
    desc: &Descriptor,
    role: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ImportError> {
    let reference = root.reference.as_str();
    if desc.size > limit {
        return Err(ImportError::TooLarge {
            image: reference.to_string(),
            role,
            blob: desc.digest.clone(),
            size: desc.size,
            limit,
        });
    }
    let content = |source: ContentError| match source {
        ContentError::NotFound(_) => ImportError::MissingBlob {
            image: reference.to_string(),
            blob: desc.digest.clone(),
            provider: root.provider.name(),
        },
        source => ImportError::Content {
            image: reference.to_string(),
            source,
        },
    };
    let reader = root.provider.open(desc).await.map_err(content)?;
    let mut bytes = Vec::with_capacity(desc.size as usize);
    reader
        .take(desc.size + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| {
            content(ContentError::io(
                format!("reading {role} {}", desc.digest),
                e,
            ))
        })?;
    let mismatch = |detail: String| ImportError::DigestMismatch {
        image: reference.to_string(),
        role,
        blob: desc.digest.clone(),
        detail,
    };
    if bytes.len() as u64 != desc.size {
        return Err(mismatch(format!(
            "expected {} bytes, got {}{}",
            desc.size,
            bytes.len(),
            if bytes.len() as u64 > desc.size {
                " or more"
            } else {
                ""
            }
        )));
    }
    let mut digester = Digester::new();
    digester.update(&bytes);
    let actual = digester.finish();
    if actual != desc.digest {
        return Err(mismatch(format!("the bytes are {actual}")));
    }
    Ok(bytes)
}

/// The config's `rootfs.diff_ids`.
pub(crate) fn diff_ids(
    reference: &str,
    config_digest: &Digest,
    config: &[u8],
) -> Result<Vec<Digest>, ImportError> {
    let malformed = |reason: String| ImportError::MalformedJson {
        image: reference.to_string(),
        role: "config",
        blob: config_digest.to_string(),
        reason,
    };
    let config: Map<String, Value> =
        serde_json::from_slice(config).map_err(|e| malformed(e.to_string()))?;
    config_diff_ids(&config).map_err(malformed)
}

/// The config's history entries that made layers (`empty_layer` ones skipped), in
/// order: the `i`th belongs to the `i`th layer.
fn layer_history(config: &Map<String, Value>) -> Vec<Map<String, Value>> {
    config
        .get("history")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(Value::as_object)
                .filter(|h| h.get("empty_layer").and_then(Value::as_bool) != Some(true))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an image of platform `have` runs where `want` is asked for: the same os
/// and architecture, and the variant asked for (any, when none is; `arm64` without a
/// variant is `v8`).
fn platform_matches(want: &Platform, have: &Platform) -> bool {
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_string()),
        (_, v) => v.map(str::to_string),
    };
    want.os == have.os
        && want.architecture == have.architecture
        && (want.variant.is_none() || variant(want) == variant(have))
}

/// The index entry for `want`: the first that matches, preferring an exact variant.
fn pick_platform(entries: &[Descriptor], want: &Platform) -> Option<Descriptor> {
    let matching: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| platform_matches(want, p))
        })
        .collect();
    matching
        .iter()
        .find(|d| d.platform.as_ref().map(|p| &p.variant) == Some(&want.variant))
        .or(matching.first())
        .map(|d| (*d).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str) -> Descriptor {
        let mut d = Descriptor::new(
            media_types::OCI_MANIFEST,
            Digest::sha256_of(platform.as_bytes()),
            1,
        );
        d.platform = Platform::parse(platform);
        d
    }

    #[test]
    fn platforms_match_by_os_arch_and_variant() {
        let entries = [
            entry("linux/arm/v6"),
            entry("linux/arm/v7"),
            entry("linux/arm64"),
        ];
        let pick = |p: &str| pick_platform(&entries, &Platform::parse(p).unwrap());
        assert_eq!(pick("linux/arm/v7"), Some(entries[1].clone()));
        assert_eq!(pick("linux/arm"), Some(entries[0].clone()));
        assert_eq!(pick("linux/arm64/v8"), Some(entries[2].clone()));
        assert_eq!(pick("linux/amd64"), None);
        assert_eq!(pick("windows/arm64"), None);
    }
}
