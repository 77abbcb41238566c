//! Leases and their resources.

use std::collections::BTreeSet;
use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::label::Labels;
use crate::lease::{new_lease_id, Lease, LeaseManager, LeaseResource};

#[async_trait]
impl LeaseManager for MemoryStore {
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease> {
        let id = new_lease_id(id)?;
        let mut st = self.lock();
        if st.leases.contains_key(&id) {
            return Err(Error::AlreadyExists(format!("lease {id}")));
        }
        let lease = Lease {
            id: id.clone(),
            created_at: SystemTime::now(),
            labels,
        };
        st.leases.insert(id, (lease.clone(), BTreeSet::new()));
        Ok(lease)
    }

    async fn delete_lease(&self, id: &str) -> Result<()> {
        self.lock()
            .leases
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("lease {id}")))
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        Ok(self
            .lock()
            .leases
            .values()
            .map(|(l, _)| l.clone())
            .collect())
    }

    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        self.lock().lease_mut(lease)?.insert(resource);
        Ok(())
    }

    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        self.lock().lease_mut(lease)?.remove(&resource);
        Ok(())
    }

    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>> {
        Ok(self.lock().lease_mut(lease)?.iter().cloned().collect())
    }
}
