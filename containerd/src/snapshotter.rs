//! A snapshotter in a running containerd, over its snapshots service.
//!
//! [`ContainerdSnapshotter`] drives one of containerd's snapshotters (`native`,
//! `overlayfs`, …) in one containerd namespace, so a chain a containerd user prepared
//! and committed (with `ctr snapshots prepare/commit`, or by unpacking an image) can be
//! loaded as an `ImmutableRef` by key and exported. The mounts it
//! returns are containerd's own (`bind` for native, `overlay` for overlayfs), which
//! `TempMount` mounts for strata's differ to read.
//!
//! containerd keeps the snapshots and their metadata; this type keeps nothing. Errors
//! are containerd's gRPC codes as typed errors naming the key: `NotFound`,
//! `AlreadyExists`, `FailedPrecondition` (containerd's "parent is not committed" and
//! "not active" answers included, which strata's contract counts as preconditions),
//! `InvalidArgument`. Field paths are checked here so a bad one is refused before
//! containerd sees it; `walk` lists the namespace's snapshots and filters them here.

use std::sync::Arc;

use async_trait::async_trait;
use strata_snapshotter::{Error, Filter, Info, Kind, Labels, Mount, Result, Snapshotter, Usage};
use tonic::Code;

use crate::connection::{all_messages, ContainerdConnection};
use crate::convert::{
    field_mask, labels_to, mounts_from_api, size_from, snapshot_error, snapshot_info_from_api,
    snapshot_info_to_api,
};
use crate::proto::snapshots;

/// containerd's snapshotter `snapshotter` (e.g. `native`, `overlayfs`) in the
/// connection's namespace.
///
/// ```no_run
/// use strata_containerd::{ContainerdConnection, ContainerdSnapshotter};
/// use strata_snapshotter::Snapshotter;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = ContainerdConnection::connect("/run/containerd/containerd.sock", "default").await?;
/// let snapshots = ContainerdSnapshotter::new(conn, "overlayfs");
/// println!("{:?}", snapshots.stat("my-committed-layer").await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ContainerdSnapshotter {
    conn: ContainerdConnection,
    snapshotter: String,
    /// The lease the snapshots it creates join (`with_lease`).
    lease: Option<String>,
}

impl ContainerdSnapshotter {
    /// The snapshotter named `snapshotter` on the containerd behind `conn`.
    pub fn new(conn: ContainerdConnection, snapshotter: impl Into<String>) -> Self {
        ContainerdSnapshotter {
            conn,
            snapshotter: snapshotter.into(),
            lease: None,
        }
    }

    /// The same snapshotter with every snapshot it prepares, views or commits added to
    /// containerd's lease `lease` (the `containerd-lease` header), as containerd's own
    /// unpacker works, so containerd's garbage collector keeps them until the lease
    /// goes.
    pub fn leased(&self, lease: impl Into<String>) -> ContainerdSnapshotter {
        ContainerdSnapshotter {
            lease: Some(lease.into()),
            ..self.clone()
        }
    }

    /// The name of containerd's snapshotter this drives.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// A typed error for the gRPC status of an operation `what` on snapshot `key`.
    fn err(&self, key: &str, what: &str, status: tonic::Status) -> Error {
        snapshot_error(self.conn.socket(), &self.snapshotter, key, what, status)
    }

