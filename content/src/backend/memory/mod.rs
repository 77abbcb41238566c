//! [`MemoryStore`]: every trait of the crate, in memory, for tests and embedding; one
//! file per concept (blobs, ingests, leases, images, GC) over one shared state.

mod blobs;
mod gc;
mod images;
mod ingest;
mod leases;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::content::Info;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::lease::{Lease, LeaseResource};
use ingest::Ingest;
use strata_oci::Digest;

/// A content store, lease manager, image store and garbage collector held in memory.
///
/// Cloning is cheap and clones share the same state. Nothing is persisted.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    lease: Option<String>,
}

struct Blob {
    data: Arc<[u8]>,
    info: Info,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<Digest, Blob>,
    ingests: BTreeMap<String, Ingest>,
    leases: BTreeMap<String, (Lease, BTreeSet<LeaseResource>)>,
    images: BTreeMap<String, Image>,
}

impl State {
    fn lease_mut(&mut self, id: &str) -> Result<&mut BTreeSet<LeaseResource>> {
        self.leases
            .get_mut(id)
            .map(|(_, r)| r)
            .ok_or_else(|| Error::NotFound(format!("lease {id}")))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // breaks invariants we rely on, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
