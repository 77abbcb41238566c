//! [`Source`]: what a frontend hands the exporter — refs and their metadata — with
//! BuildKit's metadata keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_cache::ImmutableRef;
use strata_content::Platform;

use crate::error::{Error, Result};

/// Metadata key of the image config (JSON) of a single-platform source.
pub const CONFIG_KEY: &str = "containerimage.config";
/// Metadata key of the platforms mapping of a multi-platform source (JSON
/// `{"platforms":[{"id":…,"platform":{…}}]}`).
pub const PLATFORMS_KEY: &str = "refs.platforms";

/// The metadata key of the image config of platform `id`: `containerimage.config/<id>`.
pub fn config_key_for(id: &str) -> String {
    format!("{CONFIG_KEY}/{id}")
}

/// One entry of the platforms mapping: a ref id and the platform it is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformEntry {
    /// The key of the ref in [`Source::refs`].
    pub id: String,
    /// The platform of the image built from that ref.
    pub platform: Platform,
}

/// The platforms mapping stored under [`PLATFORMS_KEY`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platforms {
    /// One entry per ref, in the order the index lists them.
    pub platforms: Vec<PlatformEntry>,
}

/// What to export: one ref (or none, for an empty image), or refs keyed by platform
/// id with a [`Platforms`] mapping; plus metadata such as image configs.
///
/// ```
/// use strata_exporter::Source;
/// let src = Source::single(None, Some(br#"{"architecture":"amd64","os":"linux"}"#.to_vec()));
/// assert!(src.refs.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// The ref of a single-platform source (`None` with empty `refs` exports an image
    /// without layers).
    pub single_ref: Option<ImmutableRef>,
    /// The refs of a multi-platform source, keyed by platform id.
    pub refs: BTreeMap<String, ImmutableRef>,
    /// Metadata: [`CONFIG_KEY`], `containerimage.config/<id>`, [`PLATFORMS_KEY`], …
    pub metadata: BTreeMap<String, Vec<u8>>,
}

impl Source {
    /// A single-platform source: `top` (or nothing) with an optional image config.
    pub fn single(top: Option<ImmutableRef>, config: Option<Vec<u8>>) -> Source {
        let mut metadata = BTreeMap::new();
        if let Some(c) = config {
            metadata.insert(CONFIG_KEY.to_string(), c);
        }
        Source {
            single_ref: top,
            refs: BTreeMap::new(),
            metadata,
        }
    }

    /// A multi-platform source: one `(platform, top ref, config)` per platform. The
    /// platform id is the platform's `os/arch[/variant]` text.
    pub fn multi_platform(
        entries: impl IntoIterator<Item = (Platform, ImmutableRef, Option<Vec<u8>>)>,
    ) -> Source {
        let mut src = Source::default();
        let mut mapping = Platforms::default();
        for (platform, top, config) in entries {
            let id = platform.to_string();
            if let Some(c) = config {
                src.metadata.insert(config_key_for(&id), c);
            }
            src.refs.insert(id.clone(), top);
            mapping.platforms.push(PlatformEntry { id, platform });
        }
        // Serializing a struct of strings cannot fail.
        let json = serde_json::to_vec(&mapping).unwrap_or_default();
        src.metadata.insert(PLATFORMS_KEY.to_string(), json);
        src
    }

    /// Sets one metadata entry (builder style).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Source {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Number of platforms this source exports (1 for a single-platform source).
    pub fn platform_count(&self) -> usize {
        self.refs.len().max(1)
    }

    /// The images to build, after checking that refs and the mapping agree.
    pub(crate) fn resolve(&self) -> Result<Vec<SourceImage>> {
        if self.refs.is_empty() {
            return Ok(vec![SourceImage {
                id: None,
                platform: None,
                top: self.single_ref.clone(),
                config: self.metadata.get(CONFIG_KEY).cloned(),
            }]);
        }
        let raw = self.metadata.get(PLATFORMS_KEY).ok_or_else(|| {
            Error::InvalidSource(format!(
                "{} refs ({}) but no {PLATFORMS_KEY:?} mapping",
                self.refs.len(),
                self.refs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mapping: Platforms = serde_json::from_slice(raw)
            .map_err(|e| Error::InvalidSource(format!("{PLATFORMS_KEY:?} is not valid: {e}")))?;
        if mapping.platforms.len() != self.refs.len() {
            return Err(Error::InvalidSource(format!(
                "{PLATFORMS_KEY:?} lists {} platforms but the source has {} refs",
                mapping.platforms.len(),
                self.refs.len()
            )));
        }
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for entry in mapping.platforms {
            if !seen.insert(entry.id.clone()) {
                return Err(Error::InvalidSource(format!(
                    "{PLATFORMS_KEY:?} lists id {:?} twice",
                    entry.id
                )));
            }
            let top = self.refs.get(&entry.id).ok_or_else(|| {
                Error::InvalidSource(format!(
                    "{PLATFORMS_KEY:?} names id {:?} ({}) but the source has no ref with that id",
                    entry.id, entry.platform
                ))
            })?;
            out.push(SourceImage {
                config: self.metadata.get(&config_key_for(&entry.id)).cloned(),
                id: Some(entry.id),
                platform: Some(entry.platform),
                top: Some(top.clone()),
            });
        }
        Ok(out)
    }
}

/// One image of a resolved source.
#[derive(Clone, Debug)]
pub(crate) struct SourceImage {
    /// The platform id (multi-platform only).
    pub id: Option<String>,
    /// The platform (multi-platform only).
    pub platform: Option<Platform>,
    /// The top ref, if any.
    pub top: Option<ImmutableRef>,
    /// The image config bytes, if given.
    pub config: Option<Vec<u8>>,
}

impl SourceImage {
    /// How errors name this image: its platform id or `default`.
    pub fn label(&self) -> String {
        self.id.clone().unwrap_or_else(|| "default".to_string())
    }
}
