//! # strata-exporter
//!
//! Exports immutable snapshot refs as OCI or Docker images, with the semantics of
//! BuildKit's `exporter/containerimage`: the layer chain of every ref is computed
//! concurrently (each shared ref once, cached blobs reused), the image history is
//! normalized against the layers, the config is patched (unknown fields kept), and
//! manifests and an index are committed with containerd GC labels, under a lease that
//! is released once the result is anchored.
//!
//! Four exporters implement [`Exporter`]: [`ImageExporter`] (content store + image
//! records), [`OciExporter`] (OCI layout tar or directory), [`DockerExporter`]
//! (docker-archive tar) and [`RegistryExporter`] (pushed to a registry by the
//! [`Pusher`], which the `image` exporter also uses with `push=true`). Options use
//! BuildKit's names (`name`, `compression`, `oci-mediatypes`, `source-date-epoch`,
//! `annotation.*`, `tar`, `dest`, …) and the response map BuildKit's keys
//! ([`RESPONSE_IMAGE_DIGEST`], …). Progress arrives as a stream of [`ProgressEvent`]s
//! and as `tracing` spans.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use futures::StreamExt;
//! use strata_exporter::{ExportContext, Exporter, OciExporter, Progress, Source};
//! use strata_snapshotter::ImmutableRef;
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

pub mod config;
pub mod error;
pub mod exporter;
pub mod history;
pub mod json;
pub mod manifest;
pub mod options;
pub mod output;
pub mod progress;
pub mod push;
pub mod source;
mod time;
pub mod writer;

pub use error::{Error, Result};
pub use exporter::{
    ExportContext, Exporter, ExporterInstance, RESPONSE_CONFIG_DIGEST, RESPONSE_DESCRIPTOR,
    RESPONSE_IMAGE_DIGEST, RESPONSE_IMAGE_NAME,
};
pub use options::{Annotations, ImageOptions, OutputOptions};
pub use output::docker::DockerExporter;
pub use output::image::ImageExporter;
pub use output::oci::{OciExporter, WriterFactory};
pub use output::registry::RegistryExporter;
pub use progress::{Progress, ProgressEvent, ProgressTask};
pub use push::{BlobOutcome, PushError, PushOptions, PushReport, Pusher};
pub use source::{config_key_for, PlatformEntry, Platforms, Source, CONFIG_KEY, PLATFORMS_KEY};
pub use writer::{CommittedImage, ImageWriter, PlatformImage};
