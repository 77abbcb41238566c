//! Garbage collection of the memory store, under its one lock.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryStore;
use crate::error::Result;
use crate::gc::{self, GarbageCollector, GcReport};
use crate::image::Image;
use crate::label::Labels;
use crate::lease::{Lease, LeaseResource};
use strata_oci::Digest;

#[async_trait]
impl GarbageCollector for MemoryStore {
    async fn garbage_collect(&self) -> Result<GcReport> {
        let mut st = self.lock();
        let now = SystemTime::now();
        let blobs: BTreeMap<Digest, Labels> = st
            .blobs
            .iter()
            .map(|(d, b)| (d.clone(), b.info.labels.clone()))
            .collect();
        let images: Vec<Image> = st.images.values().cloned().collect();
        let leases: Vec<(Lease, Vec<LeaseResource>)> = st
            .leases
            .values()
            .map(|(l, r)| (l.clone(), r.iter().cloned().collect()))
            .collect();
        let marked = gc::mark(&blobs, &images, &leases, now);
        let mut report = GcReport::default();
        for id in &marked.expired_leases {
            st.leases.remove(id);
            report.removed_leases.push(id.clone());
        }
        for d in blobs.keys() {
            if !marked.live.contains(d) {
                if let Some(b) = st.blobs.remove(d) {
                    report.bytes_freed += b.info.size;
                    report.removed.push(d.clone());
                }
            }
        }
        let expired_ingests: Vec<String> = st
            .ingests
            .iter()
            .filter(|(r, i)| i.expired(now) && !marked.leased_ingests.contains(*r))
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired_ingests {
            st.ingests.remove(&r);
            report.removed_ingests.push(r);
        }
        Ok(report)
    }
}
