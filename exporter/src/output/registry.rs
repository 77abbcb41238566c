//! The `registry` exporter (BuildKit's `type=registry`): commits the image to the
//! content store and pushes it to every `name`; and the push options the `image`
//! exporter shares with it (`push`, `push-by-digest`, `registry.insecure`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::context::ExportContext;
use crate::error::Result;
use crate::exporter::{response, Exporter, ExporterInstance};
use crate::options::{ImageOptions, OutputKind, OutputOptions, PushRequest};
use crate::progress::Progress;
use crate::push::{PushOptions, Pusher};
use crate::source::Source;
use crate::writer::{CommittedImage, ImageWriter};

/// Where and how an export is pushed: the options shared by the `registry` exporter
/// and the `image` exporter's `push=true`.
#[derive(Clone, Debug)]
pub(crate) struct PushTarget {
    by_digest: bool,
    opts: PushOptions,
}

impl PushTarget {
    /// The push `request` asks for, with the exporter's `defaults` for the rest;
    /// `registry.insecure` overrides `defaults.insecure`.
    pub(crate) fn new(request: &PushRequest, defaults: &PushOptions) -> PushTarget {
        PushTarget {
            by_digest: request.by_digest,
            opts: PushOptions {
                insecure: request.insecure.unwrap_or(defaults.insecure),
                ..defaults.clone()
            },
        }
    }

    /// Pushes `committed` to each of `names`, in order; the first failure stops.
    pub(crate) async fn push(
        &self,
        ctx: &ExportContext,
        committed: &CommittedImage,
        names: &[String],
        progress: &Progress,
    ) -> Result<()> {
        // Base layers the store lacks are mounted or streamed from where they came.
        let providers = committed
            .remote_blobs
            .iter()
            .map(|(digest, layer)| (digest.clone(), layer.provider.clone()))
            .collect();
        let pusher = Pusher::new(ctx.content.clone(), self.opts.clone()).with_providers(providers);
        for name in names {
            let task = progress.start(format!("push:{name}"), format!("pushing {name}"));
            match pusher
                .push(name, &committed.descriptor, self.by_digest, progress)
                .await
            {
                Ok(report) => {
                    tracing::info!(
                        reference = %report.reference,
                        uploaded = report.uploaded(),
                        blobs = report.blobs.len(),
                        "pushed"
                    );
                    task.complete();
                }
                Err(e) => {
                    task.fail(&e);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

/// Exports to registries: the image is committed to the content store (under a
/// lease, released once pushed) and pushed to every `name` (`HOST/REPO[:TAG]`).
///
/// Options: the `image` exporter's (`name`, `compression`, `oci-mediatypes`,
/// `annotation.*`, …) plus `push-by-digest` and `registry.insecure` (plain HTTP).
pub struct RegistryExporter {
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    push: PushOptions,
}

impl RegistryExporter {
    /// A `registry` exporter over `ctx`, with default [`PushOptions`].
    pub fn new(ctx: ExportContext) -> RegistryExporter {
        RegistryExporter {
            writer: Arc::new(ImageWriter::new(ctx.clone())),
            ctx,
            push: PushOptions::default(),
        }
    }

    /// The same exporter with other push settings (credentials file, concurrency,
    /// retries); the `registry.insecure` option still overrides `insecure`.
    pub fn with_push_options(mut self, push: PushOptions) -> RegistryExporter {
        self.push = push;
        self
    }
}

#[async_trait]
impl Exporter for RegistryExporter {
    async fn resolve(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        let parsed = OutputOptions::parse(OutputKind::Registry, &options)?;
        // The registry kind always has a push; parse refuses push=false.
        let request = parsed.push.unwrap_or_default();
        Ok(Box::new(RegistryInstance {
            ctx: self.ctx.clone(),
            writer: self.writer.clone(),
            target: PushTarget::new(&request, &self.push),
            opts: parsed.image,
        }))
    }
}

struct RegistryInstance {
    ctx: ExportContext,
    writer: Arc<ImageWriter>,
    opts: ImageOptions,
    target: PushTarget,
}

#[async_trait]
impl ExporterInstance for RegistryInstance {
    fn name(&self) -> &str {
        "registry"
    }

    async fn export(&self, source: Source, progress: Progress) -> Result<BTreeMap<String, String>> {
        let committed = self.writer.commit(&source, &self.opts, &progress).await?;
        // The lease keeps every blob until the registry has it.
        let pushed = self
            .target
            .push(&self.ctx, &committed, &self.opts.names, &progress)
            .await
            .map(|_| response(&committed, &self.opts.names));
        committed.lease.release_after(pushed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_overrides_only_insecure() {
        let defaults = PushOptions {
            jobs: 7,
            ..PushOptions::default()
        };
        let t = PushTarget::new(
            &PushRequest {
                by_digest: true,
                insecure: Some(true),
            },
            &defaults,
        );
        assert!(t.by_digest && t.opts.insecure && t.opts.jobs == 7);
        let t = PushTarget::new(&PushRequest::default(), &defaults);
        assert!(!t.by_digest && !t.opts.insecure);
    }
}
