//! Every conversion between containerd's API messages and strata's types, in one
//! place: times, labels, field masks, descriptors, content infos and ingest statuses,
//! image records, snapshot infos and mounts, content filters, and gRPC statuses as the
//! typed errors of the content store and of the snapshotter.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use strata_content::{Error, Filter, Image, Info, Lease, LeaseResource, Result, Status};
use strata_oci::{Descriptor, Digest};
use strata_snapshotter::{Kind, Mount};
use tonic::Code;

use crate::proto::{content, images, leases, snapshots, types};

/// A containerd timestamp as a time; a missing or out-of-range one is the epoch.
pub(crate) fn time_from(ts: Option<prost_types::Timestamp>) -> SystemTime {
    ts.and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// containerd's labels as strata's (sorted) labels.
pub(crate) fn labels_from(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// strata's labels (content or snapshot) as containerd's.
pub(crate) fn labels_to(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Field paths (`labels`, `labels.<key>`, …) as a protobuf field mask.
pub(crate) fn field_mask(paths: &[String]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.to_vec(),
    })
}

/// A non-negative protobuf integer as a size or offset (negative ones are 0).
pub(crate) fn size_from(n: i64) -> u64 {
    n.max(0) as u64
}

pub(crate) fn lease_from_api(lease: leases::Lease) -> Lease {
    Lease {
        id: lease.id,
        created_at: time_from(lease.created_at),
        labels: labels_from(lease.labels),
    }
}

pub(crate) fn resource_to_api(resource: LeaseResource) -> leases::Resource {
    leases::Resource {
        id: resource.id,
        r#type: resource.kind.to_string(),
    }
}

pub(crate) fn resource_from_api(resource: leases::Resource) -> Result<LeaseResource> {
    Ok(LeaseResource {
        kind: resource.r#type.parse()?,
        id: resource.id,
    })
}

pub(crate) fn info_from_api(info: content::Info) -> Result<Info> {
    Ok(Info {
        digest: Digest::parse(&info.digest)?,
        size: size_from(info.size),
        created_at: time_from(info.created_at),
        updated_at: time_from(info.updated_at),
        labels: labels_from(info.labels),
    })
}

/// The parts of `info` containerd updates (digest, size and labels).
pub(crate) fn info_to_api(info: &Info) -> content::Info {
    content::Info {
        digest: info.digest.to_string(),
        size: info.size as i64,
        created_at: None,
        updated_at: None,
        labels: labels_to(&info.labels),
    }
}

pub(crate) fn status_from_api(st: content::Status) -> Result<Status> {
    Ok(Status {
        expected: if st.expected.is_empty() {
            None
        } else {
            Some(Digest::parse(&st.expected)?)
        },
        reference: st.r#ref,
        offset: size_from(st.offset),
        total: size_from(st.total),
        started_at: time_from(st.started_at),
        updated_at: time_from(st.updated_at),
    })
}

fn descriptor_to_api(d: &Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size as i64,
        annotations: labels_to(&d.annotations),
    }
}

fn descriptor_from_api(d: types::Descriptor) -> Result<Descriptor> {
    let mut out = Descriptor::new(d.media_type, Digest::parse(&d.digest)?, size_from(d.size));
    out.annotations = labels_from(d.annotations);
    Ok(out)
}

pub(crate) fn image_from_api(img: images::Image) -> Result<Image> {
    let target = img.target.ok_or_else(|| {
        Error::InvalidArgument(format!("containerd image {:?} has no target", img.name))
    })?;
    Ok(Image {
        target: descriptor_from_api(target)?,
        name: img.name,
        labels: labels_from(img.labels),
        created_at: time_from(img.created_at),
        updated_at: time_from(img.updated_at),
    })
}

pub(crate) fn image_to_api(img: &Image) -> images::Image {
    images::Image {
        name: img.name.clone(),
        labels: labels_to(&img.labels),
        target: Some(descriptor_to_api(&img.target)),
        created_at: None,
        updated_at: None,
    }
}

pub(crate) fn snapshot_info_from_api(
    info: snapshots::Info,
) -> strata_snapshotter::Result<strata_snapshotter::Info> {
    let kind = match snapshots::Kind::try_from(info.kind) {
        Ok(snapshots::Kind::View) => Kind::View,
        Ok(snapshots::Kind::Active) => Kind::Active,
        Ok(snapshots::Kind::Committed) => Kind::Committed,
        _ => {
            return Err(strata_snapshotter::Error::InvalidArgument(format!(
                "snapshot {:?} has an unknown kind {}",
                info.name, info.kind
            )))
        }
    };
    Ok(strata_snapshotter::Info {
        kind,
        parent: (!info.parent.is_empty()).then_some(info.parent),
        name: info.name,
        labels: labels_from(info.labels),
        created_at: time_from(info.created_at),
        updated_at: time_from(info.updated_at),
    })
}

/// The parts of `info` containerd updates (name, parent and labels).
pub(crate) fn snapshot_info_to_api(info: &strata_snapshotter::Info) -> snapshots::Info {
    snapshots::Info {
        name: info.name.clone(),
        parent: info.parent.clone().unwrap_or_default(),
        kind: snapshots::Kind::Unknown as i32,
        created_at: None,
        updated_at: None,
        labels: labels_to(&info.labels),
    }
}

