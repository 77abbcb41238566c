//! `unpack=true` of the `image` exporter (BuildKit's `unpackImage`): the committed
//! image's layers (the host platform's image, for an index) are extracted into the
//! [`UnpackTarget`]'s snapshotter as committed snapshots named by chainID, parents
//! chained, as containerd's unpacker lays them out; then the config is labelled
//! `containerd.io/gc.ref.snapshot.<snapshotter>=<top chainID>`, so containerd's GC
//! keeps the snapshots as long as the image and `ctr run` starts the image without
//! unpacking it again.
//!
//! Until the label is set, the export's lease holds the snapshots: every chainID is
//! added to it first (a chain that exists already is not touched by the extraction),
//! and a snapshotter that takes leases ([`Snapshotter::with_lease`]) creates its
//! extraction snapshots inside it.
//!
//! [`Snapshotter::with_lease`]: strata_snapshotter::Snapshotter::with_lease

use std::sync::Arc;

use serde_json::{Map, Value};
use strata_cache::BlobLayer;
use strata_content::{read_blob, LeaseResource, ResourceKind, StoreProvider};
use strata_oci::chain_id;
use strata_oci::{labels, Descriptor, Digest, Platform};

use crate::context::{ExportContext, UnpackTarget};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::writer::{CommittedImage, PlatformImage};

/// Unpacks `committed` (recorded as `name`) into `target`; returns the top chainID,
/// or `None` when there is nothing to unpack: no image for the host platform (as
/// BuildKit, the export still succeeds) or no layers.
pub(crate) async fn unpack_image(
    ctx: &ExportContext,
    target: &UnpackTarget,
    committed: &CommittedImage,
    name: &str,
    progress: &Progress,
) -> Result<Option<Digest>> {
    let Some((image, config)) = host_image(ctx, committed).await? else {
        tracing::warn!(image = name, host = %Platform::host(), "no image for the host platform: not unpacked");
        return Ok(None);
    };
    let diff_ids = diff_ids(&image.config, &config)?;
    if diff_ids.len() != image.layers.len() {
        return Err(Error::InvalidContent {
            digest: image.config.digest.to_string(),
            reason: format!(
                "the config lists {} diff_ids but manifest {} has {} layers",
                diff_ids.len(),
                image.manifest.digest,
                image.layers.len()
            ),
        });
    }
    if diff_ids.is_empty() {
        return Ok(None);
    }
    let task = progress.start(format!("unpack:{name}"), format!("unpacking to {name}"));
    let unpacked = unpack_layers(ctx, target, committed.lease.id(), image, diff_ids, name).await;
    match unpacked {
        Ok(top) => {
            task.complete();
            Ok(Some(top))
        }
        Err(e) => {
            task.fail(&e);
            Err(e)
        }
    }
}

/// Leases the chain, extracts it, labels the config; the top chainID.
async fn unpack_layers(
    ctx: &ExportContext,
    target: &UnpackTarget,
    lease: &str,
    image: &PlatformImage,
    diff_ids: Vec<Digest>,
    name: &str,
) -> Result<Digest> {
    let snapshotter_name = &target.snapshotter_name;
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in &diff_ids {
        chain.push(chain_id(chain.last(), diff_id));
    }
    // As BuildKit: leased before extraction, since a chain that exists is not
    // extracted again and so would not join the lease through the snapshotter.
    for id in &chain {
        let resource = LeaseResource {
            id: id.to_string(),
            kind: ResourceKind::Snapshot(snapshotter_name.clone()),
        };
        match ctx.leases.add_resource(lease, resource).await {
            Err(e) if !e.is_already_exists() => return Err(e.into()),
            _ => {}
        }
    }
    let mut materializer = target.materializer.clone();
    if let Some(leased) = materializer.snapshotter.with_lease(lease) {
        materializer.snapshotter = leased;
    }
    let provider = Arc::new(StoreProvider::new(
        ctx.content.clone(),
        "the export's content store",
    ));
    let layers: Vec<BlobLayer> = image
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| BlobLayer {
            descriptor: descriptor.clone(),
            diff_id,
            history: None,
            provider: provider.clone(),
        })
        .collect();
    let unpack_error = |source| Error::Unpack {
        image: name.to_string(),
        snapshotter: snapshotter_name.clone(),
        source: Box::new(source),
    };
    materializer.unpack(&layers).await.map_err(unpack_error)?;
    // The caller checked there are layers.
    let top = chain.last().cloned().ok_or_else(|| Error::InvalidContent {
        digest: image.manifest.digest.to_string(),
        reason: "no layers to unpack".into(),
    })?;
    let key = labels::gc_ref_snapshot_label(snapshotter_name);
    let mut info = ctx.content.info(&image.config.digest).await?;
    info.labels.insert(key.clone(), top.to_string());
    ctx.content.update(info, &[format!("labels.{key}")]).await?;
    Ok(top)
}

/// The image to unpack with its config: the only one of a single-platform export
/// whose platform is the host's, or the host's manifest of an index (BuildKit's
/// `platforms.Only(DefaultSpec())`, narrowed to an exact OS and architecture, the
/// matching variant first); `None` when there is none.
async fn host_image<'a>(
    ctx: &ExportContext,
    committed: &'a CommittedImage,
) -> Result<Option<(&'a PlatformImage, Map<String, Value>)>> {
    let host = Platform::host();
    let mut candidates = Vec::new();
    for image in &committed.images {
        let config = read_config(ctx, &image.config).await?;
        let platform = match &image.platform {
            Some(p) => p.clone(),
            None => strata_oci::config_platform(&config),
        };
        if platform.os == host.os && platform.architecture == host.architecture {
            let rank = u8::from(platform.variant != host.variant);
            candidates.push((rank, image, config));
        }
    }
    candidates.sort_by_key(|(rank, _, _)| *rank);
    Ok(candidates
        .into_iter()
        .next()
        .map(|(_, image, config)| (image, config)))
}

async fn read_config(ctx: &ExportContext, desc: &Descriptor) -> Result<Map<String, Value>> {
    let bytes = read_blob(ctx.content.as_ref(), desc, strata_oci::MAX_CONFIG_SIZE).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidContent {
        digest: desc.digest.to_string(),
        reason: format!("not an image config: {e}"),
    })
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(desc: &Descriptor, config: &Map<String, Value>) -> Result<Vec<Digest>> {
    strata_oci::config_diff_ids(config).map_err(|reason| Error::InvalidContent {
        digest: desc.digest.to_string(),
        reason,
    })
}
