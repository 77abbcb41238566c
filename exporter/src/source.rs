//! [`Source`]: what a frontend hands the exporter, typed — per platform the top ref
//! and the image config. BuildKit's metadata map is read by the adapter
//! [`Source::from_buildkit`] only.

pub(crate) mod buildkit;

use std::collections::BTreeSet;

use strata_cache::ImmutableRef;
use strata_oci::{config_platform, Platform};

use std::sync::Arc;

use crate::attestation::provenance::ProvenanceGenerator;
use crate::attestation::sbom::SbomGenerator;
use crate::attestation::statement::read_statement_file;
use crate::attestation::{AttestRequest, Attestation, ExportRequest, LayerSource, SharedGenerator};
use crate::base_image::BaseImageRef;

use crate::error::{Error, Result};

/// One image of a [`Source`]: its platform, its top ref and its config.
#[derive(Clone, Debug, Default)]
pub struct PlatformSource {
    /// The platform; `Some` makes the image an entry of an index (every image of a
    /// multi-platform source has one), `None` exports a lone manifest.
    pub platform: Option<Platform>,
    /// The top of the layer chain; `None` exports an image without layers.
    pub top: Option<ImmutableRef>,
    /// The image config (JSON) to patch; `None` starts from an empty config for the
    /// platform (or the host's). Built on a base image, this is the base's config
    /// (with the caller's changes): its history covers the base's layers.
    pub config: Option<Vec<u8>>,
    /// The base image the chain starts from, if any: the manifest gets the
    /// `org.opencontainers.image.base.name` and `.base.digest` annotations.
    pub base: Option<BaseImageRef>,
    /// In-toto statements about this image, known before the export (a frontend's,
    /// a statement file's). Any attestation (or generator) that is not inline-only
    /// makes the export's root an index, as in BuildKit.
    pub attestations: Vec<Attestation>,
    /// Generators of statements that need the finished image (provenance, an SBOM),
    /// run after this image's manifest is written; their statements follow
    /// `attestations` in the attestation manifest.
    pub generators: Vec<SharedGenerator>,
    /// Where the chain's layers came from, base first (what provenance lists among
    /// the resolved dependencies; empty when the caller does not say).
    pub layer_sources: Vec<LayerSource>,
}

impl PlatformSource {
    /// How errors name this image: its platform or `default`.
    pub(crate) fn label(&self) -> String {
        self.platform
            .as_ref()
            .map_or_else(|| "default".to_string(), |p| p.to_string())
    }

    /// The image's platform: the one given, else its config's (`os`,
    /// `architecture`, `variant`), else the host's.
    pub fn effective_platform(&self) -> Platform {
        if let Some(p) = &self.platform {
            return p.clone();
        }
        self.config
            .as_deref()
            .and_then(|bytes| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).ok()
            })
            .filter(|c| c.contains_key("architecture") && c.contains_key("os"))
            .map(|c| config_platform(&c))
            .unwrap_or_else(Platform::host)
    }

    /// Whether this image has attestations that make the root an index: any that is
    /// not inline-only, or any at all when `force_inline` (`attestation-inline`).
    pub(crate) fn forces_index(&self, force_inline: bool) -> bool {
        self.attestations
            .iter()
            .any(|a| force_inline || !a.inline_only)
            || self
                .generators
                .iter()
                .any(|g| force_inline || !g.inline_only())
    }

    /// Whether this image has any attestation or generator.
    pub(crate) fn has_attestations(&self) -> bool {
        !self.attestations.is_empty() || !self.generators.is_empty()
    }
}

/// What to export: one image without a platform (a manifest), or one image per
/// platform (an index listing them in this order).
///
/// ```
/// use strata_exporter::Source;
/// let src = Source::single(None, Some(br#"{"architecture":"amd64","os":"linux"}"#.to_vec()));
/// assert_eq!(src.platform_count(), 1);
/// assert!(!src.is_multi_platform());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// The images, in index order. Empty is an image without layers or config.
    pub images: Vec<PlatformSource>,
}

