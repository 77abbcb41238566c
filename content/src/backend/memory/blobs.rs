//! Committed blobs and the [`ContentStore`] impl (ingests are in `ingest.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryStore;
use crate::content::{ContentStore, ContentWriter, Filter, Info, ReaderAt, Status, WriterOptions};
use crate::error::{Error, Result};
use crate::label::apply_label_paths;
use crate::lease::LeaseResource;
use strata_oci::Descriptor;
use strata_oci::Digest;

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
            st.lease_mut(lease)?.remove(&LeaseResource::content(digest));
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
        self.open_ingest(opts)
    }

    async fn status(&self, reference: &str) -> Result<Status> {
        self.ingest(reference)
    }

    async fn list_statuses(&self) -> Result<Vec<Status>> {
        Ok(self.ingests())
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        self.abort_ingest(reference)
    }

    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore> {
        Arc::new(MemoryStore {
            state: self.state.clone(),
            lease: Some(lease.to_string()),
        })
    }
}
