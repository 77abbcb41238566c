//! [`prune_extracted`]: the garbage collection of a [`Materializer`]'s snapshotter —
//! extracted chains nothing references any more, and what dead processes left.
//!
//! [`Materializer`]: crate::Materializer

use std::collections::{BTreeMap, BTreeSet};

use strata_content::{ContentStore, Filter as ContentFilter};
use strata_oci::labels;
use strata_snapshotter::{Filter, Info, Kind, Snapshotter};

use crate::blob_layer::is_dead_extraction;
use crate::error::RefError;
use crate::immutable_ref::is_dead_view;

/// Removes from `snapshotter` (a [`Materializer`](crate::Materializer)'s, known to
/// containerd's GC labels as `name`, e.g. `native`):
/// - views and unfinished extractions left by processes that are no longer running;
/// - every committed snapshot (an extracted chain) that no blob of `content`
///   references with a `containerd.io/gc.ref.snapshot.<name>` label (an image unpacked
///   with `unpack=true`), directly or as the parent of a referenced one, children
///   first. A snapshot still in use (a live view on it) is kept.
///
/// Extracted base images are a cache: the next export that needs a tree extracts it
/// again. Returns the names removed.
pub async fn prune_extracted(
    snapshotter: &dyn Snapshotter,
    content: &dyn ContentStore,
    name: &str,
) -> Result<Vec<String>, RefError> {
    let mut removed = Vec::new();
    let all = snapshotter.walk(&Filter::All).await?;
    for info in &all {
        if info.kind != Kind::Committed
            && (is_dead_view(&info.name) || is_dead_extraction(&info.name))
        {
            remove(snapshotter, &info.name, &mut removed).await?;
        }
    }
    let key = labels::gc_ref_snapshot_label(name);
    let referenced = content
        .walk(&ContentFilter::HasLabel(key.clone()))
        .await
        .map_err(|source| {
            RefError::Snapshot(strata_snapshotter::Error::Metadata(format!(
                "listing the blobs referencing {name} snapshots: {source}"
            )))
        })?;
    let committed: BTreeMap<&str, &Info> = all
        .iter()
        .filter(|i| i.kind == Kind::Committed)
        .map(|i| (i.name.as_str(), i))
        .collect();
    let mut keep = BTreeSet::new();
    for blob in &referenced {
        let mut next = blob.labels.get(&key).map(String::as_str);
        while let Some(n) = next {
            if !keep.insert(n.to_string()) {
                break;
            }
            next = committed.get(n).and_then(|i| i.parent.as_deref());
        }
    }
    let mut stale: BTreeSet<&str> = committed
        .keys()
        .copied()
        .filter(|n| !keep.contains(*n))
        .collect();
    // Children first; a snapshot that cannot go (a live view) keeps its parents.
    while !stale.is_empty() {
        let leaves: Vec<&str> = stale
            .iter()
            .copied()
            .filter(|n| {
                !committed
                    .values()
                    .any(|c| c.parent.as_deref() == Some(*n) && stale.contains(c.name.as_str()))
            })
            .collect();
        if leaves.is_empty() {
            break;
        }
        for n in leaves {
            stale.remove(n);
            if let Err(e) = remove(snapshotter, n, &mut removed).await {
                tracing::debug!(snapshot = n, error = %e, "keeping an extracted snapshot in use");
                let mut parent = committed.get(n).and_then(|i| i.parent.as_deref());
                while let Some(p) = parent {
                    stale.remove(p);
                    parent = committed.get(p).and_then(|i| i.parent.as_deref());
                }
            }
        }
    }
    Ok(removed)
}

async fn remove(
    snapshotter: &dyn Snapshotter,
    name: &str,
    removed: &mut Vec<String>,
) -> Result<(), RefError> {
    snapshotter.remove(name).await?;
    removed.push(name.to_string());
    Ok(())
}
