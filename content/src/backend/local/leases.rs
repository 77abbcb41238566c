//! Leases and their resources, in the `leases` and `lease_resources` tables. A
//! resource's kind is stored as containerd's string (`content`, `ingests`,
//! `snapshots/<snapshotter>`), as stores written before the kinds were typed have it.

use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::db::{labels_json, parse_labels, sql, write_tx};
use super::LocalStore;
use crate::error::{Error, Result};
use crate::label::Labels;
use crate::lease::{new_lease_id, Lease, LeaseManager, LeaseResource, ResourceKind};
use crate::unix_time::{from_unix_nanos, to_unix_nanos};

pub(super) fn lease_exists(tx: &Connection, lease: &str) -> Result<()> {
    let found: Option<i64> = tx
        .query_row("SELECT 1 FROM leases WHERE id=?1", [lease], |r| r.get(0))
        .optional()
        .map_err(sql(format!("looking up lease {lease}")))?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::NotFound(format!("lease {lease}")))
}

pub(super) fn add_resource(
    tx: &Connection,
    lease: &str,
    kind: &ResourceKind,
    id: &str,
) -> Result<()> {
    lease_exists(tx, lease)?;
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources(lease, kind, id) VALUES (?1, ?2, ?3)",
        params![lease, kind.to_string(), id],
    )
    .map_err(sql(format!("adding {kind} {id} to lease {lease}")))?;
    Ok(())
}

pub(super) fn all_leases(conn: &Connection) -> Result<Vec<(Lease, Vec<LeaseResource>)>> {
    let mut stmt = conn
        .prepare("SELECT id, created_at, labels FROM leases ORDER BY id")
        .map_err(sql("listing leases"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql("listing leases"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, c, l) = row.map_err(sql("listing leases"))?;
        let resources = lease_resources(conn, &id)?;
        out.push((
            Lease {
                labels: parse_labels(&l, &id)?,
                id,
                created_at: from_unix_nanos(c),
            },
            resources,
        ));
    }
    Ok(out)
}

pub(super) fn lease_resources(conn: &Connection, lease: &str) -> Result<Vec<LeaseResource>> {
    let mut stmt = conn
        .prepare("SELECT id, kind FROM lease_resources WHERE lease=?1 ORDER BY id, kind")
        .map_err(sql(format!("listing resources of lease {lease}")))?;
    let rows = stmt
        .query_map([lease], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql(format!("listing resources of lease {lease}")))?;
    let mut v = Vec::new();
    for row in rows {
        let (id, kind) = row.map_err(sql(format!("listing resources of lease {lease}")))?;
        let kind = kind.parse::<ResourceKind>().map_err(|e| {
            Error::Unavailable(format!(
                "corrupt resource {id} of lease {lease} in database: {e}"
            ))
        })?;
        v.push(LeaseResource { id, kind });
    }
    v.sort();
    Ok(v)
}

#[async_trait]
impl LeaseManager for LocalStore {
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease> {
        let id = new_lease_id(id)?;
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            if lease_exists(&tx, &id).is_ok() {
                return Err(Error::AlreadyExists(format!("lease {id}")));
            }
            let now = SystemTime::now();
            tx.execute(
                "INSERT INTO leases(id, created_at, labels) VALUES (?1, ?2, ?3)",
                params![id, to_unix_nanos(now), labels_json(&labels)],
            )
            .map_err(sql(format!("creating lease {id}")))?;
            tx.commit().map_err(sql(format!("creating lease {id}")))?;
            Ok(Lease {
                id,
                created_at: from_unix_nanos(to_unix_nanos(now)),
                labels,
            })
        })
        .await
    }

    async fn delete_lease(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            let n = tx
                .execute("DELETE FROM leases WHERE id=?1", [&id])
                .map_err(sql(format!("deleting lease {id}")))?;
            if n == 0 {
                return Err(Error::NotFound(format!("lease {id}")));
            }
            tx.execute("DELETE FROM lease_resources WHERE lease=?1", [&id])
                .map_err(sql(format!("deleting lease {id}")))?;
            tx.commit().map_err(sql(format!("deleting lease {id}")))
        })
        .await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        self.db(|c, _| Ok(all_leases(c)?.into_iter().map(|(l, _)| l).collect()))
            .await
    }

    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            add_resource(&tx, &lease, &resource.kind, &resource.id)?;
            tx.commit().map_err(sql(format!("adding to lease {lease}")))
        })
        .await
    }

    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            lease_exists(&tx, &lease)?;
            tx.execute(
                "DELETE FROM lease_resources WHERE lease=?1 AND kind=?2 AND id=?3",
                params![lease, resource.kind.to_string(), resource.id],
            )
            .map_err(sql(format!("removing from lease {lease}")))?;
            tx.commit()
                .map_err(sql(format!("removing from lease {lease}")))
        })
        .await
    }

    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            lease_exists(c, &lease)?;
            lease_resources(c, &lease)
        })
        .await
    }
}
