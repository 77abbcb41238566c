//! Ingests: their state, [`MemoryWriter`], and opening, listing and aborting them.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{Blob, MemoryStore, State};
use crate::content::{CommitExpectation, ContentWriter, Info, Status, WriterOptions};
use crate::error::{Error, Result};
use crate::gc;
use crate::label::Labels;
use crate::lease::LeaseResource;
use strata_oci::Descriptor;
use strata_oci::{Digest, Digester};

pub(super) struct Ingest {
    /// Bytes of a writer that was dropped (taken back by the next writer of the ref).
    data: Vec<u8>,
    offset: u64,
    expected: Option<Descriptor>,
    started_at: SystemTime,
    updated_at: SystemTime,
    /// Set while a live writer holds the ref.
    locked: bool,
    /// Unleased ingests may be collected after this.
    expires_at: Option<SystemTime>,
}

impl Ingest {
    /// Whether GC may remove this ingest (unless a lease holds it): no live writer, and
    /// its expiry (unleased ingests only) has passed.
    pub(super) fn expired(&self, now: SystemTime) -> bool {
        !self.locked && self.expires_at.is_some_and(|e| e < now)
    }

    fn status(&self, reference: &str) -> Status {
        Status {
            reference: reference.to_string(),
            offset: self.offset,
            total: self.expected.as_ref().map(|d| d.size).unwrap_or(0),
            expected: self.expected.as_ref().map(|d| d.digest.clone()),
            started_at: self.started_at,
            updated_at: self.updated_at,
        }
    }
}

struct MemoryWriter {
    store: MemoryStore,
    reference: String,
    data: Vec<u8>,
    digester: Digester,
    expected: Option<Descriptor>,
    done: bool,
}

impl MemoryWriter {
    fn sync_state(&self) {
        let mut st = self.store.lock();
        if let Some(ing) = st.ingests.get_mut(&self.reference) {
            ing.offset = self.data.len() as u64;
            ing.updated_at = SystemTime::now();
        }
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Hand the bytes back to the ingest so a later writer of the ref resumes.
        let data = std::mem::take(&mut self.data);
        let mut st = self.store.lock();
        if let Some(ing) = st.ingests.get_mut(&self.reference) {
            ing.offset = data.len() as u64;
            ing.data = data;
            ing.locked = false;
        }
    }
}

#[async_trait]
impl ContentWriter for MemoryWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.data.extend_from_slice(buf);
        self.digester.update(buf);
        self.sync_state();
        Ok(())
    }

    fn digest(&self) -> Digest {
        self.digester.digest()
    }

    fn offset(&self) -> u64 {
        self.data.len() as u64
    }

    async fn status(&self) -> Result<Status> {
        let st = self.store.lock();
        st.ingests
            .get(&self.reference)
            .map(|i| i.status(&self.reference))
            .ok_or_else(|| Error::NotFound(format!("ingest {}", self.reference)))
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::InvalidArgument(format!(
                "ingest {}: truncate only supports size 0, got {size}",
                self.reference
            )));
        }
        self.data.clear();
        self.digester = Digester::new();
        self.sync_state();
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        size: u64,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info> {
        let actual = self.digester.digest();
        let actual_size = self.data.len() as u64;
        let check = CommitExpectation::new(size, expected, self.expected.as_ref());
        let mut st = self.store.lock();
        self.done = true;
        let fail = |st: &mut State, e: Error| {
            st.ingests.remove(&self.reference);
            for (_, r) in st.leases.values_mut() {
                r.remove(&LeaseResource::ingest(&self.reference));
            }
            Err(e)
        };
        if let Err(e) = check.verify(&self.reference, actual_size, &actual) {
            return fail(&mut st, e);
        }
        if let Some(lease) = &self.store.lease {
            match st.lease_mut(lease) {
                Ok(res) => {
                    res.remove(&LeaseResource::ingest(&self.reference));
                    res.insert(LeaseResource::content(&actual));
                }
                Err(e) => return fail(&mut st, e),
            }
        }
        st.ingests.remove(&self.reference);
        if st.blobs.contains_key(&actual) {
            return Err(Error::AlreadyExists(format!("content {actual}")));
        }
        let now = SystemTime::now();
        let info = Info {
            digest: actual.clone(),
            size: actual_size,
            created_at: now,
            updated_at: now,
            labels,
        };
        let data: Arc<[u8]> = std::mem::take(&mut self.data).into();
        st.blobs.insert(
            actual,
            Blob {
                data,
                info: info.clone(),
            },
        );
        Ok(info)
    }
}

impl MemoryStore {
    /// Opens (or resumes) the ingest `opts.reference`: [`ContentStore::writer`].
    ///
    /// [`ContentStore::writer`]: crate::ContentStore::writer
    pub(super) fn open_ingest(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
        if opts.reference.is_empty() {
            return Err(Error::InvalidArgument("empty ingest ref".into()));
        }
        let mut st = self.lock();
        if let Some(exp) = &opts.expected {
            if st.blobs.contains_key(&exp.digest) {
                if let Some(lease) = &self.lease {
                    st.lease_mut(lease)?
                        .insert(LeaseResource::content(&exp.digest));
                }
                return Err(Error::AlreadyExists(format!("content {}", exp.digest)));
            }
        }
        if let Some(lease) = &self.lease {
            st.lease_mut(lease)?
                .insert(LeaseResource::ingest(&opts.reference));
        }
        let now = SystemTime::now();
        let (data, expected) = match st.ingests.get_mut(&opts.reference) {
            Some(ing) if ing.locked => {
                return Err(Error::FailedPrecondition(format!(
                    "ingest ref {:?} is locked by another writer",
                    opts.reference
                )))
            }
            Some(ing) => {
                ing.locked = true;
                if opts.expected.is_some() {
                    ing.expected = opts.expected.clone();
                }
                (std::mem::take(&mut ing.data), ing.expected.clone())
            }
            None => {
                st.ingests.insert(
                    opts.reference.clone(),
                    Ingest {
                        data: Vec::new(),
                        offset: 0,
                        expected: opts.expected.clone(),
                        started_at: now,
                        updated_at: now,
                        locked: true,
                        expires_at: self.lease.is_none().then(|| now + gc::INGEST_EXPIRY),
                    },
                );
                (Vec::new(), opts.expected.clone())
            }
        };
        drop(st);
        let mut digester = Digester::new();
        digester.update(&data);
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            reference: opts.reference,
            data,
            digester,
            expected,
            done: false,
        }))
    }

    /// The status of the ingest `reference`.
    pub(super) fn ingest(&self, reference: &str) -> Result<Status> {
        self.lock()
            .ingests
            .get(reference)
            .map(|i| i.status(reference))
            .ok_or_else(|| Error::NotFound(format!("ingest {reference}")))
    }

    /// Every ingest in progress, sorted by ref.
    pub(super) fn ingests(&self) -> Vec<Status> {
        self.lock()
            .ingests
            .iter()
            .map(|(r, i)| i.status(r))
            .collect()
    }

    /// Removes an ingest unless a live writer holds it.
    pub(super) fn abort_ingest(&self, reference: &str) -> Result<()> {
        let mut st = self.lock();
        match st.ingests.get(reference) {
            None => return Err(Error::NotFound(format!("ingest {reference}"))),
            Some(i) if i.locked => {
                return Err(Error::FailedPrecondition(format!(
                    "ingest ref {reference:?} is locked by a live writer"
                )))
            }
            Some(_) => {}
        }
        st.ingests.remove(reference);
        for (_, r) in st.leases.values_mut() {
            r.remove(&LeaseResource::ingest(reference));
        }
        Ok(())
    }
}
