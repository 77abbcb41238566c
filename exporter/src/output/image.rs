//! The `image` exporter: commits the image to the content store and records it under
//! each name given (BuildKit's `store`, `dangling-name-prefix`, `name-canonical`),
//! unpacks it when asked (`unpack`, see `unpack.rs`) and pushes it (`push`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use strata_content::{Image, Labels};

use crate::context::ExportContext;
use crate::error::{Error, Result};
use crate::exporter::{response, Exporter, ExporterInstance};
use crate::options::{ImageOptions, OutputKind, OutputOptions, RecordOptions};
use crate::output::registry::PushTarget;
use crate::output::unpack::unpack_image;
use crate::progress::Progress;
use crate::push::PushOptions;
use crate::source::Source;
use crate::writer::CommittedImage;
use crate::writer::ImageWriter;

/// Exports into the content store, with an image record per `name`.
///
/// Options: the shared ones (`name`, `compression`, `oci-mediatypes`,
/// `annotation.*`, …), `push`, `push-by-digest`, `registry.insecure`, and BuildKit's
/// `store` (false: no image record), `dangling-name-prefix` (also name the image
/// `PREFIX@<digest>`; with `danging-name-empty-only=true` only when no name is given),
/// `name-canonical` (also record `NAME@<digest>`) and `unpack` (extract the image into
/// the context's [`UnpackTarget`](crate::UnpackTarget) keyed by chainID and label the
/// config `containerd.io/gc.ref.snapshot.<snapshotter>`, so `ctr run` starts it).
pub struct ImageExporter {
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
}

impl ImageExporter {
    /// An `image` exporter over `ctx`.
    pub fn new(ctx: ExportContext) -> ImageExporter {
        ImageExporter {
            writer: Arc::new(ImageWriter::new(ctx.clone())),
            ctx,
        }
    }
}

#[async_trait]
impl Exporter for ImageExporter {
    async fn resolve(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        let parsed = OutputOptions::parse(OutputKind::Image, &options)?;
        let records = parsed.records.unwrap_or_default();
        if records.unpack && self.ctx.unpack.is_none() {
            return Err(Error::NoUnpackTarget {
                exporter: OutputKind::Image.to_string(),
            });
        }
        Ok(Box::new(ImageInstance {
            records,
            ctx: self.ctx.clone(),
            writer: self.writer.clone(),
            push: parsed
                .push
                .map(|request| PushTarget::new(&request, &PushOptions::default())),
            opts: parsed.image,
        }))
    }
}

struct ImageInstance {
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    opts: ImageOptions,
    /// Image records and unpacking.
    records: RecordOptions,
    /// Where to push after naming (`push=true`).
    push: Option<PushTarget>,
}

#[async_trait]
impl ExporterInstance for ImageInstance {
    fn name(&self) -> &str {
        "image"
    }

    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>> {
        // Image records (and unpacking) need every blob in the store; a push alone
        // (store=false) mounts or streams base layers from where they came.
        let committed = if self.records.store {
            self.writer
                .commit_local(&source, &self.opts, &progress)
                .await?
        } else {
            self.writer.commit(&source, &self.opts, &progress).await?
        };
        let named = self.name_and_push(&committed, &progress).await;
        // Released on failure too, before the error is returned. After an unpack the
        // image record and the config's snapshot label keep the snapshots.
        committed.lease.release_after(named).await
    }
}

impl ImageInstance {
    /// Records the committed root under every name (unless `store=false`), unpacks
    /// it when asked, pushes when asked; the response.
    async fn name_and_push(
        &self,
        committed: &CommittedImage,
        progress: &Progress,
    ) -> Result<BTreeMap<String, String>> {
        let digest = &committed.descriptor.digest;
        let names = self.records.target_names(&self.opts.names, digest);
        if self.records.store {
            for name in self.records.record_names(&self.opts.names, digest) {
                self.record(committed, &name, progress).await?;
            }
            if let (true, Some(target), Some(name)) =
                (self.records.unpack, &self.ctx.unpack, names.first())
            {
                unpack_image(&self.ctx, target, committed, name, progress).await?;
            }
        }
        if let Some(push) = &self.push {
            push.push(&self.ctx, committed, &names, progress).await?;
        }
        Ok(response(committed, &names))
    }

    /// Points the image record `name` at the committed root (created, or updated).
    async fn record(
        &self,
        committed: &CommittedImage,
        name: &str,
        progress: &Progress,
    ) -> Result<()> {
        let task = progress.start(format!("naming:{name}"), format!("naming to {name}"));
        let now = SystemTime::now();
        let image = Image {
            name: name.to_string(),
            target: committed.descriptor.clone(),
            labels: Labels::new(),
            created_at: now,
            updated_at: now,
        };
        let res = match self.ctx.images.create_image(image.clone()).await {
            Err(e) if e.is_already_exists() => self
                .ctx
                .images
                .update_image(image, &["target".to_string()])
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        };
        match res {
            Ok(()) => {
                task.complete();
                Ok(())
            }
            Err(e) => {
                task.fail(&e);
                Err(e.into())
            }
        }
    }
}
