//! [`MemoryStore`]: every trait of the crate, in memory, for tests and embedding.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::descriptor::Descriptor;
use crate::digest::{Digest, Digester};
use crate::error::{Error, Result};
use crate::fields::{apply_label_paths, new_lease_id};
use crate::gc::{self, KIND_CONTENT, KIND_INGESTS};
use crate::store::{
    ContentStore, ContentWriter, Filter, GarbageCollector, GcReport, Image, ImageStore, Info,
    Labels, Lease, LeaseManager, LeaseResource, ReaderAt, Status, WriterOptions,
};

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

struct Ingest {
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

fn content_resource(d: &Digest) -> LeaseResource {
    LeaseResource {
        id: d.to_string(),
        kind: KIND_CONTENT.to_string(),
    }
}

fn ingest_resource(r: &str) -> LeaseResource {
    LeaseResource {
        id: r.to_string(),
        kind: KIND_INGESTS.to_string(),
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

struct MemoryReader(Arc<[u8]>);

#[async_trait]
impl ReaderAt for MemoryReader {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let len = self.0.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let start = offset as usize;
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
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
        let expected_size = if size != 0 {
            Some(size)
        } else {
            self.expected.as_ref().map(|d| d.size).filter(|s| *s != 0)
        };
        let expected_digest = expected
            .cloned()
            .or_else(|| self.expected.as_ref().map(|d| d.digest.clone()));
        let mut st = self.store.lock();
        self.done = true;
        let fail = |st: &mut State, e: Error| {
            st.ingests.remove(&self.reference);
            for (_, r) in st.leases.values_mut() {
                r.remove(&ingest_resource(&self.reference));
            }
            Err(e)
        };
        if let Some(es) = expected_size {
            if es != actual_size {
                return fail(
                    &mut st,
                    Error::SizeMismatch {
                        subject: format!("ingest {}", self.reference),
                        expected: es,
                        actual: actual_size,
                    },
                );
            }
        }
        if let Some(ed) = &expected_digest {
            if *ed != actual {
                return fail(
                    &mut st,
                    Error::DigestMismatch {
                        subject: format!("ingest {}", self.reference),
                        expected: ed.to_string(),
                        actual: actual.to_string(),
                    },
                );
            }
        }
        if let Some(lease) = &self.store.lease {
            match st.lease_mut(lease) {
                Ok(res) => {
                    res.remove(&ingest_resource(&self.reference));
                    res.insert(content_resource(&actual));
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

#[async_trait]
impl ContentStore for MemoryStore {
    async fn info(&self, digest: &Digest) -> Result<Info> {
        self.lock()
            .blobs
            .get(digest)
            .map(|b| b.info.clone())
            .ok_or_else(|| Error::NotFound(format!("content {digest}")))
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let mut st = self.lock();
        let blob = st
            .blobs
            .get_mut(&info.digest)
            .ok_or_else(|| Error::NotFound(format!("content {}", info.digest)))?;
        let mut labels = blob.info.labels.clone();
        apply_label_paths(&mut labels, &info.labels, fieldpaths, &[])?;
        blob.info.labels = labels;
        blob.info.updated_at = SystemTime::now();
        Ok(blob.info.clone())
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        Ok(self
            .lock()
            .blobs
            .values()
            .filter(|b| filter.matches(&b.info.labels))
            .map(|b| b.info.clone())
            .collect())
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let mut st = self.lock();
        if let Some(lease) = &self.lease {
            st.lease_mut(lease)?.remove(&content_resource(digest));
            return Ok(());
        }
        st.blobs
            .remove(digest)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("content {digest}")))
    }

    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn ReaderAt>> {
        let st = self.lock();
        let blob = st
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| Error::NotFound(format!("content {}", desc.digest)))?;
        Ok(Box::new(MemoryReader(blob.data.clone())))
    }

    async fn writer(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
        if opts.reference.is_empty() {
            return Err(Error::InvalidArgument("empty ingest ref".into()));
        }
        let mut st = self.lock();
        if let Some(exp) = &opts.expected {
            if st.blobs.contains_key(&exp.digest) {
                if let Some(lease) = &self.lease {
                    st.lease_mut(lease)?.insert(content_resource(&exp.digest));
                }
                return Err(Error::AlreadyExists(format!("content {}", exp.digest)));
            }
        }
        if let Some(lease) = &self.lease {
            st.lease_mut(lease)?
                .insert(ingest_resource(&opts.reference));
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

    async fn status(&self, reference: &str) -> Result<Status> {
        self.lock()
            .ingests
            .get(reference)
            .map(|i| i.status(reference))
            .ok_or_else(|| Error::NotFound(format!("ingest {reference}")))
    }

    async fn list_statuses(&self) -> Result<Vec<Status>> {
        Ok(self
            .lock()
            .ingests
            .iter()
            .map(|(r, i)| i.status(r))
            .collect())
    }

    async fn abort(&self, reference: &str) -> Result<()> {
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
            r.remove(&ingest_resource(reference));
        }
        Ok(())
    }

    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore> {
        Arc::new(MemoryStore {
            state: self.state.clone(),
            lease: Some(lease.to_string()),
        })
    }
}

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

#[async_trait]
impl ImageStore for MemoryStore {
    async fn get_image(&self, name: &str) -> Result<Image> {
        self.lock()
            .images
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("image {name}")))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn create_image(&self, mut image: Image) -> Result<Image> {
        if image.name.is_empty() {
            return Err(Error::InvalidArgument("empty image name".into()));
        }
        let mut st = self.lock();
        if st.images.contains_key(&image.name) {
            return Err(Error::AlreadyExists(format!("image {}", image.name)));
        }
        let now = SystemTime::now();
        image.created_at = now;
        image.updated_at = now;
        st.images.insert(image.name.clone(), image.clone());
        Ok(image)
    }

    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let mut st = self.lock();
        let cur = st
            .images
            .get_mut(&image.name)
            .ok_or_else(|| Error::NotFound(format!("image {}", image.name)))?;
        let updated = crate::fields::apply_image_paths(cur, &image, fieldpaths)?;
        *cur = updated.clone();
        Ok(updated)
    }

    async fn delete_image(&self, name: &str) -> Result<()> {
        self.lock()
            .images
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("image {name}")))
    }
}

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
        for id in &marked.expired_leases {
            st.leases.remove(id);
        }
        let mut report = GcReport::default();
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
            .filter(|(r, i)| {
                !i.locked
                    && !marked.leased_ingests.contains(*r)
                    && i.expires_at.is_some_and(|e| e < now)
            })
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired_ingests {
            st.ingests.remove(&r);
            report.removed_ingests.push(r);
        }
        Ok(report)
    }
}
