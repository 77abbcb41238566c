//! [`LeaseGuard`]: a lease held for one piece of work, released explicitly.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{expiry_label_value, LeaseManager};
use crate::error::{Error, Result};
use crate::label::Labels;
use crate::owner::{ProcessOwner, OWNER_LABEL};
use strata_oci::labels as gc_labels;

/// A lease held while a piece of work (an export) writes what it needs kept, until the
/// result is anchored elsewhere (an image record, a registry, a file).
///
/// Release it with [`LeaseGuard::release`] (or [`LeaseGuard::release_after`] on a path
/// that may have failed), awaiting the deletion. Dropping a guard that was not released
/// is the last resort of a cancelled task: it logs a warning and deletes the lease in
/// a background task, best effort. The lease names this process as its owner
/// ([`OWNER_LABEL`]), so a process that dies (`kill -9`) holds nothing past the next
/// garbage collection; a temporary lease ([`LeaseGuard::temporary`]) also expires on
/// its own.
#[must_use = "a lease guard must be released with `release(self).await`"]
pub struct LeaseGuard {
    id: String,
    leases: Arc<dyn LeaseManager>,
    released: bool,
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard").field("id", &self.id).finish()
    }
}

impl LeaseGuard {
    /// Creates a lease with a new id and `labels` in `leases`, labelled with this
    /// process as its owner ([`OWNER_LABEL`]): should the process die before releasing
    /// it, the next garbage collection deletes it.
    pub async fn create(leases: Arc<dyn LeaseManager>, mut labels: Labels) -> Result<LeaseGuard> {
        labels.insert(OWNER_LABEL.to_string(), ProcessOwner::current().to_string());
        let lease = leases.create_lease(None, labels).await?;
        Ok(LeaseGuard {
            id: lease.id,
            leases,
            released: false,
        })
    }

    /// Creates a lease that garbage collection deletes once `ttl` has passed
    /// (`containerd.io/gc.expire`, as BuildKit's temporary leases).
    pub async fn temporary(leases: Arc<dyn LeaseManager>, ttl: Duration) -> Result<LeaseGuard> {
        let mut labels = Labels::new();
        labels.insert(
            gc_labels::GC_EXPIRE.to_string(),
            expiry_label_value(SystemTime::now() + ttl),
        );
        Self::create(leases, labels).await
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deletes the lease: what it held is now kept only by what references it. A lease
    /// already gone (collected after expiring) is not an error.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        match self.leases.delete_lease(&self.id).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Releases the lease at the end of work that produced `result`, and returns
    /// `result`: on an error, that error (a failed release is only logged); on success,
    /// the release's error if it failed.
    pub async fn release_after<T, E: From<Error>>(
        self,
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let id = self.id.clone();
        let released = self.release().await;
        match (result, released) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(release)) => {
                tracing::warn!(lease = %id, error = %release, "releasing the lease of failed work");
                Err(e)
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let leases = self.leases.clone();
        let id = std::mem::take(&mut self.id);
        tracing::warn!(lease = %id, "lease dropped without being released; deleting it in the background");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = leases.delete_lease(&id).await {
                    tracing::warn!(lease = %id, error = %e, "releasing a dropped lease");
                }
            });
        } else {
            tracing::warn!(lease = %id, "no runtime to release a dropped lease on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn release_deletes_the_lease_and_release_after_keeps_the_first_error() {
        let store = Arc::new(MemoryStore::new());
        let guard = LeaseGuard::temporary(store.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        let leases = store.list_leases().await.unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].id, guard.id());
        assert!(leases[0].labels.contains_key(gc_labels::GC_EXPIRE));
        assert_eq!(
            leases[0].labels.get(OWNER_LABEL),
            Some(&ProcessOwner::current().to_string()),
            "the lease names this process as its owner"
        );
        guard.release().await.unwrap();
        assert!(store.list_leases().await.unwrap().is_empty());

        let guard = LeaseGuard::create(store.clone(), Labels::new())
            .await
            .unwrap();
        let failed: Result<()> = guard
            .release_after(Err(Error::InvalidArgument("the work failed".into())))
            .await;
        assert!(matches!(failed, Err(Error::InvalidArgument(m)) if m == "the work failed"));
        assert!(store.list_leases().await.unwrap().is_empty());

        // A lease already collected is released without an error.
        let guard = LeaseGuard::create(store.clone(), Labels::new())
            .await
            .unwrap();
        store.delete_lease(guard.id()).await.unwrap();
        assert_eq!(guard.release_after(Ok::<_, Error>(7)).await.unwrap(), 7);
    }
}
