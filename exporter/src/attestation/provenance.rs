//! SLSA v1 provenance that strata fills itself ([`ProvenanceGenerator`]); the
//! predicate's `buildType` is [`PROVENANCE_BUILD_TYPE`], whose fields
//! `docs/provenance.md` describes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use strata_content::format_rfc3339;
use strata_oci::{to_canonical_vec, Digest};

use super::purl::URI_ESCAPED;
use super::{image_purl, Attestation, AttestationGenerator, GeneratedImageInfo, LayerSource};
use crate::error::Result;
use crate::options::OutputKind;

/// The predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The `buildDefinition.buildType` of strata's provenance: an export of layer trees
/// and base images as an image (fields described in `docs/provenance.md`).
pub const PROVENANCE_BUILD_TYPE: &str = "https://strata.invalid/provenance/export/v1";
/// The prefix of `runDetails.builder.id`, followed by strata's version.
pub const PROVENANCE_BUILDER_ID_PREFIX: &str = "pkg:generic/strata@";
/// The digest algorithm name of a directory's metadata fingerprint in
/// `resolvedDependencies` (not a digest of its bytes; see `strata_cache::fingerprint`).
pub const FINGERPRINT_ALGORITHM: &str = "strata-fingerprint";

/// How much the provenance says, as buildx's `mode` means it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// The output type and platform as `externalParameters`, with the resolved
    /// dependencies, builder, invocation and times (buildx's default).
    #[default]
    Min,
    /// Also every output option (`externalParameters.request.options`), the config
    /// and manifest digests (`internalParameters`) and the layers
    /// (`runDetails.byproducts`).
    Max,
}

/// Makes the SLSA v1 provenance of each platform's image. One generator serves every
/// platform of an export: they share its invocation id.
#[derive(Clone, Debug)]
pub struct ProvenanceGenerator {
    mode: ProvenanceMode,
    request: ExportRequest,
    invocation_id: String,
}

impl ProvenanceGenerator {
    /// A generator for the export `request`. With `source-date-epoch` among its
    /// options the invocation id is derived from the request and every time is
    /// clamped to the epoch, so the statement is reproducible; otherwise the id is
    /// random.
    pub fn new(mode: ProvenanceMode, request: ExportRequest) -> ProvenanceGenerator {
        let invocation_id = match epoch(&request) {
            Some(_) => {
                let seed = json!({"output": request.output.name(), "options": request.options});
                let bytes = to_canonical_vec(&seed).unwrap_or_default();
                Digest::sha256_of(&bytes).hex()[..32].to_string()
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        ProvenanceGenerator {
            mode,
            request,
            invocation_id,
        }
    }

    /// The predicate for `image`.
    fn predicate(&self, image: &GeneratedImageInfo) -> Result<Value> {
        let epoch = image.source_date_epoch.or(epoch(&self.request));
        let time = |t: SystemTime| {
            let t = match epoch {
                Some(e) => t.min(UNIX_EPOCH + Duration::from_secs(e.max(0) as u64)),
                None => t,
            };
            format_rfc3339(t)
        };
        let platform = image.platform.to_string();
        let mut request = json!({
            "output": self.request.output.name(),
            "platform": platform,
        });
        let mut dependencies = Vec::new();
        if let Some(base) = &image.base {
            let digest = json!({ "sha256": base.digest.hex() });
            dependencies.push(match image_purl(&base.name, &image.platform) {
                Ok(uri) => json!({ "uri": uri, "digest": digest }),
                // An OCI layout or archive: its reference is no registry name.
                Err(_) => json!({ "name": base.name, "digest": digest }),
            });
        }
        dependencies.extend(image.layer_sources.iter().map(layer_source));
        let mut build_definition = json!({
            "buildType": PROVENANCE_BUILD_TYPE,
            "resolvedDependencies": dependencies,
        });
        let mut run_details = json!({
            "builder": { "id": format!("{PROVENANCE_BUILDER_ID_PREFIX}{}", env!("CARGO_PKG_VERSION")) },
            "metadata": {
                "invocationId": self.invocation_id,
                "startedOn": time(self.request.started_on),
                "finishedOn": time(image.finished_on),
            },
        });
        if self.mode == ProvenanceMode::Max {
            request["options"] = json!(self.request.options);
            build_definition["internalParameters"] = json!({
                "manifest": image.manifest.digest.to_string(),
                "config": image.config.digest.to_string(),
            });
            run_details["byproducts"] = image
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    json!({
                        "name": format!("layer {i}"),
                        "digest": { "sha256": l.descriptor.digest.hex() },
                        "mediaType": l.descriptor.media_type,
                        "annotations": { "diffID": l.diff_id.to_string() },
                    })
                })
                .collect();
        }
        build_definition["externalParameters"] = json!({ "request": request });
        Ok(json!({
            "buildDefinition": build_definition,
            "runDetails": run_details,
        }))
    }
}

#[async_trait]
impl AttestationGenerator for ProvenanceGenerator {
    fn name(&self) -> &str {
        "provenance"
    }

    async fn generate(&self, image: &GeneratedImageInfo) -> Result<Attestation> {
        Ok(Attestation::new(SLSA_PROVENANCE_V1, self.predicate(image)?))
    }
}

/// The request's `source-date-epoch`, if it sets one.
fn epoch(request: &ExportRequest) -> Option<i64> {
    request
        .options
        .get("source-date-epoch")
        .and_then(|v| v.parse::<i64>().ok())
}

/// A layer source as a resource descriptor of `resolvedDependencies`.
fn layer_source(source: &LayerSource) -> Value {
    match source {
        LayerSource::Directory {
            path,
            fingerprint,
            copy_to,
        } => {
            let mut out = Map::new();
            out.insert("uri".into(), json!(file_uri(path)));
            out.insert(
                "digest".into(),
                json!({ FINGERPRINT_ALGORITHM: fingerprint }),
            );
            if let Some(dest) = copy_to {
                out.insert("annotations".into(), json!({ "copyTo": dest }));
            }
            Value::Object(out)
        }
        LayerSource::ContainerdSnapshot { snapshotter, key } => json!({
            "name": key,
            "annotations": { "containerdSnapshotter": snapshotter },
        }),
    }
}

/// What a `file://` URI percent-encodes of a path: all but unreserved characters
/// and `/`.
const PATH_ESCAPED: &percent_encoding::AsciiSet = &URI_ESCAPED.remove(b'/');

/// `file://` and `path`, percent-encoded but for `/` and unreserved characters.
fn file_uri(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let escaped = percent_encoding::percent_encode(path.as_os_str().as_bytes(), PATH_ESCAPED);
    format!("file://{escaped}")
}

/// The export being attested, as provenance records it: its output and options
/// (`externalParameters`) and when it started.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The output (`type=`).
    pub output: OutputKind,
    /// The output's options, as given (BuildKit's names; `source-date-epoch` makes
    /// the provenance reproducible).
    pub options: BTreeMap<String, String>,
    /// When the export started (`runDetails.metadata.startedOn`).
    pub started_on: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_escape_what_a_uri_cannot_hold() {
        assert_eq!(
            file_uri(std::path::Path::new("/a b/c%d")),
            "file:///a%20b/c%25d"
        );
    }
}
