//! containerd's `leases.Manager`: [`Lease`]s holding [`LeaseResource`]s (content,
//! ingests, snapshots) from garbage collection, and [`LeaseGuard`], a lease held for
//! the duration of one piece of work and released explicitly when it is done.

mod guard;

pub use guard::LeaseGuard;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::label::Labels;
use crate::unix_time::{format_rfc3339, parse_rfc3339, to_unix_nanos};
use strata_oci::labels as gc_labels;

/// A lease: a set of resources kept from GC until the lease is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id.
    pub id: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Its labels.
    pub labels: Labels,
}

/// What kind of resource a lease holds. Its string form (`content`, `ingests`,
/// `snapshots/<snapshotter>`, containerd's resource types) is used only where a
/// resource is stored or sent to containerd: [`fmt::Display`] writes it, [`FromStr`]
/// reads it back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// A committed blob; the resource id is its digest.
    Content,
    /// An ingest in progress; the resource id is its ref.
    Ingest,
    /// A snapshot of the named snapshotter; the resource id is its key.
    Snapshot(String),
    /// A type strata does not model (another containerd client's, such as a
    /// sandbox): kept and listed as it came, never followed by GC.
    Other(String),
}

impl ResourceKind {
    const CONTENT: &'static str = "content";
    const INGESTS: &'static str = "ingests";
    const SNAPSHOTS_PREFIX: &'static str = "snapshots/";
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceKind::Content => f.write_str(Self::CONTENT),
            ResourceKind::Ingest => f.write_str(Self::INGESTS),
            ResourceKind::Snapshot(snapshotter) => {
                write!(f, "{}{snapshotter}", Self::SNAPSHOTS_PREFIX)
            }
            ResourceKind::Other(kind) => f.write_str(kind),
        }
    }
}

impl FromStr for ResourceKind {
    type Err = Error;

    /// Reads containerd's resource type; a type it does not model is [`ResourceKind::Other`],
    /// an empty one an `InvalidArgument`.
    fn from_str(s: &str) -> Result<ResourceKind> {
        match s {
            Self::CONTENT => Ok(ResourceKind::Content),
            Self::INGESTS => Ok(ResourceKind::Ingest),
            _ => match s.strip_prefix(Self::SNAPSHOTS_PREFIX) {
                Some(snapshotter) if !snapshotter.is_empty() => {
                    Ok(ResourceKind::Snapshot(snapshotter.to_string()))
                }
                _ if s.is_empty() => Err(Error::InvalidArgument(
                    "empty lease resource type (expected content, ingests, \
                     snapshots/<snapshotter>, …)"
                        .into(),
                )),
                _ => Ok(ResourceKind::Other(s.to_string())),
            },
        }
    }
}

/// One resource held by a lease.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseResource {
    /// The resource id (a digest for content, a ref for an ingest, a key for a snapshot).
    pub id: String,
    /// What kind of resource it is.
    pub kind: ResourceKind,
}

impl LeaseResource {
    /// The committed blob `digest`.
    pub fn content(digest: &strata_oci::Digest) -> LeaseResource {
        LeaseResource {
            id: digest.to_string(),
            kind: ResourceKind::Content,
        }
    }

    /// The ingest `reference`.
    pub fn ingest(reference: &str) -> LeaseResource {
        LeaseResource {
            id: reference.to_string(),
            kind: ResourceKind::Ingest,
        }
    }
}

/// containerd's `leases.Manager`.
#[async_trait]
pub trait LeaseManager: Send + Sync {
    /// Creates a lease; a random id when `id` is `None`. `AlreadyExists` if taken.
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease>;
    /// Deletes a lease; its resources become collectable.
    async fn delete_lease(&self, id: &str) -> Result<()>;
    /// Every lease, sorted by id.
    async fn list_leases(&self) -> Result<Vec<Lease>>;
    /// Adds a resource to a lease.
    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()>;
    /// Removes a resource from a lease.
    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()>;
    /// The resources of a lease, sorted.
    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>>;
}

/// The id of a lease being created, by the rules every backend follows: `requested`,
/// or a new UUID when none is requested; an empty id is an `InvalidArgument`. For
/// [`LeaseManager::create_lease`] implementations outside this crate (the containerd
/// backend).
pub fn new_lease_id(requested: Option<&str>) -> Result<String> {
    match requested {
        Some("") => Err(Error::InvalidArgument("empty lease id".into())),
        Some(id) => Ok(id.to_string()),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// Whether labels carry `containerd.io/gc.expire` with an RFC 3339 time before `now`.
/// A value that does not parse never expires (containerd ignores it too).
pub(crate) fn lease_expired(labels: &Labels, now: SystemTime) -> bool {
    let now = i128::from(to_unix_nanos(now));
    labels
        .get(gc_labels::GC_EXPIRE)
        .and_then(|v| parse_rfc3339(v))
        .is_some_and(|expires| expires < now)
}

/// Whether labels carry [`OWNER_LABEL`](crate::OWNER_LABEL) naming a process that is
/// certainly dead (see [`ProcessOwner::is_dead`](crate::ProcessOwner::is_dead)).
pub(crate) fn lease_owner_dead(labels: &Labels) -> bool {
    crate::owner::recorded_owner_is_dead(labels.get(crate::owner::OWNER_LABEL).map(String::as_str))
}

/// The `containerd.io/gc.expire` value for a lease that expires at `at` (RFC 3339, UTC).
pub(crate) fn expiry_label_value(at: SystemTime) -> String {
    format_rfc3339(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let mut l = Labels::new();
        assert!(!lease_expired(&l, SystemTime::now()));
        l.insert(gc_labels::GC_EXPIRE.into(), "2001-02-03T04:05:06Z".into());
        assert!(lease_expired(&l, SystemTime::now()));
        l.insert(
            gc_labels::GC_EXPIRE.into(),
            "2999-02-03T04:05:06+02:00".into(),
        );
        assert!(!lease_expired(&l, SystemTime::now()));
        let soon = SystemTime::now() + std::time::Duration::from_secs(60);
        l.insert(gc_labels::GC_EXPIRE.into(), expiry_label_value(soon));
        assert!(!lease_expired(&l, SystemTime::now()));
        assert!(lease_expired(&l, soon + std::time::Duration::from_secs(1)));
    }

    #[test]
    fn resource_kinds_keep_containerds_strings() {
        for (kind, s) in [
            (ResourceKind::Content, "content"),
            (ResourceKind::Ingest, "ingests"),
            (
                ResourceKind::Snapshot("overlayfs".into()),
                "snapshots/overlayfs",
            ),
        ] {
            assert_eq!(kind.to_string(), s);
            assert_eq!(s.parse::<ResourceKind>().unwrap(), kind);
        }
        // Types strata does not model (other clients') are kept as they came.
        for other in ["images", "snapshots/", "Content", "sandboxes"] {
            let kind = other.parse::<ResourceKind>().unwrap();
            assert_eq!(kind, ResourceKind::Other(other.to_string()));
            assert_eq!(kind.to_string(), other);
        }
        assert!(matches!(
            "".parse::<ResourceKind>(),
            Err(Error::InvalidArgument(m)) if m.contains("empty")
        ));
    }
}
