//! [`ImmutableRef`]: a cheap, clonable handle on one layer of a chain — a committed
//! snapshot, or a known blob extracted only when needed — and its parents.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use strata_content::ContentStore;
use strata_oci::{chain_id, Digest};
use strata_snapshotter::{
    left_by_dead_process, unique_suffix, Error, Filter, Info, Kind, Labels, Mount, Result,
    Snapshotter,
};
use tokio::sync::OnceCell;

use crate::blob::{parse_blob_labels, BlobInfo, BlobKey};
use crate::blob_layer::{BlobLayer, Materializer};
use crate::error::RefError;

/// Label holding a snapshot's description (history `created_by`).
pub const LABEL_DESCRIPTION: &str = "strata.io/description";

/// A handle on one layer of a chain: its id, parent chain, description, creation
/// time, read-only mounts, and the blob infos computed for it.
///
/// A ref is backed either by a committed snapshot ([`ImmutableRef::load`]) or by a
/// known blob ([`ImmutableRef::from_blob`]: a base image's layer). A blob-backed ref
/// is exported as its blob, byte for byte; its tree exists only once something asks
/// for its [`mounts`](ImmutableRef::mounts), when the [`Materializer`] extracts the
/// chain into its snapshotter, one committed snapshot per chainID, reused afterwards.
///
/// Cloning is cheap (an `Arc`). The first call to [`ImmutableRef::mounts`] creates a
/// read-only view of the snapshot; while it exists the snapshotter refuses to remove
/// the snapshot (it has a child). Dropping the last handle removes that view — never
/// the committed snapshot itself, unless [`ImmutableRef::remove`] asks for it.
///
/// Its operations are snapshotter operations and fail with the snapshotter's errors,
/// naming the snapshot.
#[derive(Clone)]
pub struct ImmutableRef {
    inner: Arc<Inner>,
}

struct Inner {
    snapshotter: Arc<dyn Snapshotter>,
    id: String,
    parent: Option<ImmutableRef>,
    description: String,
    created_at: SystemTime,
    blobs: Mutex<BTreeMap<BlobKey, BlobInfo>>,
    view: OnceCell<(String, Vec<Mount>)>,
    /// Set for blob-backed refs (whose `id` is their chainID).
    lazy: Option<Lazy>,
}

/// What a blob-backed ref knows besides what every ref does.
struct Lazy {
    layer: BlobLayer,
    /// `None` on a snapshot-backed parent.
    chain_id: Option<Digest>,
    materializer: Materializer,
    extracted: OnceCell<()>,
}

impl fmt::Debug for ImmutableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImmutableRef")
            .field("id", &self.inner.id)
            .field("parent", &self.parent().map(|p| p.id().to_string()))
            .field("description", &self.inner.description)
            .finish()
    }
}

impl ImmutableRef {
    /// Loads the committed snapshot `name` and its parent chain from `snapshotter`.
    /// Descriptions come from the `strata.io/description` label, blob infos from
    /// `strata.io/blob.*` labels. `NotFound` naming the snapshot if absent;
    /// `FailedPrecondition` if it (or a parent) is not committed.
    pub async fn load(snapshotter: Arc<dyn Snapshotter>, name: &str) -> Result<ImmutableRef> {
        Self::load_onto(snapshotter, name, None).await
    }