pub(crate) fn mounts_from_api(mounts: Vec<types::Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            mount_type: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

/// A containerd filter string quoted the way its filter parser reads quoted strings.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `filter` in disjunctive normal form: a list of alternatives (containerd ORs the
/// filter strings it is given), each a list of conditions (ANDed, comma-separated).
/// `None` when it would be too large to be worth sending; the caller then filters
/// on this side only.
pub(crate) fn to_containerd_filters(filter: &Filter) -> Option<Vec<Vec<String>>> {
    const MAX_ALTERNATIVES: usize = 64;
    let out = match filter {
        Filter::All => vec![Vec::new()],
        Filter::HasLabel(k) => vec![vec![format!("labels.{}", quote(k))]],
        Filter::LabelEquals(k, v) => vec![vec![format!("labels.{}=={}", quote(k), quote(v))]],
        Filter::Or(fs) => {
            let mut out = Vec::new();
            for f in fs {
                out.extend(to_containerd_filters(f)?);
            }
            out
        }
        Filter::And(fs) => {
            let mut out = vec![Vec::new()];
            for f in fs {
                let alts = to_containerd_filters(f)?;
                let mut next = Vec::new();
                for a in &out {
                    for b in &alts {
                        let mut c: Vec<String> = a.clone();
                        c.extend(b.iter().cloned());
                        next.push(c);
                    }
                }
                out = next;
                if out.len() > MAX_ALTERNATIVES {
                    return None;
                }
            }
            out
        }
    };
    (out.len() <= MAX_ALTERNATIVES).then_some(out)
}

/// A gRPC status of the content, leases, images or namespaces request to containerd at
/// `socket` that was doing `what`, as a content-store error: `NotFound`,
/// `AlreadyExists`, `FailedPrecondition` (a ref containerd reports locked too),
/// `InvalidArgument`, and `Unavailable` naming the socket for transport failures.
pub(crate) fn content_error(socket: &Path, what: &str, status: tonic::Status) -> Error {
    let msg = status.message();
    match status.code() {
        Code::NotFound => Error::NotFound(format!("{what}: {msg}")),
        Code::AlreadyExists => Error::AlreadyExists(format!("{what}: {msg}")),
        Code::FailedPrecondition | Code::OutOfRange => {
            Error::FailedPrecondition(format!("{what}: {msg}"))
        }
        Code::InvalidArgument => Error::InvalidArgument(format!("{what}: {msg}")),
        Code::Unavailable if msg.contains("locked") => {
            Error::FailedPrecondition(format!("{what}: {msg}"))
        }
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
            Error::Unavailable(format!("containerd at {}: {what}: {msg}", socket.display()))
        }
        Code::Unknown if msg.contains("transport") || msg.contains("connection") => {
            Error::Unavailable(format!("containerd at {}: {what}: {msg}", socket.display()))
        }
        code => Error::io(
            format!("containerd at {}: {what}: {code:?}", socket.display()),
            std::io::Error::other(msg.to_string()),
        ),
    }
}

/// A gRPC status of the snapshots request doing `what` on snapshot `key` of
/// containerd's snapshotter `snapshotter` at `socket`, as a snapshotter error naming
/// the key. containerd answers "parent is not committed" and "not active" with
/// `InvalidArgument`; in strata's contract those are the parent's state, so
/// `FailedPrecondition`.
pub(crate) fn snapshot_error(
    socket: &Path,
    snapshotter: &str,
    key: &str,
    what: &str,
    status: tonic::Status,
) -> strata_snapshotter::Error {
    use strata_snapshotter::Error;
    let msg = status.message().to_string();
    match status.code() {
        Code::NotFound => Error::NotFound(format!("{key}: {what}: {msg}")),
        Code::AlreadyExists => Error::AlreadyExists(format!("{key}: {what}: {msg}")),
        Code::FailedPrecondition => Error::FailedPrecondition {
            key: key.to_string(),
            reason: format!("{what}: {msg}"),
        },
        Code::InvalidArgument if msg.contains("not committed") || msg.contains("not active") => {
            Error::FailedPrecondition {
                key: key.to_string(),
                reason: format!("{what}: {msg}"),
            }
        }
        Code::InvalidArgument => Error::InvalidArgument(format!("{key}: {what}: {msg}")),
        code => Error::io(
            format!(
                "containerd at {} ({snapshotter} snapshotter): {what} {key:?}: {code:?}",
                socket.display()
            ),
            std::io::Error::other(msg),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_containerd_syntax() {
        let f = Filter::And(vec![
            Filter::Or(vec![
                Filter::HasLabel("a".into()),
                Filter::LabelEquals("b".into(), "x\"y".into()),
            ]),
            Filter::HasLabel("c".into()),
        ]);
        let alts: Vec<String> = to_containerd_filters(&f)
            .expect("small filter")
            .into_iter()
            .map(|a| a.join(","))
            .collect();
        assert_eq!(
            alts,
            [
                r#"labels."a",labels."c""#,
                r#"labels."b"=="x\"y",labels."c""#
            ]
        );
        assert_eq!(to_containerd_filters(&Filter::Or(vec![])), Some(vec![]));
        assert_eq!(to_containerd_filters(&Filter::All), Some(vec![vec![]]));
    }
}
