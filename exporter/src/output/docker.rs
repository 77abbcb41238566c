//! The `docker` exporter: a docker-archive tar (`manifest.json`, `repositories`,
//! blobs, plus the OCI layout files) that `docker load` and skopeo accept. It holds
//! one image, so a source with several platforms is an error (as in BuildKit).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use crate::context::ExportContext;
use crate::error::{Error, Result};
use crate::exporter::{Exporter, ExporterInstance};
use crate::options::OutputKind;
use crate::output::layout::{
    blob_path, ArchiveContent, Entry, LayoutExporter, LayoutFormat, WriterFactory,
};
use strata_oci::to_canonical_vec;

/// The OCI layout with docker's `manifest.json` and `repositories` in front; one image.
pub(crate) static DOCKER_ARCHIVE: LayoutFormat = LayoutFormat {
    kind: OutputKind::Docker,
    max_platforms: Some(1),
    extra_entries: archive_entries,
};

/// Exports a docker-archive tar.
pub struct DockerExporter(LayoutExporter);

impl DockerExporter {
    /// A `docker` exporter over `ctx`; the tar goes to the `dest` option.
    pub fn new(ctx: ExportContext) -> DockerExporter {
        DockerExporter(LayoutExporter::new(&DOCKER_ARCHIVE, ctx))
    }

    /// Streams the tar to writers from `sink` (e.g. `docker load`'s stdin) when no
    /// `dest` is given.
    pub fn with_writer(self, sink: WriterFactory) -> DockerExporter {
        DockerExporter(self.0.with_writer(sink))
    }
}

#[async_trait]
impl Exporter for DockerExporter {
    async fn resolve(
        &self,
        options: BTreeMap<String, String>,
    ) -> Result<Box<dyn ExporterInstance>> {
        self.0.resolve(&options)
    }
}

/// `repo:tag` as docker shows it: `docker.io/library/` dropped, `:latest` added when
/// the name has no tag or digest.
fn repo_tag(name: &str) -> String {
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    let last = short.rsplit('/').next().unwrap_or(short);
    if last.contains(':') || short.contains('@') {
        short.to_string()
    } else {
        format!("{short}:latest")
    }
}

/// `manifest.json` (one entry per image, with every name of it in `RepoTags`) and
/// `repositories`; each image must have exactly one platform.
fn archive_entries(content: &ArchiveContent) -> Result<Vec<Entry>> {
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for archived in &content.images {
        let [image] = archived.platforms.as_slice() else {
            return Err(Error::TooManyPlatforms {
                exporter: "docker".into(),
                count: archived.platforms.len(),
            });
        };
        let tags: Vec<String> = archived.names.iter().map(|n| repo_tag(n)).collect();
        if let Some(top) = image.layers.last() {
            for tag in &tags {
                if let Some((repo, t)) = tag.rsplit_once(':') {
                    repositories
                        .entry(repo.to_string())
                        .or_default()
                        .insert(t.to_string(), top.digest.hex().to_string());
                }
            }
        }
        manifest.push(json!({
            "Config": blob_path(&image.config),
            "RepoTags": tags,
            "Layers": image.layers.iter().map(blob_path).collect::<Vec<_>>(),
        }));
    }
    let enc = |v: &serde_json::Value| {
        to_canonical_vec(v).map_err(|source| Error::Encode {
            what: "the docker-archive manifest.json".into(),
            source,
        })
    };
    let mut out = vec![Entry::Bytes("manifest.json".into(), enc(&json!(manifest))?)];
    if !repositories.is_empty() {
        out.push(Entry::Bytes(
            "repositories".into(),
            enc(&json!(repositories))?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_as_docker_shows_them() {
        assert_eq!(repo_tag("alpine"), "alpine:latest");
        assert_eq!(repo_tag("docker.io/library/alpine:3"), "alpine:3");
        assert_eq!(repo_tag("docker.io/me/app"), "me/app:latest");
        assert_eq!(repo_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repo_tag("localhost:5000/app:v1"), "localhost:5000/app:v1");
    }
}
