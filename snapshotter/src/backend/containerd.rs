//! A snapshotter in a running containerd, over its snapshots service.
//!
//! [`ContainerdSnapshotter`] drives one of containerd's snapshotters (`native`,
//! `overlayfs`, …) in one containerd namespace, so a chain a containerd user prepared
//! and committed (with `ctr snapshots prepare/commit`, or by unpacking an image) can be
//! loaded as an [`ImmutableRef`](crate::ImmutableRef) by key and exported. The mounts it
//! returns are containerd's own (`bind` for native, `overlay` for overlayfs), which
//! [`TempMount`](crate::TempMount) mounts for strata's differ to read.
//!
//! containerd keeps the snapshots and their metadata; this type keeps nothing. Errors
//! are containerd's gRPC codes as typed errors naming the key: `NotFound`,
//! `AlreadyExists`, `FailedPrecondition` (containerd's "parent is not committed" and
//! "not active" answers included, which strata's contract counts as preconditions),
//! `InvalidArgument`. Field paths are checked here so a bad one is refused before
//! containerd sees it; `walk` lists the namespace's snapshots and filters them here.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_client::services::v1::snapshots as api;
use containerd_client::tonic::{self, Code};
use strata_content::ContainerdConnection;

use crate::error::{Error, Result};
use crate::mount::Mount;
use crate::snapshotter::{Filter, Info, Kind, Labels, Snapshotter, Usage};

/// containerd's snapshotter `snapshotter` (e.g. `native`, `overlayfs`) in the
/// connection's namespace.
///
/// ```no_run
/// use strata_content::ContainerdConnection;
/// use strata_snapshotter::{ContainerdSnapshotter, Snapshotter};
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
}

impl ContainerdSnapshotter {
    /// The snapshotter named `snapshotter` on the containerd behind `conn`.
    pub fn new(conn: ContainerdConnection, snapshotter: impl Into<String>) -> Self {
        ContainerdSnapshotter {
            conn,
            snapshotter: snapshotter.into(),
        }
    }

    /// The name of containerd's snapshotter this drives.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    fn client(&self) -> api::snapshots_client::SnapshotsClient<tonic::transport::Channel> {
        api::snapshots_client::SnapshotsClient::new(self.conn.channel())
            .max_decoding_message_size(16 << 20)
    }

    /// A typed error for the gRPC status of an operation `what` on snapshot `key`.
    fn err(&self, key: &str, what: &str, status: tonic::Status) -> Error {
        let msg = status.message().to_string();
        match status.code() {
            Code::NotFound => Error::NotFound(format!("{key}: {what}: {msg}")),
            Code::AlreadyExists => Error::AlreadyExists(format!("{key}: {what}: {msg}")),
            Code::FailedPrecondition => Error::FailedPrecondition {
                key: key.to_string(),
                reason: format!("{what}: {msg}"),
            },
            // containerd answers "parent is not committed" (a view or active parent)
            // with InvalidArgument; in strata's contract that is the parent's state.
            Code::InvalidArgument
                if msg.contains("not committed") || msg.contains("not active") =>
            {
                Error::FailedPrecondition {
                    key: key.to_string(),
                    reason: format!("{what}: {msg}"),
                }
            }
            Code::InvalidArgument => Error::InvalidArgument(format!("{key}: {what}: {msg}")),
            code => Error::io(
                format!(
                    "containerd at {} ({} snapshotter): {what} {key:?}: {code:?}",
                    self.conn.socket().display(),
                    self.snapshotter
                ),
                std::io::Error::other(msg),
            ),
        }
    }

    fn check_key(key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("an empty snapshot key".into()));
        }
        Ok(())
    }
}

fn time_from(ts: Option<prost_types::Timestamp>) -> SystemTime {
    ts.and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn labels_to(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn info_from_api(info: api::Info) -> Result<Info> {
    let kind = match api::Kind::try_from(info.kind) {
        Ok(api::Kind::View) => Kind::View,
        Ok(api::Kind::Active) => Kind::Active,
        Ok(api::Kind::Committed) => Kind::Committed,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "snapshot {:?} has an unknown kind {}",
                info.name, info.kind
            )))
        }
    };
    Ok(Info {
        kind,
        parent: (!info.parent.is_empty()).then_some(info.parent),
        name: info.name,
        labels: info.labels.into_iter().collect(),
        created_at: time_from(info.created_at),
        updated_at: time_from(info.updated_at),
    })
}

fn mounts_from_api(mounts: Vec<containerd_client::types::Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            mount_type: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

#[async_trait]
impl Snapshotter for ContainerdSnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        Self::check_key(key)?;
        let resp = self
            .client()
            .stat(self.conn.request(api::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "stat", s))?
            .into_inner();
        let info = resp
            .info
            .ok_or_else(|| Error::NotFound(format!("{key}: stat returned nothing")))?;
        info_from_api(info)
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
            .client()
            .update(self.conn.request(api::UpdateSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                info: Some(api::Info {
                    name: info.name.clone(),
                    parent: info.parent.clone().unwrap_or_default(),
                    kind: api::Kind::Unknown as i32,
                    created_at: None,
                    updated_at: None,
                    labels: labels_to(&info.labels),
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: fieldpaths.to_vec(),
                }),
            }))
            .await
            .map_err(|s| self.err(&key, "update", s))?
            .into_inner();
        let info = resp
            .info
            .ok_or_else(|| Error::NotFound(format!("{key}: update returned nothing")))?;
        info_from_api(info)
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        Self::check_key(key)?;
        let resp = self
            .client()
            .usage(self.conn.request(api::UsageRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "usage", s))?
            .into_inner();
        Ok(Usage {
            size: resp.size.max(0) as u64,
            inodes: resp.inodes.max(0) as u64,
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
            .client()
            .mounts(self.conn.request(api::MountsRequest {
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
            .client()
            .prepare(self.conn.request(api::PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
                parent: parent.unwrap_or_default().to_string(),
                labels: labels_to(&labels),
            }))
            .await
            .map_err(|s| self.err(key, &format!("prepare on {parent:?}"), s))?
            .into_inner();
        Ok(mounts_from_api(resp.mounts))
    }

    async fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        Self::check_key(key)?;
        let resp = self
            .client()
            .view(self.conn.request(api::ViewSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
                parent: parent.unwrap_or_default().to_string(),
                labels: labels_to(&labels),
            }))
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
        self.client()
            .commit(self.conn.request(api::CommitSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                name: name.to_string(),
                key: key.to_string(),
                labels: labels_to(&labels),
            }))
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
        self.client()
            .remove(self.conn.request(api::RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
            .map_err(|s| self.err(key, "remove", s))?;
        Ok(())
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let mut stream = self
            .client()
            .list(self.conn.request(api::ListSnapshotsRequest {
                snapshotter: self.snapshotter.clone(),
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("*", "walk", s))?
            .into_inner();
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    for info in resp.info {
                        let info = info_from_api(info)?;
                        if filter.matches(&info) {
                            out.push(info);
                        }
                    }
                }
                Ok(None) => break,
                Err(s) => return Err(self.err("*", "walk", s)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