    fn check_key(key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("an empty snapshot key".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Snapshotter for ContainerdSnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        Self::check_key(key)?;
        let resp = self
            .conn
            .snapshots()
            .stat(self.conn.request(snapshots::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "stat", s))?
            .into_inner();
        let info = resp
            .info
            .ok_or_else(|| Error::NotFound(format!("{key}: stat returned nothing")))?;
        snapshot_info_from_api(info)
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let key = info.name.clone();
        for p in fieldpaths {
            let ok = p == "labels" || p.strip_prefix("labels.").is_some_and(|k| !k.is_empty());
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "cannot update field {p:?} of snapshot {key:?}: only labels and labels.<key>"
                )));
            }
        }
        let resp = self
            .conn
            .snapshots()
            .update(self.conn.request(snapshots::UpdateSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                info: Some(snapshot_info_to_api(&info)),
                update_mask: field_mask(fieldpaths),
            }))
            .await
            .map_err(|s| self.err(&key, "update", s))?
            .into_inner();
        let info = resp
            .info
            .ok_or_else(|| Error::NotFound(format!("{key}: update returned nothing")))?;
        snapshot_info_from_api(info)
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        Self::check_key(key)?;
        let resp = self
            .conn
            .snapshots()
            .usage(self.conn.request(snapshots::UsageRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "usage", s))?
            .into_inner();
        Ok(Usage {
            size: size_from(resp.size),
            inodes: size_from(resp.inodes),
        })
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Self::check_key(key)?;
        // containerd hands out mounts of committed snapshots too (as their parent's
        // tree); strata's contract is that committed snapshots have none.
        if self.stat(key).await?.kind == Kind::Committed {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: "committed snapshots have no mounts; create a view of it".into(),
            });
        }
        let resp = self
            .conn
            .snapshots()
            .mounts(self.conn.request(snapshots::MountsRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "mounts", s))?
            .into_inner();
        Ok(mounts_from_api(resp.mounts))
    }

    async fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        Self::check_key(key)?;
        let resp = self
            .conn
            .snapshots()
            .prepare(self.conn.request_in_lease(
                snapshots::PrepareSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: key.to_string(),
                    parent: parent.unwrap_or_default().to_string(),
                    labels: labels_to(&labels),
                },
                self.lease.as_deref(),
            ))
            .await
            .map_err(|s| self.err(key, &format!("prepare on {parent:?}"), s))?
            .into_inner();
        Ok(mounts_from_api(resp.mounts))
    }

    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        Self::check_key(key)?;
        let resp = self
            .conn
            .snapshots()
            .view(self.conn.request_in_lease(
                snapshots::ViewSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: key.to_string(),
                    parent: parent.unwrap_or_default().to_string(),
                    labels: labels_to(&labels),
                },
                self.lease.as_deref(),
            ))
            .await
            .map_err(|s| self.err(key, &format!("view of {parent:?}"), s))?
            .into_inner();
        Ok(mounts_from_api(resp.mounts))
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        Self::check_key(key)?;
        Self::check_key(name)?;
        // containerd 1.6 hands a commit of a view (or of a committed snapshot) to the
        // backend, which fails with an I/O error; strata's contract is that only
        // active snapshots can be committed.
        let kind = self.stat(key).await?.kind;
        if kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: format!("only active snapshots can be committed; {key:?} is {kind:?}"),
            });
        }
        self.conn
            .snapshots()
            .commit(self.conn.request_in_lease(
                snapshots::CommitSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    name: name.to_string(),
                    key: key.to_string(),
                    labels: labels_to(&labels),
                },
                self.lease.as_deref(),
            ))
            .await
            .map_err(|s| {
                let what = format!("commit as {name:?}");
                match s.code() {
                    Code::AlreadyExists => self.err(name, &format!("commit of {key:?}"), s),
                    _ => self.err(key, &what, s),
                }
            })?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        Self::check_key(key)?;
        self.conn
            .snapshots()
            .remove(self.conn.request(snapshots::RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "remove", s))?;
        Ok(())
    }

    fn with_lease(&self, lease: &str) -> Option<Arc<dyn Snapshotter>> {
        Some(Arc::new(self.leased(lease)))
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let stream = self
            .conn
            .snapshots()
            .list(self.conn.request(snapshots::ListSnapshotsRequest {
                snapshotter: self.snapshotter.clone(),
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("*", "walk", s))?
            .into_inner();
        let responses = all_messages(stream)
            .await
            .map_err(|s| self.err("*", "walk", s))?;
        let mut out = Vec::new();
        for info in responses.into_iter().flat_map(|r| r.info) {
            let info = snapshot_info_from_api(info)?;
            if filter.matches(&info) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
