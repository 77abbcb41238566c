//! The `image` exporter: commits the image to the content store and records it under
//! each name given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use strata_content::{Image, Labels};

use crate::context::ExportContext;
use crate::error::Result;
use crate::exporter::{response, Exporter, ExporterInstance};
use crate::options::{ImageOptions, OutputKind, OutputOptions};
use crate::output::registry::PushTarget;
use crate::progress::Progress;
use crate::push::PushOptions;
use crate::source::Source;
use crate::writer::CommittedImage;
use crate::writer::ImageWriter;

/// Exports into the content store, with an image record per `name`.
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
        Ok(Box::new(ImageInstance {
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
    /// Where to push after naming (`push=true`).
    push: Option<PushTarget>,
}

#[async_trait]
impl ExporterInstance for ImageInstance {
    fn name(&self) -> &str {
        "image"
    }

    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>> {
        let committed = self
            .writer
            .commit_local(&source, &self.opts, &progress)
            .await?;
        let named = self.name_and_push(&committed, &progress).await;
        // Released on failure too, before the error is returned.
        committed.lease.release_after(named).await
    }
}

impl ImageInstance {
    /// Points every name at the committed root, pushes when asked; the response.
    async fn name_and_push(
        &self,
        committed: &CommittedImage,
        progress: &Progress,
    ) -> Result<BTreeMap<String, String>> {
        for name in &self.opts.names {
            let task = progress.start(format!("naming:{name}"), format!("naming to {name}"));
            let now = SystemTime::now();
            let image = Image {
                name: name.clone(),
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
            if let Err(e) = res {
                task.fail(&e);
                return Err(e.into());
            }
            task.complete();
        }
        if let Some(push) = &self.push {
            push.push(&self.ctx, committed, &self.opts.names, progress)
                .await?;
        }
        Ok(response(committed, &self.opts.names))
    }
}
