//! Garbage collection: the [`GarbageCollector`] contract, and its mark phase, shared by
//! every backend: containerd's rules (`metadata/gc.go`) restricted to content and
//! ingests.
//!
//! Roots are: the target of every image record (and digests named by `gc.ref.content*`
//! labels on the record), every `content` resource of a lease that has not expired
//! (not followed further when the lease is labelled `containerd.io/gc.flat`), and every
//! blob labelled `containerd.io/gc.root`. From a root, `containerd.io/gc.ref.content`
//! and `containerd.io/gc.ref.content.<anything>` labels are followed; their values are
//! digests (values that are not digests are ignored, as containerd does). Leased
//! ingests are kept; unleased ingests are removed once their expiry has passed.
//!
//! Dead exports: a lease labelled [`OWNER_LABEL`](crate::OWNER_LABEL) (every
//! [`LeaseGuard`](crate::LeaseGuard) is) whose [`ProcessOwner`](crate::ProcessOwner) is
//! dead is deleted as an expired one is, before the mark, so the blobs only it held are
//! swept. A store that records ingests' owners (the local store) also removes, first,
//! every ingest no live writer holds, no remaining lease holds and whose owner is dead.
//! A live process's leases and ingests are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::Result;
use crate::image::Image;
use crate::label::Labels;
use crate::lease::{lease_expired, lease_owner_dead, Lease, LeaseResource, ResourceKind};
use strata_oci::labels;
use strata_oci::Digest;

/// What one garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed, sorted.
    pub removed: Vec<Digest>,
    /// Bytes freed by removing them.
    pub bytes_freed: u64,
    /// Ingests removed (expired and not leased, or left by a dead process), sorted.
    /// A store that reclaims dead processes' ingests and leases when it is opened
    /// reports those in its first collection.
    pub removed_ingests: Vec<String>,
    /// Leases deleted (expired, or owned by a dead process), sorted.
    pub removed_leases: Vec<String>,
}

/// containerd's GC over content: mark from roots (image records, leases, blobs
/// labelled `containerd.io/gc.root`) following `containerd.io/gc.ref.content*` labels,
/// sweep the rest.
#[async_trait]
pub trait GarbageCollector: Send + Sync {
    /// Runs one mark-and-sweep and reports what it removed.
    async fn garbage_collect(&self) -> Result<GcReport>;
}

/// Digests referenced by `labels`.
pub(crate) fn content_refs(labels: &Labels) -> impl Iterator<Item = Digest> + '_ {
    labels
        .iter()
        .filter(|(k, _)| labels::is_gc_ref_content(k))
        .filter_map(|(_, v)| Digest::parse(v).ok())
}

/// What the mark phase decided.
pub(crate) struct Marked {
    /// Leases whose `gc.expire` has passed or whose owner is dead: delete them.
    pub expired_leases: Vec<String>,
    /// Blobs to keep.
    pub live: BTreeSet<Digest>,
    /// Ingest refs held by a live lease.
    pub leased_ingests: BTreeSet<String>,
}

/// Marks what is reachable. `blobs` maps every committed blob to its labels.
pub(crate) fn mark(
    blobs: &BTreeMap<Digest, Labels>,
    images: &[Image],
    leases: &[(Lease, Vec<LeaseResource>)],
    now: SystemTime,
) -> Marked {
    let mut expired_leases = Vec::new();
    let mut leased_ingests = BTreeSet::new();
    // (digest, follow references?)
    let mut work: Vec<(Digest, bool)> = Vec::new();
    for image in images {
        work.push((image.target.digest.clone(), true));
        work.extend(content_refs(&image.labels).map(|d| (d, true)));
    }
    for (lease, resources) in leases {
        if lease_expired(&lease.labels, now) || lease_owner_dead(&lease.labels) {
            expired_leases.push(lease.id.clone());
            continue;
        }
        let flat = lease.labels.contains_key(labels::GC_FLAT);
        for r in resources {
            match r.kind {
                ResourceKind::Content => {
                    if let Ok(d) = Digest::parse(&r.id) {
                        work.push((d, !flat));
                    }
                }
                ResourceKind::Ingest => {
                    leased_ingests.insert(r.id.clone());
                }
                ResourceKind::Snapshot(_) | ResourceKind::Other(_) => {}
            }
        }
    }
    for (d, l) in blobs {
        if l.contains_key(labels::GC_ROOT) {
            work.push((d.clone(), true));
        }
    }
    let mut live = BTreeSet::new();
    let mut followed = BTreeSet::new();
    while let Some((d, follow)) = work.pop() {
        live.insert(d.clone());
        if !follow || !followed.insert(d.clone()) {
            continue;
        }
        if let Some(l) = blobs.get(&d) {
            work.extend(content_refs(l).map(|r| (r, true)));
        }
    }
    Marked {
        expired_leases,
        live,
        leased_ingests,
    }
}

/// How long an ingest opened outside a lease survives without being committed before
/// GC may remove it (containerd uses the same 24 hours).
pub(crate) const INGEST_EXPIRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_keys() {
        assert!(labels::is_gc_ref_content("containerd.io/gc.ref.content"));
        assert!(labels::is_gc_ref_content(
            "containerd.io/gc.ref.content.l.0"
        ));
        assert!(!labels::is_gc_ref_content("containerd.io/gc.ref.contentx"));
        assert!(!labels::is_gc_ref_content(
            "containerd.io/gc.ref.snapshot.overlayfs"
        ));
    }
}
