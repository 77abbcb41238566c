//! Annotations (`annotation[-<kind>][[platform]].<key>=<value>`), BuildKit's syntax.

use std::collections::BTreeMap;

use strata_oci::Platform;

use crate::error::{Error, Result};

/// Annotations to put on the manifests, the index and their descriptors
/// (`annotation[-<kind>][[platform]].<key>=<value>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// On the index (`annotation-index.<key>`).
    pub index: BTreeMap<String, String>,
    /// On the root descriptor, e.g. in an OCI layout's `index.json`
    /// (`annotation-index-descriptor.<key>`).
    pub index_descriptor: BTreeMap<String, String>,
    /// On manifests (`annotation.<key>`, `annotation-manifest.<key>`); the `None` key
    /// applies to every platform.
    pub manifest: BTreeMap<Option<Platform>, BTreeMap<String, String>>,
    /// On the manifest descriptors in the index (`annotation-manifest-descriptor.<key>`).
    pub manifest_descriptor: BTreeMap<Option<Platform>, BTreeMap<String, String>>,
}

impl Annotations {
    /// The manifest annotations for `platform` (unqualified ones, then qualified ones
    /// overriding them).
    pub fn manifest_for(&self, platform: Option<&Platform>) -> BTreeMap<String, String> {
        merged(&self.manifest, platform)
    }

    /// The manifest-descriptor annotations for `platform`.
    pub fn manifest_descriptor_for(&self, platform: Option<&Platform>) -> BTreeMap<String, String> {
        merged(&self.manifest_descriptor, platform)
    }

    /// Parses one `annotation…` option; `Ok(false)` if `key` is not an annotation.
    pub(crate) fn parse_option(&mut self, key: &str, value: &str) -> Result<bool> {
        let Some(rest) = key.strip_prefix("annotation") else {
            return Ok(false);
        };
        let invalid = |reason: &str| Error::InvalidOption {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        // rest: ["-kind"] ["[platform]"] ".name"
        let (kind, rest) = match rest.strip_prefix('-') {
            Some(r) => {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                (&r[..end], &r[end..])
            }
            None => ("manifest", rest),
        };
        let (platform, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let end = r
                    .find(']')
                    .ok_or_else(|| invalid("unterminated [platform] qualifier"))?;
                let p = Platform::parse(&r[..end])
                    .ok_or_else(|| invalid("the [platform] qualifier is not os/arch[/variant]"))?;
                (Some(p), &r[end + 1..])
            }
            None => (None, rest),
        };
        let name = rest
            .strip_prefix('.')
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("expected annotation[-kind][[platform]].<key>"))?;
        let name = name.to_string();
        let value = value.to_string();
        match kind {
            "manifest" => {
                self.manifest
                    .entry(platform)
                    .or_default()
                    .insert(name, value);
            }
            "manifest-descriptor" => {
                self.manifest_descriptor
                    .entry(platform)
                    .or_default()
                    .insert(name, value);
            }
            "index" | "index-descriptor" if platform.is_some() => {
                return Err(invalid(
                    "index annotations cannot have a platform qualifier",
                ))
            }
            "index" => {
                self.index.insert(name, value);
            }
            "index-descriptor" => {
                self.index_descriptor.insert(name, value);
            }
            _ => return Err(invalid(
                "unknown annotation kind (index, index-descriptor, manifest, manifest-descriptor)",
            )),
        }
        Ok(true)
    }
}

fn merged(
    map: &BTreeMap<Option<Platform>, BTreeMap<String, String>>,
    platform: Option<&Platform>,
) -> BTreeMap<String, String> {
    let mut out = map.get(&None).cloned().unwrap_or_default();
    if let Some(p) = platform {
        if let Some(extra) = map.get(&Some(p.clone())) {
            out.extend(extra.clone());
        }
    }
    out
}
