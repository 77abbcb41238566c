//! The adapter from BuildKit's exporter source — a single ref or refs keyed by id,
//! plus a metadata map with JSON-encoded platforms and configs — to a typed
//! [`Source`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strata_cache::ImmutableRef;
use strata_oci::Platform;

use super::{PlatformSource, Source};
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
    /// The key of the ref in BuildKit's refs map.
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

impl Source {
    /// A source from BuildKit's exporter source: without `refs`, the single ref
    /// `single` with the config under [`CONFIG_KEY`]; with `refs`, one image per entry
    /// of the [`PLATFORMS_KEY`] mapping, each with the config under
    /// [`config_key_for`]`(id)`. Refs and mapping must agree (same count, each id
    /// once, each id a ref); errors name the mismatch.
    pub fn from_buildkit(
        single: Option<ImmutableRef>,
        refs: BTreeMap<String, ImmutableRef>,
        metadata: BTreeMap<String, Vec<u8>>,
    ) -> Result<Source> {
        if refs.is_empty() {
            return Ok(Source::single(single, metadata.get(CONFIG_KEY).cloned()));
        }
        let raw = metadata.get(PLATFORMS_KEY).ok_or_else(|| {
            Error::InvalidSource(format!(
                "{} refs ({}) but no {PLATFORMS_KEY:?} mapping",
                refs.len(),
                refs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mapping: Platforms = serde_json::from_slice(raw)
            .map_err(|e| Error::InvalidSource(format!("{PLATFORMS_KEY:?} is not valid: {e}")))?;
        if mapping.platforms.len() != refs.len() {
            return Err(Error::InvalidSource(format!(
                "{PLATFORMS_KEY:?} lists {} platforms but the source has {} refs",
                mapping.platforms.len(),
                refs.len()
            )));
        }
        let mut images = Vec::new();
        let mut seen = BTreeSet::new();
        for entry in mapping.platforms {
            if !seen.insert(entry.id.clone()) {
                return Err(Error::InvalidSource(format!(
                    "{PLATFORMS_KEY:?} lists id {:?} twice",
                    entry.id
                )));
            }
            let top = refs.get(&entry.id).ok_or_else(|| {
                Error::InvalidSource(format!(
                    "{PLATFORMS_KEY:?} names id {:?} ({}) but the source has no ref with that id",
                    entry.id, entry.platform
                ))
            })?;
            images.push(PlatformSource {
                config: metadata.get(&config_key_for(&entry.id)).cloned(),
                platform: Some(entry.platform),
                top: Some(top.clone()),
                ..PlatformSource::default()
            });
        }
        Ok(Source { images })
    }
}
