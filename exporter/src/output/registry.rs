//! The `registry` exporter (BuildKit's `type=registry`): commits the image to the
//! content store and pushes it to every `name`; and the push options the `image`
//! exporter shares with it (`push`, `push-by-digest`, `registry.insecure`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::exporter::{response, ExportContext, Exporter, ExporterInstance};
use crate::options::{self, ImageOptions};
use crate::progress::Progress;
use crate::push::{PushOptions, Pusher};
use crate::source::Source;
use crate::writer::{CommittedImage, ImageWriter};

/// Option: push the image to its names' registries (`image` exporter).
pub const OPTION_PUSH: &str = "push";
/// Option: push by digest only, without a tag.
pub const OPTION_PUSH_BY_DIGEST: &str = "push-by-digest";
/// Option: talk plain HTTP to the registry.
pub const OPTION_REGISTRY_INSECURE: &str = "registry.insecure";

/// Where and how an export is pushed: the options shared by the `registry` exporter
/// and the `image` exporter's `push=true`.
#[derive(Clone, Debug)]
pub(crate) struct PushTarget {
    by_digest: bool,
    opts: PushOptions,
}

/// Removes the push options from `options`. `always` (the `registry` exporter) pushes
/// whatever `push` says is refused; otherwise a push happens only with `push=true`.
/// Returns the remaining options and the push target, if any.
pub(crate) fn take_push_options(
    mut options: BTreeMap<String, String>,
    always: bool,
    defaults: &PushOptions,
) -> Result<(BTreeMap<String, String>, Option<PushTarget>)> {
    let push = match options.remove(OPTION_PUSH) {
        Some(v) => {
            let push = options::parse_bool(OPTION_PUSH, &v)?;
            if always && !push {
                return Err(Error::InvalidOption {
                    key: OPTION_PUSH.into(),
                    value: v,
                    reason: "the registry exporter always pushes".into(),
                });
            }
            push
        }
        None => always,
    };
    let by_digest = match options.remove(OPTION_PUSH_BY_DIGEST) {
        Some(v) => options::parse_bool(OPTION_PUSH_BY_DIGEST, &v)?,
        None => false,
    };
    let insecure = match options.remove(OPTION_REGISTRY_INSECURE) {
        Some(v) => options::parse_bool(OPTION_REGISTRY_INSECURE, &v)?,
        None => defaults.insecure,
    };
    let target = push.then(|| PushTarget {
        by_digest,
        opts: PushOptions {
            insecure,
            ..defaults.clone()
        },
    });
    Ok((options, target))
}

impl PushTarget {
    /// Refuses a push without a name to push to.
    pub(crate) fn check_names(&self, opts: &ImageOptions) -> Result<()> {
        if opts.names.is_empty() {
            return Err(Error::InvalidOption {
                key: "name".into(),
                value: String::new(),
                reason: "pushing needs name=HOST/REPO[:TAG]".into(),
            });
        }
        Ok(())
    }

    /// Pushes `committed` to each of `names`, in order; the first failure stops.
    pub(crate) async fn push(
        &self,
        ctx: &ExportContext,
        committed: &CommittedImage,
        names: &[String],
        progress: &Progress,
    ) -> Result<()> {
        let pusher = Pusher::new(ctx.content.clone(), self.opts.clone());
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
        let (options, target) = take_push_options(options, true, &self.push)?;
        let (opts, _) = options::parse("registry", &options, false, true)?;
        let target = target.ok_or_else(|| Error::InvalidOption {
            key: OPTION_PUSH.into(),
            value: "false".into(),
            reason: "the registry exporter always pushes".into(),
        })?;
        target.check_names(&opts)?;
        Ok(Box::new(RegistryInstance {
            ctx: self.ctx.clone(),
            writer: self.writer.clone(),
            opts,
            target,
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
    use crate::options::tests::opts;

    #[test]
    fn push_options_are_taken_out() {
        let d = PushOptions::default();
        let (rest, t) = take_push_options(
            opts(&[
                ("push", "true"),
                ("push-by-digest", "true"),
                ("registry.insecure", "true"),
                ("name", "r/x"),
            ]),
            false,
            &d,
        )
        .unwrap();
        assert_eq!(rest, opts(&[("name", "r/x")]));
        let t = t.unwrap();
        assert!(t.by_digest && t.opts.insecure);
        // Without push=true the image exporter does not push.
        let (_, t) = take_push_options(opts(&[("registry.insecure", "true")]), false, &d).unwrap();
        assert!(t.is_none());
        // The registry exporter always does, and refuses push=false.
        let (_, t) = take_push_options(opts(&[]), true, &d).unwrap();
        assert!(t.is_some_and(|t| !t.by_digest && !t.opts.insecure));
        let err = take_push_options(opts(&[("push", "false")]), true, &d).unwrap_err();
        assert!(err.to_string().contains("push"), "{err}");
        let err = take_push_options(opts(&[("push-by-digest", "maybe")]), false, &d).unwrap_err();
        assert!(err.to_string().contains("push-by-digest"), "{err}");
    }
}
