//! Garbage collection of the local store: one write transaction for the whole mark
//! and sweep.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::time::SystemTime;

use async_trait::async_trait;

use super::blobs::all_blobs;
use super::db::{sql, write_tx};
use super::files::{io_err, try_flock};
use super::images::all_images;
use super::ingest::remove_ingest;
use super::leases::all_leases;
use super::LocalStore;
use crate::error::{Error, Result};
use crate::gc::{self, GarbageCollector, GcReport};
use crate::label::Labels;
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
            for id in &marked.expired_leases {
                tx.execute("DELETE FROM leases WHERE id=?1", [id])
                    .map_err(sql(format!("deleting expired lease {id}")))?;
                tx.execute("DELETE FROM lease_resources WHERE lease=?1", [id])
                    .map_err(sql(format!("deleting expired lease {id}")))?;
            }
            let mut report = GcReport::default();
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
            tx.commit().map_err(sql("committing garbage collection"))?;
            Ok(report)
        })
        .await
    }
}
