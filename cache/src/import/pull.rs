//! [`pull_image`]: a read image's blobs into a content store, so later exports need
//! not reach its source again.

use std::sync::Arc;
use std::time::SystemTime;

use strata_content::{fetch_blob, write_blob, ContentStore, Image, ImageStore, Labels};
use strata_oci::labels::gc_ref_label;
use strata_oci::{Descriptor, Digest};
use tokio::task::JoinSet;

use crate::import::error::ImportError;
use crate::import::image::BaseImage;

/// How many layers are fetched at the same time.
const CONCURRENT_FETCHES: usize = 4;

/// What [`pull_image`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledImage {
    /// The manifest now in the store (the image record's target, when one was named).
    pub manifest: Descriptor,
    /// The blobs this pull brought into the store (those already there are not
    /// listed).
    pub fetched: Vec<Digest>,
}

/// Puts `image` into `store`: every layer blob (fetched from its provider, verified
/// while it streams, labelled with its diffID and its distribution source), then the
/// config, then the manifest with containerd's GC labels on its config and layers —
/// children before the parent, so no stored manifest references a missing blob. A blob
/// that fails verification leaves nothing behind (nor does the pull of a
/// blob already present do anything).
///
/// With `record` (`image store`, `name`), the image record `name` is created (or
/// moved) to point at the manifest. For an image read from an index, the manifest of
/// the one platform read is the record's target; the index is not stored.
///
/// Blobs are unreferenced until the manifest (and the record) is written: pass a
/// store under a lease (`store.with_lease(…)`) when a garbage collector may run
/// meanwhile.
pub async fn pull_image(
    image: &BaseImage,
    store: &Arc<dyn ContentStore>,
    record: Option<(&dyn ImageStore, &str)>,
) -> Result<PulledImage, ImportError> {
    let reference = image.reference.as_str();
    let mut fetched = Vec::new();
    let mut tasks = JoinSet::new();
    let mut failure: Option<ImportError> = None;
    let mut pending = image.layers.iter();
    loop {
        while tasks.len() < CONCURRENT_FETCHES && failure.is_none() {
            let Some(layer) = pending.next() else { break };
            let (store, layer) = (store.clone(), layer.clone());
            tasks.spawn(async move {
                let digest = layer.descriptor.digest.clone();
                layer.fetch_into(&store).await.map(|new| (digest, new))
            });
        }
        // Every started fetch is waited for, so a failure returns only once nothing
        // is being written any more.
        let Some(done) = tasks.join_next().await else {
            break;
        };
        match done {
            Ok(Ok((digest, true))) => fetched.push(digest),
            Ok(Ok((_, false))) => {}
            Ok(Err(source)) => {
                failure.get_or_insert(ImportError::Ref {
                    image: reference.to_string(),
                    source: Box::new(source),
                });
            }
            // The tasks are never cancelled: a join error is a panic, passed on.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let content = |source| ImportError::Content {
        image: reference.to_string(),
        source,
    };
    let config = &image.config_descriptor;
    if fetch_blob(store, image.provider.as_ref(), config, Labels::new())
        .await
        .map_err(content)?
    {
        fetched.push(config.digest.clone());
    }
    let mut labels = Labels::new();
    labels.insert(gc_ref_label(0), config.digest.to_string());
    for (i, layer) in image.layers.iter().enumerate() {
        labels.insert(gc_ref_label(i + 1), layer.descriptor.digest.to_string());
    }
    let manifest = &image.manifest;
    let present = store.info(&manifest.digest).await.is_ok();
    write_blob(
        store.as_ref(),
        &format!("pull-{}", manifest.digest),
        &image.manifest_bytes,
        manifest,
        labels,
    )
    .await
    .map_err(content)?;
    if !present {
        fetched.push(manifest.digest.clone());
    }
    if let Some((images, name)) = record {
        let target = Descriptor {
            platform: None,
            ..manifest.clone()
        };
        let now = SystemTime::now();
        let new = Image {
            name: name.to_string(),
            target,
            labels: Labels::new(),
            created_at: now,
            updated_at: now,
        };
        match images.create_image(new.clone()).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                images
                    .update_image(new, &["target".to_string()])
                    .await
                    .map_err(content)?;
            }
            Err(e) => return Err(content(e)),
        }
    }
    Ok(PulledImage {
        manifest: manifest.clone(),
        fetched,
    })
}