    /// [`ImmutableRef::load`], with `base` as the parent of the bottom of the chain:
    /// the snapshots are full trees diffed against `base`'s tree (directory layers on
    /// top of a base image).
    pub async fn load_onto(
        snapshotter: Arc<dyn Snapshotter>,
        name: &str,
        base: Option<ImmutableRef>,
    ) -> Result<ImmutableRef> {
        // Collect the chain top-down, then build handles bottom-up.
        let mut infos = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(key) = next {
            if infos.iter().any(|i: &Info| i.name == key) {
                return Err(Error::Metadata(format!(
                    "the parent chain of {name:?} loops at {key:?}"
                )));
            }
            let info = snapshotter.stat(&key).await?;
            if info.kind != Kind::Committed {
                return Err(Error::FailedPrecondition {
                    key,
                    reason: format!("is {:?}, not committed", info.kind),
                });
            }
            next = info.parent.clone();
            infos.push(info);
        }
        prune_dead_views(snapshotter.as_ref()).await;
        let mut parent: Option<ImmutableRef> = base;
        for info in infos.into_iter().rev() {
            let blobs = parse_blob_labels(&info.labels);
            parent = Some(ImmutableRef {
                inner: Arc::new(Inner {
                    snapshotter: snapshotter.clone(),
                    description: info
                        .labels
                        .get(LABEL_DESCRIPTION)
                        .cloned()
                        .unwrap_or_default(),
                    id: info.name,
                    parent,
                    created_at: info.created_at,
                    blobs: Mutex::new(blobs),
                    view: OnceCell::new(),
                    lazy: None,
                }),
            });
        }
        parent.ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// A blob-backed ref: `layer` on top of `parent`. Its description and creation
    /// time come from the layer's history entry. Blobs converted to other compressions
    /// earlier (recorded on the blob in the materializer's store) are found again.
    ///
    /// On a blob-backed parent (a base image's chain) the ref's id is its chainID and
    /// its tree can be extracted. On a snapshot-backed parent (a `COPY` layer on top of
    /// directory layers) its id is `<parent id>+<diffID>` and it has no chainID: it is
    /// exported as its blob, but [`mounts`](ImmutableRef::mounts) fails with
    /// [`RefError::ParentNotBlobBacked`].
    pub async fn from_blob(
        parent: Option<ImmutableRef>,
        layer: BlobLayer,
        materializer: Materializer,
    ) -> Result<ImmutableRef, RefError> {
        let (id, chain) = match &parent {
            None => {
                let c = chain_id(None, &layer.diff_id);
                (c.to_string(), Some(c))
            }
            Some(p) => match p.chain_id() {
                Some(pc) => {
                    let c = chain_id(Some(&pc), &layer.diff_id);
                    (c.to_string(), Some(c))
                }
                None => (format!("{}+{}", p.id(), layer.diff_id), None),
            },
        };
        let mut blobs = match materializer.store.info(&layer.descriptor.digest).await {
            Ok(info) => parse_blob_labels(&info.labels),
            // Not fetched yet: no conversion of it either.
            Err(e) if e.is_not_found() => BTreeMap::new(),
            Err(source) => {
                return Err(RefError::Fetch {
                    layer: layer.descriptor.digest.clone(),
                    provider: layer.provider.name(),
                    source,
                })
            }
        };
        if let Some(compression) = layer.compression() {
            blobs.insert(
                BlobKey {
                    compression,
                    source_date_epoch: None,
                    estargz: Default::default(),
                },
                BlobInfo {
                    diff_id: layer.diff_id.clone(),
                    digest: layer.descriptor.digest.clone(),
                    media_type: layer.descriptor.media_type.clone(),
                    size: layer.descriptor.size,
                    // The manifest takes a base layer's descriptor as the base has it.
                    annotations: BTreeMap::new(),
                },
            );
        }
        Ok(ImmutableRef {
            inner: Arc::new(Inner {
                snapshotter: materializer.snapshotter.clone(),
                id,
                parent,
                description: layer.created_by(),
                created_at: layer.created(),
                blobs: Mutex::new(blobs),
                view: OnceCell::new(),
                lazy: Some(Lazy {
                    layer,
                    chain_id: chain,
                    materializer,
                    extracted: OnceCell::new(),
                }),
            }),
        })
    }

    /// The layer blob this ref is backed by, for a blob-backed ref.
    pub fn blob_layer(&self) -> Option<&BlobLayer> {
        self.inner.lazy.as_ref().map(|l| &l.layer)
    }

    /// The chainID of a blob-backed ref on a blob-backed chain (the key of its
    /// extracted snapshot).
    pub fn chain_id(&self) -> Option<Digest> {
        self.inner.lazy.as_ref().and_then(|l| l.chain_id.clone())
    }

    /// Extracts a blob-backed ref's chain into its materializer's snapshotter, parents
    /// first, unless it is there; nothing for a snapshot-backed ref.
    pub async fn materialize(&self) -> Result<(), RefError> {
        let Some(lazy) = &self.inner.lazy else {
            return Ok(());
        };
        let Some(chain_id) = &lazy.chain_id else {
            return Err(RefError::ParentNotBlobBacked {
                layer: lazy.layer.descriptor.digest.clone(),
                parent: self
                    .parent()
                    .map(|p| p.id().to_string())
                    .unwrap_or_default(),
            });
        };
        lazy.extracted
            .get_or_try_init(|| async {
                if let Some(p) = self.parent() {
                    Box::pin(p.materialize()).await?;
                }
                lazy.materializer
                    .extract(&lazy.layer, chain_id, self.parent().map(|p| p.id()))
                    .await
            })
            .await?;
        Ok(())
    }

    /// The snapshot's name in its snapshotter (for a blob-backed ref, its chainID: the
    /// name of its snapshot once extracted).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The parent ref, if any.
    pub fn parent(&self) -> Option<&ImmutableRef> {
        self.inner.parent.as_ref()
    }

    /// The description (what created this snapshot), empty if none.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// When the snapshot was created.
    pub fn created_at(&self) -> SystemTime {
        self.inner.created_at
    }

    /// The snapshotter the ref lives in.
    pub fn snapshotter(&self) -> &Arc<dyn Snapshotter> {
        &self.inner.snapshotter
    }

    /// The chain from the base to this ref (base first, this ref last).
    pub fn chain(&self) -> Vec<ImmutableRef> {
        let mut chain = vec![self.clone()];
        while let Some(p) = chain.last().and_then(|r| r.parent().cloned()) {
            chain.push(p);
        }
        chain.reverse();
        chain
    }

    /// True when both handles refer to the same snapshot of the same snapshotter.
    pub fn same_snapshot(&self, other: &ImmutableRef) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.id == other.inner.id
                && std::ptr::eq(
                    Arc::as_ptr(&self.inner.snapshotter) as *const (),
                    Arc::as_ptr(&other.inner.snapshotter) as *const (),
                ))
    }

    /// Read-only mounts of the snapshot's full tree (a view, created on first use and
    /// shared by every clone). A blob-backed ref's chain is extracted first.
    pub async fn mounts(&self) -> Result<Vec<Mount>, RefError> {
        self.materialize().await?;
        let (_, mounts) = self
            .inner
            .view
            .get_or_try_init(|| async {
                let key = format!("{VIEW_PREFIX}{}/{}", self.inner.id, unique_suffix());
                let mounts = self
                    .inner
                    .snapshotter
                    .view(&key, Some(&self.inner.id), Labels::new())
                    .await?;
                Ok::<_, Error>((key, mounts))
            })
            .await?;
        Ok(mounts.clone())
    }

    /// The blob computed for this snapshot for `key`, if one was recorded.
    pub fn blob(&self, key: BlobKey) -> Option<BlobInfo> {
        self.inner.blobs.lock().ok()?.get(&key).cloned()
    }

    /// Records the blob computed for this snapshot, in memory and in the snapshot's
    /// labels (for a blob-backed ref: the labels of its blob in the store), so a later
    /// export (even by another process) reuses it.
    pub async fn set_blob(&self, key: BlobKey, info: BlobInfo) -> Result<()> {
        let label = key.label();
        let value = serde_json::to_string(&info)
            .map_err(|e| Error::Metadata(format!("encoding blob info: {e}")))?;
        if let Some(lazy) = &self.inner.lazy {
            label_blob(lazy.materializer.store.as_ref(), &lazy.layer, label, value).await;
            if let Ok(mut blobs) = self.inner.blobs.lock() {
                blobs.insert(key, info);
            }
            return Ok(());
        }
        let mut snap = self.inner.snapshotter.stat(&self.inner.id).await?;
        snap.labels.insert(label.clone(), value);
        self.inner
            .snapshotter
            .update(snap, &[format!("labels.{label}")])
            .await?;
        if let Ok(mut blobs) = self.inner.blobs.lock() {
            blobs.insert(key, info);
        }
        Ok(())
    }

    /// Releases this handle now, deterministically: when it is the last handle, its
    /// view (and, recursively, the views of parents no other handle holds) is removed
    /// before this returns. Dropping a handle does the same in a spawned task, which
    /// may not run when the runtime is shutting down; call this at the end of a
    /// program instead of relying on drop.
    pub async fn release(self) -> Result<()> {
        let mut next = Some(self);
        while let Some(r) = next.take() {
            let Ok(mut inner) = Arc::try_unwrap(r.inner) else {
                return Ok(());
            };
            if let Some((key, _)) = inner.view.take() {
                inner.snapshotter.remove(&key).await?;
            }
            next = inner.parent.take();
        }
        Ok(())
    }

    /// Removes the committed snapshot itself (after its view, if any). Fails with
    /// `FailedPrecondition` while other handles or children still use it.
    pub async fn remove(self) -> Result<()> {
        let mut inner = Arc::try_unwrap(self.inner).map_err(|i| Error::FailedPrecondition {
            key: i.id.clone(),
            reason: "other handles on this ref are alive".into(),
        })?;
        if let Some((key, _)) = inner.view.take() {
            inner.snapshotter.remove(&key).await?;
        }
        inner.snapshotter.remove(&inner.id).await?;
        Ok(())
    }
}

