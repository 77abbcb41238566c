//! The layers of an exported chain of [`ImmutableRef`]s, ready to scan
//! ([`layers_of_chain`] → [`ChainLayers`]): a snapshot-backed ref is read from its
//! mounted tree (a few files opened, nothing extracted), a blob-backed ref (a base
//! image's layer) from its blob, decompressed by strata-differ as it streams.

use std::sync::Arc;

use strata_cache::ImmutableRef;
use strata_content::ContentStore;
use strata_differ::{open_layer_tar, DecompressionLimit};
use strata_oci::Digest;
use strata_snapshotter::{Kind, TempMount};

use crate::error::SbomError;
use crate::scan::{scan_layers, Inventory, Layer, ScanLimits};

/// The layers of a chain, and the mounts their trees are read through (kept mounted
/// until the scan is done).
pub struct ChainLayers {
    layers: Vec<Layer>,
    mounts: Vec<TempMount>,
}

impl std::fmt::Debug for ChainLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainLayers")
            .field("layers", &self.layers)
            .field("mounts", &self.mounts.len())
            .finish()
    }
}

impl ChainLayers {
    /// Scans the chain ([`scan_layers`]); the mounts are released afterwards. Blocking
    /// (and a blob's reader blocks on the runtime): call it on a blocking thread.
    pub fn scan(self, limits: &ScanLimits) -> Result<Inventory, SbomError> {
        let ChainLayers { layers, mounts } = self;
        let inventory = scan_layers(layers, limits);
        drop(mounts);
        inventory
    }

    /// The layers, base first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
}

/// True when `r` is a blob-backed ref whose chain has been extracted (a committed
/// snapshot named by its chainID in its snapshotter).
async fn extracted(r: &ImmutableRef) -> bool {
    match r.chain_id() {
        Some(chain_id) => r
            .snapshotter()
            .stat(&chain_id.to_string())
            .await
            .is_ok_and(|info| info.kind == Kind::Committed),
        None => false,
    }
}

/// The layers of `chain` (base first, as the exporter computed it: each ref with the
/// diffID of its layer, which the packages are attributed to). A
/// snapshot-backed ref is read from its tree ([`ImmutableRef::mounts`], mounted if it
/// is an overlay), and so is a blob-backed ref whose chain is already extracted; any
/// other blob-backed ref from its layer blob in `store` (fetched from its provider
/// first when the store lacks it; its chain is not extracted for this). Must be called
/// within a tokio runtime.
pub async fn layers_of_chain(
    chain: &[(ImmutableRef, Digest)],
    store: &Arc<dyn ContentStore>,
) -> Result<ChainLayers, SbomError> {
    let mut out = ChainLayers {
        layers: Vec::with_capacity(chain.len()),
        mounts: Vec::new(),
    };
    for (r, diff_id) in chain {
        let diff_id = diff_id.clone();
        let ref_error = |source| SbomError::Ref {
            layer: diff_id.clone(),
            reference: r.id().to_string(),
            source: Box::new(source),
        };
        let blob = match r.blob_layer() {
            // A base layer whose chain is extracted already (a child's diff needed
            // its tree) is read from that tree: a few files instead of the blob.
            Some(_) if extracted(r).await => None,
            other => other,
        };
        if let Some(blob) = blob {
            blob.fetch_into(store).await.map_err(ref_error)?;
            let tar = open_layer_tar(
                Arc::clone(store),
                &blob.descriptor,
                DecompressionLimit::DEFAULT,
            )
            .await
            .map_err(|source| SbomError::Blob {
                layer: diff_id.clone(),
                source: Box::new(source),
            })?;
            out.layers.push(Layer::tar(blob.diff_id.clone(), tar));
        } else {
            let mounts = r.mounts().await.map_err(ref_error)?;
            let mount = TempMount::mount(&mounts).map_err(|source| SbomError::Mount {
                layer: diff_id.clone(),
                reference: r.id().to_string(),
                source: Box::new(source),
            })?;
            out.layers.push(Layer::tree(diff_id, mount.path()));
            out.mounts.push(mount);
        }
    }
    Ok(out)
}
