//! The SBOM generator: an SPDX 2.3 document of a platform's final tree, read from
//! the layers being exported by `strata-sbom` (package databases only; a base
//! image's layers are streamed from their blobs, never extracted for this).

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use strata_sbom::{layers_of_chain, spdx_document, DocumentOptions, ScanLimits};

use super::{Attestation, AttestationGenerator, GeneratedImageInfo};
use crate::error::{Error, Result};

/// The predicate type of an SPDX document statement, as BuildKit writes SBOMs.
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";

/// Makes `--attest type=sbom`'s statement: the packages of the dpkg, apk and rpm
/// databases in the platform's final tree, each attributed to the layer (diffID) that
/// introduced it, as an SPDX 2.3 document (see `strata_sbom`). With
/// `source-date-epoch` the document's creation time is the epoch, so the statement is
/// reproducible.
#[derive(Debug, Default)]
pub struct SbomGenerator {
    limits: ScanLimits,
}

impl SbomGenerator {
    /// A generator with the default database size limits.
    pub fn new() -> SbomGenerator {
        SbomGenerator::default()
    }
}

#[async_trait]
impl AttestationGenerator for SbomGenerator {
    fn name(&self) -> &str {
        "sbom"
    }

    async fn generate(&self, image: &GeneratedImageInfo) -> Result<Attestation> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Generator {
            generator: "sbom".into(),
            platform: image.platform.to_string(),
            source,
        };
        let chain: Vec<_> = image
            .layers
            .iter()
            .map(|l| (l.layer_ref.clone(), l.diff_id.clone()))
            .collect();
        let layers = layers_of_chain(&chain, &image.content)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let limits = self.limits;
        let inventory = tokio::task::spawn_blocking(move || layers.scan(&limits))
            .await
            .map_err(|e| failed(Box::new(e)))?
            .map_err(|e| failed(Box::new(e)))?;
        let created = match image.source_date_epoch {
            Some(epoch) => UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64),
            None => image.finished_on,
        };
        let document = spdx_document(
            &inventory,
            &DocumentOptions {
                name: format!("{}@{}", image.platform, image.manifest.digest),
                namespace: None,
                created,
                image_digest: Some(image.manifest.digest.clone()),
            },
        );
        Ok(Attestation::new(SPDX_DOCUMENT, document))
    }
}
