//! [`GarbageCollector`] over containerd: a synchronous lease delete makes containerd
//! collect at once (`ctr content prune references`).

use async_trait::async_trait;
use strata_content::{GarbageCollector, GcReport, Labels, LeaseManager, Result};

use crate::proto::leases;
use crate::store::ContainerdStore;

#[async_trait]
impl GarbageCollector for ContainerdStore {
    async fn garbage_collect(&self) -> Result<GcReport> {
        let before = self.sizes().await?;
        // `ctr content prune references` semantics: deleting a lease with `sync` makes
        // containerd run its GC and answer once it is done.
        let lease = self.create_lease(None, Labels::new()).await?;
        self.conn
            .leases()
            .delete(self.conn.request(leases::DeleteRequest {
                id: lease.id.clone(),
                sync: true,
            }))
            .await
            .map_err(|s| self.err(format!("running GC (deleting lease {:?})", lease.id), s))?;
        let after = self.sizes().await?;
        let mut report = GcReport::default();
        for (digest, size) in before {
            if !after.contains_key(&digest) {
                report.bytes_freed += size;
                report.removed.push(digest);
            }
        }
        Ok(report)
    }
}