impl Source {
    /// A single-platform source: `top` (or nothing) with an optional image config.
    pub fn single(top: Option<ImmutableRef>, config: Option<Vec<u8>>) -> Source {
        Source {
            images: vec![PlatformSource {
                platform: None,
                top,
                config,
                ..PlatformSource::default()
            }],
        }
    }

    /// A multi-platform source: one `(platform, top ref, config)` per platform, in
    /// index order.
    pub fn multi_platform(
        entries: impl IntoIterator<Item = (Platform, ImmutableRef, Option<Vec<u8>>)>,
    ) -> Source {
        Source {
            images: entries
                .into_iter()
                .map(|(platform, top, config)| PlatformSource {
                    platform: Some(platform),
                    top: Some(top),
                    config,
                    ..PlatformSource::default()
                })
                .collect(),
        }
    }

    /// Number of platforms this source exports (1 for a single-platform source).
    pub fn platform_count(&self) -> usize {
        self.images.len().max(1)
    }

    /// True when the images carry platforms: the export's root is an index.
    pub fn is_multi_platform(&self) -> bool {
        self.images.iter().any(|img| img.platform.is_some())
    }

    /// The images to build, after checking that they can form one image or one
    /// index: several images each need a platform, and no platform twice.
    pub(crate) fn checked_images(&self) -> Result<Vec<PlatformSource>> {
        if self.images.is_empty() {
            return Ok(vec![PlatformSource::default()]);
        }
        if self.is_multi_platform() || self.images.len() > 1 {
            let mut seen = BTreeSet::new();
            for (i, img) in self.images.iter().enumerate() {
                let Some(platform) = &img.platform else {
                    return Err(Error::InvalidSource(format!(
                        "{} images but image {i} has no platform; every image of a multi-platform source needs one",
                        self.images.len()
                    )));
                };
                if !seen.insert(platform.clone()) {
                    return Err(Error::InvalidSource(format!(
                        "platform {platform} is listed twice"
                    )));
                }
            }
        }
        Ok(self.images.clone())
    }
}

impl Source {
    /// Applies `requests` to the platforms: statement files are read (at most
    /// [`MAX_STATEMENT_SIZE`](crate::MAX_STATEMENT_SIZE) bytes), checked and added to the platform they name (or
    /// every platform); provenance adds one shared [`ProvenanceGenerator`] to every
    /// platform, and an SBOM one shared [`SbomGenerator`]. A statement file that
    /// cannot be read, is not an in-toto v1 statement, or names a platform the source
    /// lacks is [`Error::StatementFile`] naming it.
    pub async fn add_attestations(
        &mut self,
        requests: &[AttestRequest],
        export: &ExportRequest,
    ) -> Result<()> {
        if self.images.is_empty() {
            self.images.push(Default::default());
        }
        for request in requests {
            match request {
                AttestRequest::Provenance { mode } => {
                    let generator = Arc::new(ProvenanceGenerator::new(*mode, export.clone()));
                    for image in &mut self.images {
                        image.generators.push(generator.clone());
                    }
                }
                AttestRequest::Sbom => {
                    let generator = Arc::new(SbomGenerator::new());
                    for image in &mut self.images {
                        image.generators.push(generator.clone());
                    }
                }
                AttestRequest::File { path, platform } => {
                    let attestation = read_statement_file(path).await?;
                    let platforms: Vec<Platform> =
                        self.images.iter().map(|i| i.effective_platform()).collect();
                    let mut added = false;
                    for (image, p) in self.images.iter_mut().zip(&platforms) {
                        if platform.as_ref().is_none_or(|want| want == p) {
                            image.attestations.push(attestation.clone());
                            added = true;
                        }
                    }
                    if !added {
                        let has: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
                        return Err(Error::StatementFile {
                            path: path.clone(),
                            reason: format!(
                                "platform {} is not one the export has ({})",
                                platform.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                                has.join(", ")
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
