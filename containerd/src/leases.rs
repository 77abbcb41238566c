//! [`LeaseManager`] over containerd's leases service.

use async_trait::async_trait;
use strata_content::{new_lease_id, Error, Labels, Lease, LeaseManager, LeaseResource, Result};

use crate::convert::{labels_to, lease_from_api, resource_from_api, resource_to_api};
use crate::proto::leases;
use crate::store::ContainerdStore;

#[async_trait]
impl LeaseManager for ContainerdStore {
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease> {
        // The same id rules as the other backends; generated ids are prefixed, since a
        // containerd is shared with other clients.
        let id = match id {
            Some(_) => new_lease_id(id)?,
            None => format!("strata-{}", new_lease_id(None)?),
        };
        let resp = self
            .conn
            .leases()
            .create(self.conn.request(leases::CreateRequest {
                id: id.clone(),
                labels: labels_to(&labels),
            }))
            .await
            .map_err(|s| self.err(format!("creating lease {id:?}"), s))?
            .into_inner();
        let lease = resp
            .lease
            .ok_or_else(|| Error::NotFound(format!("lease {id:?}: none returned")))?;
        Ok(lease_from_api(lease))
    }

    async fn delete_lease(&self, id: &str) -> Result<()> {
        self.conn
            .leases()
            .delete(self.conn.request(leases::DeleteRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await
            .map_err(|s| self.err(format!("deleting lease {id:?}"), s))?;
        Ok(())
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        let resp = self
            .conn
            .leases()
            .list(self.conn.request(leases::ListRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("listing leases", s))?
            .into_inner();
        let mut out: Vec<Lease> = resp.leases.into_iter().map(lease_from_api).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let what = format!(
            "adding {} {} to lease {lease:?}",
            resource.kind, resource.id
        );
        self.conn
            .leases()
            .add_resource(self.conn.request(leases::AddResourceRequest {
                id: lease.to_string(),
                resource: Some(resource_to_api(resource)),
            }))
            .await
            .map_err(|s| self.err(what, s))?;
        Ok(())
    }

    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let what = format!(
            "removing {} {} from lease {lease:?}",
            resource.kind, resource.id
        );
        self.conn
            .leases()
            .delete_resource(self.conn.request(leases::DeleteResourceRequest {
                id: lease.to_string(),
                resource: Some(resource_to_api(resource)),
            }))
            .await
            .map_err(|s| self.err(what, s))?;
        Ok(())
    }

    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>> {
        let resp = self
            .conn
            .leases()
            .list_resources(self.conn.request(leases::ListResourcesRequest {
                id: lease.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("resources of lease {lease:?}"), s))?
            .into_inner();
        let mut out = resp
            .resources
            .into_iter()
            .map(resource_from_api)
            .collect::<Result<Vec<LeaseResource>>>()?;
        out.sort();
        Ok(out)
    }
}
