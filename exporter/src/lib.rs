//! # strata-exporter
//!
//! Exports immutable snapshot refs as OCI or Docker images, with the semantics of
//! BuildKit's `exporter/containerimage`: the layer chain of every ref is computed
//! concurrently (each shared ref once, cached blobs reused), the image history is
//! normalized against the layers, the config is patched (unknown fields kept), and
//! manifests and an index are committed with containerd GC labels, under a lease that
//! is released once the result is anchored.
//!
//! The pieces, in the order an export uses them:
//!
//! - [`Source`]: what to export, typed — per platform ([`PlatformSource`]) the top ref
//!   and the image config. [`Source::from_buildkit`] adapts BuildKit's refs and
//!   metadata map ([`CONFIG_KEY`], [`PLATFORMS_KEY`]).
//! - Attestations ([`Attestation`], [`AttestationGenerator`]): in-toto statements
//!   per platform, known up front or generated once the image is written (SLSA
//!   provenance: [`ProvenanceGenerator`]); packaged as BuildKit packages them, one
//!   attestation manifest per platform in the index ([`AttestRequest`] reads buildx's
//!   `--attest` requests into a source: [`Source::add_attestations`]).
//! - [`OutputOptions::parse`]: BuildKit's option names (`name`, `compression`,
//!   `oci-mediatypes`, `source-date-epoch`, `annotation.*`, `tar`, `dest`, `push`,
//!   `unpack`, `store`, `name-canonical`, `dangling-name-prefix`, …)
//!   parsed and checked for an [`OutputKind`] without any store, so a CLI or frontend
//!   can refuse bad options before it opens anything.
//! - [`Exporter`]s, built from an [`ExportContext`] (stores, differ, job limit, and
//!   the [`UnpackTarget`] `unpack=true` extracts into):
//!   [`ImageExporter`] (content store + image records), [`OciExporter`] (OCI layout tar
//!   or directory), [`DockerExporter`] (docker-archive tar) and [`RegistryExporter`]
//!   (pushed by the [`Pusher`], which the `image` exporter also uses with
//!   `push=true`). [`Exporter::resolve`] turns options into an [`ExporterInstance`].
//! - [`ExporterInstance::export`] commits the image through the [`ImageWriter`] and
//!   writes the output; it answers with BuildKit's response map
//!   ([`RESPONSE_IMAGE_DIGEST`], …). Progress arrives as a stream of
//!   [`ProgressEvent`]s and as `tracing` spans.
//! - Images already recorded in a store ([`StoredImage`]) are pushed later with the
//!   same [`Pusher`] ([`push_image`]) and saved with the `oci` and `docker` outputs'
//!   code ([`save_images`], [`SaveOptions`]).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use futures::StreamExt;
//! use strata_exporter::{ExportContext, Exporter, OciExporter, Progress, Source};
//! use strata_cache::ImmutableRef;
//!
//! async fn export(ctx: ExportContext, top: ImmutableRef) -> strata_exporter::Result<()> {
//!     let options: BTreeMap<String, String> = [
//!         ("dest".to_string(), "/tmp/image.tar".to_string()),
//!         ("name".to_string(), "example:latest".to_string()),
//!     ]
//!     .into();
//!     let instance = OciExporter::new(ctx).resolve(options).await?;
//!     let (progress, mut events) = Progress::channel();
//!     let watcher = tokio::spawn(async move {
//!         while let Some(ev) = events.next().await {
//!             println!("{} {}/{:?}", ev.name, ev.current, ev.total);
//!         }
//!     });
//!     let response = instance.export(Source::single(Some(top), None), progress).await?;
//!     println!("digest {}", response["containerimage.digest"]);
//!     let _ = watcher.await;
//!     Ok(())
//! }
//! ```
//!
//! Options are checked the same way without a context:
//!
//! ```
//! use strata_exporter::{OutputKind, OutputOptions};
//!
//! let options = [("tar", "False"), ("dest", "/tmp/layout")]
//!     .map(|(k, v)| (k.to_string(), v.to_string()))
//!     .into();
//! let parsed = OutputOptions::parse(OutputKind::Oci, &options).unwrap();
//! assert!(!parsed.destination.unwrap().tar); // Go's ParseBool spellings, as BuildKit
//! assert!(OutputOptions::parse(OutputKind::Docker, &options).is_err()); // docker is a tar
//! ```

#![deny(missing_docs)]

mod attestation;
mod base_image;
mod config;
mod context;
mod error;
mod exporter;
mod history;
mod manifest;
mod options;
mod output;
mod progress;
mod push;
mod source;
mod stored;
mod writer;

pub use attestation::provenance::{
    ProvenanceGenerator, ProvenanceMode, FINGERPRINT_ALGORITHM, PROVENANCE_BUILDER_ID_PREFIX,
    PROVENANCE_BUILD_TYPE, SLSA_PROVENANCE_V1,
};
pub use attestation::sbom::{SbomGenerator, SPDX_DOCUMENT};
pub use attestation::{
    image_purl, AttestRequest, Attestation, AttestationGenerator, AttestationSubject,
    ExportRequest, GeneratedImageInfo, GeneratedLayer, LayerSource, SharedGenerator,
    IN_TOTO_STATEMENT_V1, MAX_STATEMENT_SIZE,
};
pub use base_image::BaseImageRef;
pub use config::{merge_config, parse_config};
pub use context::{ExportContext, UnpackTarget};
pub use error::{Error, Result};
pub use exporter::{
    Exporter, ExporterInstance, RESPONSE_CONFIG_DIGEST, RESPONSE_DESCRIPTOR, RESPONSE_IMAGE_DIGEST,
    RESPONSE_IMAGE_NAME,
};
pub use options::{
    Annotations, Destination, ImageOptions, OutputKind, OutputOptions, PushRequest, RecordOptions,
};
pub use output::docker::DockerExporter;
pub use output::image::ImageExporter;
pub use output::layout::WriterFactory;
pub use output::oci::OciExporter;
pub use output::registry::RegistryExporter;
pub use progress::{Progress, ProgressEvent, ProgressTask};
pub use push::{BlobOutcome, BlobProviders, PushError, PushOptions, PushReport, Pusher};
pub use source::buildkit::{config_key_for, PlatformEntry, Platforms, CONFIG_KEY, PLATFORMS_KEY};
pub use source::{PlatformSource, Source};
pub use stored::{push_image, save_images, SaveOptions, StoredImage};
pub use writer::{CommittedImage, ImageWriter, PlatformImage};