/// Records `label=value` on a blob-backed ref's blob in the store. Best effort: the
/// blob may not be in the store (it was never fetched), and a missing label only costs
/// a later conversion.
async fn label_blob(store: &dyn ContentStore, layer: &BlobLayer, label: String, value: String) {
    let res = async {
        let mut info = store.info(&layer.descriptor.digest).await?;
        info.labels.insert(label.clone(), value);
        store.update(info, &[format!("labels.{label}")]).await
    }
    .await;
    if let Err(e) = res {
        tracing::debug!(layer = %layer.descriptor.digest, error = %e, "recording a converted blob");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some((key, _)) = self.view.take() else {
            return;
        };
        let snapshotter = self.snapshotter.clone();
        // Removing the view is async; do it on the runtime if there is one. Without a
        // runtime the view stays behind and is found by `walk` (kind View).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = snapshotter.remove(&key).await {
                    tracing::debug!(view = %key, error = %e, "removing ref view");
                }
            });
        }
    }
}

/// Prefix of the keys of the views refs create.
const VIEW_PREFIX: &str = "strata-view/";

/// True for the key of a ref view whose process is gone (`strata-view/<id>/<pid>-…`).
pub(crate) fn is_dead_view(key: &str) -> bool {
    key.strip_prefix(VIEW_PREFIX)
        .and_then(|rest| rest.rsplit('/').next())
        .is_some_and(left_by_dead_process)
}

/// Removes views left behind by ref handles of processes that exited without
/// releasing them (their keys carry the creating pid: `strata-view/<id>/<pid>-…`), so
/// their snapshots can be removed again. Best effort: failures are only logged.
async fn prune_dead_views(snapshotter: &dyn Snapshotter) {
    let views = match snapshotter.walk(&Filter::Kind(Kind::View)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "listing views to prune");
            return;
        }
    };
    for view in views {
        if is_dead_view(&view.name) {
            if let Err(e) = snapshotter.remove(&view.name).await {
                tracing::debug!(view = %view.name, error = %e, "pruning a stale ref view");
            }
        }
    }
}
