//! Attestation manifests, as BuildKit's `commitAttestationsManifest` writes them: one
//! per attested platform, a layer `application/vnd.in-toto+json` per statement
//! (annotated with its predicate type), the config either a legacy image config with
//! `unknown` os and architecture or (`oci-artifact=true`) the OCI empty descriptor
//! with `artifactType` and `subject`; listed in the index after the image manifests
//! with platform `unknown/unknown` and the `vnd.docker.reference.*` annotations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};
use strata_content::ContentStore;
use strata_oci::{annotations, media_types, to_canonical_vec, Descriptor, Digest, Platform};
use tracing::Instrument;

use super::{ImageWriter, PlatformImage};
use crate::attestation::statement::make_statement;
use crate::attestation::{Attestation, GeneratedImageInfo, GeneratedLayer};
use crate::error::{Error, Result};
use crate::manifest::manifest_labels;
use crate::options::ImageOptions;
use crate::progress::Progress;
use crate::source::PlatformSource;

/// The platform of an attestation manifest's index entry and legacy config.
fn unknown_platform() -> Platform {
    Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        os_version: None,
        os_features: Vec::new(),
        variant: None,
    }
}

impl ImageWriter {
    /// Runs `source`'s generators on the committed `image` (whose kept layers are
    /// `layers`), makes the statements of its attestations, and writes its
    /// attestation manifest; returns the manifest as the index lists it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_attestations(
        &self,
        store: &Arc<dyn ContentStore>,
        lease: &str,
        source: &PlatformSource,
        image: &PlatformImage,
        layers: Vec<GeneratedLayer>,
        opts: &ImageOptions,
        progress: &Progress,
    ) -> Result<PlatformImage> {
        let platform = image
            .platform
            .clone()
            .unwrap_or_else(|| source.effective_platform());
        let info = GeneratedImageInfo {
            platform: platform.clone(),
            manifest: plain(&image.manifest),
            config: image.config.clone(),
            layers,
            base: source.base.clone(),
            layer_sources: source.layer_sources.clone(),
            source_date_epoch: opts.source_date_epoch,
            finished_on: SystemTime::now(),
            content: store.clone(),
        };
        let mut attestations: Vec<Attestation> = source.attestations.clone();
        for generator in &source.generators {
            let task = progress.start(
                format!("attestation:{}:{platform}", generator.name()),
                format!("generating {} attestation for {platform}", generator.name()),
            );
            let made = generator
                .generate(&info)
                .instrument(task.span().clone())
                .await
                .inspect_err(|e| task.fail(e))?;
            task.complete();
            attestations.push(made);
        }

        let mut statement_layers = Vec::new();
        for attestation in &attestations {
            let statement =
                make_statement(attestation, &opts.names, &platform, &image.manifest.digest)?;
            let bytes = encode(&statement, || {
                format!("the {} statement of {platform}", attestation.predicate_type)
            })?;
            let digest = Digest::sha256_of(&bytes);
            let mut desc = self
                .put_blob(
                    store,
                    lease,
                    media_types::IN_TOTO,
                    (bytes, digest),
                    BTreeMap::new(),
                )
                .await?;
            desc.annotations.insert(
                annotations::IN_TOTO_PREDICATE_TYPE.to_string(),
                attestation.predicate_type.clone(),
            );
            statement_layers.push(desc);
        }

        let (config_type, config_bytes) = if opts.oci_artifact {
            (media_types::OCI_EMPTY, media_types::OCI_EMPTY_JSON.to_vec())
        } else {
            let config = legacy_config(&statement_layers);
            let bytes = encode(&config, || format!("the attestation config of {platform}"))?;
            (media_types::OCI_CONFIG, bytes)
        };
        let config_digest = Digest::sha256_of(&config_bytes);
        let config = self
            .put_blob(
                store,
                lease,
                config_type,
                (config_bytes, config_digest),
                BTreeMap::new(),
            )
            .await?;

        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": config,
            "layers": statement_layers,
        });
        if opts.oci_artifact {
            manifest["artifactType"] = json!(media_types::DOCKER_ATTESTATION_MANIFEST);
            manifest["subject"] = json!(plain(&image.manifest));
        }
        let bytes = encode(&manifest, || {
            format!("the attestation manifest of {platform}")
        })?;
        let digest = Digest::sha256_of(&bytes);
        let task = progress.start(
            format!("attestation-manifest:{digest}"),
            format!("exporting attestation manifest {digest}"),
        );
        let mut desc = self
            .put_blob(
                store,
                lease,
                media_types::OCI_MANIFEST,
                (bytes, digest),
                manifest_labels(&config.digest, &statement_layers),
            )
            .instrument(task.span().clone())
            .await
            .inspect_err(|e| task.fail(e))?;
        task.complete();
        desc.platform = Some(unknown_platform());
        desc.annotations = [
            (
                annotations::DOCKER_REFERENCE_TYPE.to_string(),
                annotations::ATTESTATION_MANIFEST.to_string(),
            ),
            (
                annotations::DOCKER_REFERENCE_DIGEST.to_string(),
                image.manifest.digest.to_string(),
            ),
        ]
        .into();
        Ok(PlatformImage {
            platform: Some(unknown_platform()),
            manifest: desc,
            config,
            layers: statement_layers,
        })
    }
}

/// `desc` without platform, annotations or URLs: what a `subject` names.
fn plain(desc: &Descriptor) -> Descriptor {
    Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size)
}

/// The legacy form's config, as BuildKit's `attestationsConfig`: an image config of
/// platform `unknown/unknown` whose diffIDs are the statements' digests.
fn legacy_config(layers: &[Descriptor]) -> Value {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
}

/// Canonical JSON of `value`; `what` names it in the error.
fn encode(value: &Value, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
    to_canonical_vec(value).map_err(|source| Error::Encode {
        what: what(),
        source,
    })
}
