//! [`copy_ref`]: a Dockerfile `COPY` as a ref — a layer written straight from a
//! directory, stacked on a chain without diffing or extracting anything.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use strata_content::StoreProvider;
use strata_differ::{copy_layer, CompareOptions, CopyOptions};

use crate::blob_layer::{BlobLayer, Materializer};
use crate::error::RefError;
use crate::immutable_ref::ImmutableRef;

/// Writes a layer holding `src`'s tree under `copy.dest` (owned as `copy.owner`
/// says; see [`copy_layer`]) into the materializer's store with `opts` (compression,
/// lease, `source_date_epoch`), and returns it as a blob-backed ref on `parent`,
/// with `description` as its history `created_by` (say `COPY app /srv/app`, as the
/// user named the source: a host path there would make the config depend on where
/// the build ran). Nothing under `parent` is diffed or extracted.
pub async fn copy_ref(
    parent: Option<ImmutableRef>,
    src: &Path,
    copy: &CopyOptions,
    description: &str,
    opts: &CompareOptions,
    materializer: &Materializer,
) -> Result<ImmutableRef, RefError> {
    let blob = copy_layer(materializer.store.clone(), src, copy, opts)
        .await
        .map_err(|source| RefError::Copy {
            src: src.to_path_buf(),
            source,
        })?;
    let created = match opts.source_date_epoch {
        Some(epoch) => strata_content::format_epoch(epoch),
        None => strata_content::format_rfc3339(SystemTime::now()),
    };
    let mut history = Map::new();
    history.insert("created".into(), Value::String(created));
    history.insert("created_by".into(), Value::String(description.to_string()));
    let layer = BlobLayer {
        descriptor: blob.descriptor,
        diff_id: blob.diff_id,
        history: Some(history),
        provider: Arc::new(StoreProvider::new(
            materializer.store.clone(),
            "the content store",
        )),
    };
    ImmutableRef::from_blob(parent, layer, materializer.clone()).await
}
