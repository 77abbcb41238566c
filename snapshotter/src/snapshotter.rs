//! The [`Snapshotter`] trait, with containerd's `snapshots.Snapshotter` semantics.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mount::Mount;

/// Labels on a snapshot, sorted.
pub type Labels = BTreeMap<String, String>;

/// The kind of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only view of a committed snapshot (from [`Snapshotter::view`]).
    View,
    /// A writable snapshot in progress (from [`Snapshotter::prepare`]).
    Active,
    /// An immutable snapshot (from [`Snapshotter::commit`]); can be a parent.
    Committed,
}

/// What a snapshotter knows about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Its kind.
    pub kind: Kind,
    /// Its key (active/view) or name (committed).
    pub name: String,
    /// The committed parent's name, if any.
    pub parent: Option<String>,
    /// Its labels.
    pub labels: Labels,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last updated.
    pub updated_at: SystemTime,
}

/// Disk usage of one snapshot (its own layer, not its parents').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes used.
    pub size: u64,
    /// Inodes used.
    pub inodes: u64,
}

/// Which snapshots a [`Snapshotter::walk`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every snapshot.
    All,
    /// Snapshots of this kind.
    Kind(Kind),
    /// Snapshots whose parent is this name.
    Parent(String),
    /// Snapshots that carry this label (any value).
    HasLabel(String),
    /// Snapshots whose label equals this value.
    LabelEquals(String, String),
    /// Snapshots that match every filter.
    And(Vec<Filter>),
}

impl Filter {
    /// Whether `info` passes this filter.
    pub fn matches(&self, info: &Info) -> bool {
        match self {
            Filter::All => true,
            Filter::Kind(k) => info.kind == *k,
            Filter::Parent(p) => info.parent.as_deref() == Some(p.as_str()),
            Filter::HasLabel(k) => info.labels.contains_key(k),
            Filter::LabelEquals(k, v) => info.labels.get(k) == Some(v),
            Filter::And(fs) => fs.iter().all(|f| f.matches(info)),
        }
    }
}

/// containerd's snapshotter: a tree of committed, immutable snapshots, and active or
/// view snapshots on top of them.
#[async_trait]
pub trait Snapshotter: Send + Sync {
    /// Information on the snapshot `key`; `NotFound` naming it when absent.
    async fn stat(&self, key: &str) -> Result<Info>;
    /// Updates the fields named by `fieldpaths` (`labels`, `labels.<key>`; empty means
    /// all labels) from `info`; returns the new info.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;
    /// Disk usage of the snapshot `key`.
    async fn usage(&self, key: &str) -> Result<Usage>;
    /// The mounts of an active or view snapshot.
    async fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Creates an active snapshot `key` on top of committed `parent`; returns its mounts.
    async fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;
    /// Creates a read-only view `key` of committed `parent`; returns its mounts.
    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;
    /// Commits active snapshot `key` as immutable snapshot `name`.
    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;
    /// Removes a snapshot; refuses (`FailedPrecondition`) one that has children.
    async fn remove(&self, key: &str) -> Result<()>;
    /// Every snapshot that passes `filter`, sorted by name.
    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>>;

    /// The same snapshotter with every snapshot it creates (prepared, viewed or
    /// committed) held by the content store's lease `lease`, as containerd's
    /// `containerd-lease` header does, so its garbage collector cannot remove them
    /// before something else references them. `None` (the default) for backends whose
    /// snapshots no collector removes.
    fn with_lease(&self, lease: &str) -> Option<std::sync::Arc<dyn Snapshotter>> {
        let _ = lease;
        None
    }
}
