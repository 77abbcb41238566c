//! Garbage collection of the local store: one write transaction for the whole mark
//! and sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::Connection;

use super::blobs::all_blobs;
use super::db::{sql, write_tx};
use super::files::{io_err, try_flock};
use super::images::all_images;
use super::ingest::{reclaim_dead_ingests, remove_ingest};
use super::leases::all_leases;
use super::{Inner, LocalStore};
use crate::error::{Error, Result};
use crate::gc::{self, GarbageCollector, GcReport};
use crate::label::Labels;
use crate::lease::{lease_owner_dead, ResourceKind};
use crate::owner::recorded_owner_is_dead;
use crate::unix_time::to_unix_nanos;
use strata_oci::Digest;

#[async_trait]
impl GarbageCollector for LocalStore {
    async fn garbage_collect(&self) -> Result<GcReport> {
        self.db(|c, inner| {
            // The write transaction is held for the whole mark and sweep: no commit, in
            // this process or another, can interleave.
            let tx = write_tx(c)?;
            let now = SystemTime::now();
            let infos = all_blobs(&tx)?;
            let blobs: BTreeMap<Digest, Labels> = infos
                .iter()
                .map(|i| (i.digest.clone(), i.labels.clone()))
                .collect();
            let images = all_images(&tx)?;
            let leases = all_leases(&tx)?;
            let marked = gc::mark(&blobs, &images, &leases, now);
            // What this handle's open already reclaimed is part of the first report.
            let (leases_at_open, ingests_at_open) = std::mem::take(&mut *inner.reclaimed_at_open());
            let mut report = GcReport {
                removed_leases: leases_at_open,
                ..GcReport::default()
            };
            for id in &marked.expired_leases {
                delete_lease_rows(&tx, id)?;
                report.removed_leases.push(id.clone());
            }
            // What dead processes' writers left (their leases are gone by now).
            report.removed_ingests = ingests_at_open;
            report
                .removed_ingests
                .extend(reclaim_dead_ingests(&tx, inner, &marked.leased_ingests)?);
            for info in &infos {
                if marked.live.contains(&info.digest) {
                    continue;
                }
                tx.execute("DELETE FROM blobs WHERE digest=?1", [info.digest.as_str()])
                    .map_err(sql(format!("sweeping {}", info.digest)))?;
                match fs::remove_file(inner.blob_path(&info.digest)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("sweeping {}", info.digest), e)),
                }
                report.removed.push(info.digest.clone());
                report.bytes_freed += info.size;
            }
            // Blob files the database does not know (crash between rename and commit).
            let dir = inner.root.join("blobs").join("sha256");
            let entries = fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                    continue;
                };
                if !blobs.contains_key(&d) {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if fs::remove_file(entry.path()).is_ok() {
                        report.removed.push(d);
                        report.bytes_freed += size;
                    }
                }
            }
            report.removed.sort();
            // Unleased ingests past their expiry, unless a live writer holds them.
            let expired: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT ref FROM ingests WHERE expires_at IS NOT NULL AND expires_at < ?1 ORDER BY ref")
                    .map_err(sql("listing expired ingests"))?;
                let rows = stmt
                    .query_map([to_unix_nanos(now)], |r| r.get(0))
                    .map_err(sql("listing expired ingests"))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(sql("listing expired ingests"))?
            };
            for r in expired {
                if marked.leased_ingests.contains(&r) {
                    continue;
                }
                let lock = File::open(inner.ingest_dir(&r).join("lock")).ok();
                if let Some(l) = &lock {
                    if !try_flock(l).unwrap_or(false) {
                        continue;
                    }
                }
                remove_ingest(&tx, inner, &r)?;
                report.removed_ingests.push(r);
            }
            report.removed_ingests.sort();
            report.removed_leases.sort();
            tx.commit().map_err(sql("committing garbage collection"))?;
            Ok(report)
        })
        .await
    }
}

/// Deletes lease `id` and its resource rows.
fn delete_lease_rows(tx: &Connection, id: &str) -> Result<()> {
    tx.execute("DELETE FROM leases WHERE id=?1", [id])
        .map_err(sql(format!("deleting lease {id}")))?;
    tx.execute("DELETE FROM lease_resources WHERE lease=?1", [id])
        .map_err(sql(format!("deleting lease {id}")))?;
    Ok(())
}

/// The cheap part of garbage collection, for [`LocalStore::open`]: deletes the leases
/// of dead owners and removes the ingests dead processes left (no mark, no sweep; the
/// blobs those leases held wait for the next collection). Takes the write lock only
/// when a dead owner's lease or ingest is there. Returns the leases deleted and the
/// ingests removed.
pub(super) fn reclaim_dead_owners(
    conn: &mut Connection,
    inner: &Inner,
) -> Result<(Vec<String>, Vec<String>)> {
    let dead_leases = |c: &Connection| -> Result<Vec<String>> {
        Ok(all_leases(c)?
            .into_iter()
            .filter(|(l, _)| lease_owner_dead(&l.labels))
            .map(|(l, _)| l.id)
            .collect())
    };
    let any_dead_ingest = fs::read_dir(inner.ingest_root())
        .map(|entries| {
            entries.flatten().any(|e| {
                let owner = fs::read_to_string(e.path().join("owner")).ok();
                recorded_owner_is_dead(owner.as_deref())
            })
        })
        .unwrap_or(false);
    if !any_dead_ingest && dead_leases(conn)?.is_empty() {
        return Ok(Default::default());
    }
    let tx = write_tx(conn)?;
    let leases = dead_leases(&tx)?;
    for id in &leases {
        delete_lease_rows(&tx, id)?;
    }
    let leased: BTreeSet<String> = all_leases(&tx)?
        .into_iter()
        .flat_map(|(_, resources)| resources)
        .filter(|r| r.kind == ResourceKind::Ingest)
        .map(|r| r.id)
        .collect();
    let ingests = reclaim_dead_ingests(&tx, inner, &leased)?;
    tx.commit()
        .map_err(sql("removing what dead processes left"))?;
    Ok((leases, ingests))
}
