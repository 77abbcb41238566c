//! [`ContentStore`] over containerd's content service: infos, labels, walks, deletes
//! and ranged reads (ingests are in the ingest module).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_content::{
    ContentStore, ContentWriter, Error, Filter, Info, LeaseManager, LeaseResource, ReaderAt,
    Result, Status, WriterOptions,
};
use strata_oci::{Descriptor, Digest};

use crate::convert::{
    field_mask, info_from_api, info_to_api, status_from_api, to_containerd_filters,
};
use crate::ingest::{LiveRef, LiveWriter};
use crate::proto::content;
use crate::store::{ContainerdStore, LOCKED_WAIT};

/// The most bytes asked for in one `Read` call.
const READ_CHUNK: usize = 4 << 20;

#[async_trait]
impl ContentStore for ContainerdStore {
    async fn info(&self, digest: &Digest) -> Result<Info> {
        let resp = self
            .conn
            .content()
            .info(self.req(content::InfoRequest {
                digest: digest.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("content {digest}"), s))?
            .into_inner();
        let info = resp
            .info
            .ok_or_else(|| Error::NotFound(format!("content {digest}: no info returned")))?;
        info_from_api(info)
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let digest = info.digest.clone();
        let resp = self
            .conn
            .content()
            .update(self.req(content::UpdateRequest {
                info: Some(info_to_api(&info)),
                update_mask: field_mask(fieldpaths),
            }))
            .await
            .map_err(|s| self.err(format!("updating content {digest}"), s))?
            .into_inner();
        let info = resp.info.ok_or_else(|| {
            Error::NotFound(format!("updating content {digest}: no info returned"))
        })?;
        info_from_api(info)
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let filters = match to_containerd_filters(filter) {
            Some(alts) if alts.is_empty() => return Ok(Vec::new()),
            Some(alts) if alts.iter().any(Vec::is_empty) => Vec::new(),
            Some(alts) => alts.into_iter().map(|a| a.join(",")).collect(),
            None => Vec::new(),
        };
        // containerd filtered already; matching again here makes the result exactly
        // strata's filter semantics whatever containerd's parser made of the strings.
        let mut out: Vec<Info> = self
            .list(filters)
            .await?
            .into_iter()
            .filter(|i| filter.matches(&i.labels))
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        if let Some(lease) = &self.lease {
            // Inside a lease, deleting only releases the blob from the lease.
            self.info(digest).await?;
            return self
                .delete_resource(lease, LeaseResource::content(digest))
                .await;
        }
        self.conn
            .content()
            .delete(self.req(content::DeleteContentRequest {
                digest: digest.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("deleting content {digest}"), s))?;
        Ok(())
    }

    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn ReaderAt>> {
        let info = self.info(&desc.digest).await?;
        Ok(Box::new(Reader {
            store: self.clone(),
            digest: desc.digest.clone(),
            size: info.size,
        }))
    }

    async fn writer(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
        if opts.reference.is_empty() {
            return Err(Error::InvalidArgument("an empty ingest ref".into()));
        }
        let guard = LiveRef::claim(&self.live, &opts.reference)?;
        self.wait_closed(&opts.reference).await;
        let mut delay = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        loop {
            match self.open_writer(&opts).await {
                Ok(w) => {
                    // The guard moves into the writer and is released when it goes.
                    return Ok(Box::new(LiveWriter { w, _guard: guard }));
                }
                // containerd still holds the ref: a writer of ours whose stream is
                // closing, or another process's. Wait a moment, like containerd's
                // own client does.
                Err(Error::FailedPrecondition(m)) if waited < LOCKED_WAIT => {
                    tracing::debug!(reference = %opts.reference, "ingest locked: {m}");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn status(&self, reference: &str) -> Result<Status> {
        let resp = self
            .conn
            .content()
            .status(self.req(content::StatusRequest {
                r#ref: reference.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("ingest {reference:?}"), s))?
            .into_inner();
        let st = resp
            .status
            .ok_or_else(|| Error::NotFound(format!("ingest {reference:?}: no status")))?;
        Ok(self.with_expected(status_from_api(st)?))
    }

    async fn list_statuses(&self) -> Result<Vec<Status>> {
        let resp = self
            .conn
            .content()
            .list_statuses(self.req(content::ListStatusesRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("listing ingests", s))?
            .into_inner();
        let mut out = resp
            .statuses
            .into_iter()
            .map(|st| status_from_api(st).map(|st| self.with_expected(st)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        if self
            .live
            .lock()
            .map(|l| l.contains(reference))
            .unwrap_or(false)
        {
            return Err(Error::FailedPrecondition(format!(
                "ingest {reference:?} has a live writer"
            )));
        }
        self.wait_closed(reference).await;
        self.conn
            .content()
            .abort(self.req(content::AbortRequest {
                r#ref: reference.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("aborting ingest {reference:?}"), s))?;
        self.forget_expected(reference);
        Ok(())
    }

    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore> {
        Arc::new(ContainerdStore {
            conn: self.conn.clone(),
            lease: Some(lease.to_string()),
            live: Arc::clone(&self.live),
            closing: Arc::clone(&self.closing),
            expected: Arc::clone(&self.expected),
        })
    }
}

/// A ranged reader of one blob over containerd's `Read` stream.
struct Reader {
    store: ContainerdStore,
    digest: Digest,
    size: u64,
}

#[async_trait]
impl ReaderAt for Reader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64)
            .min(self.size - offset)
            .min(READ_CHUNK as u64) as usize;
        let what = || format!("reading content {} at {offset}", self.digest);
        let mut stream = self
            .store
            .conn
            .content()
            .read(self.store.req(content::ReadContentRequest {
                digest: self.digest.to_string(),
                offset: offset as i64,
                size: want as i64,
            }))
            .await
            .map_err(|s| self.store.err(what(), s))?
            .into_inner();
        let mut n = 0usize;
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    // containerd 1.x numbers the chunks from the start of the range it
                    // was asked for; accept absolute offsets too. Chunks come in order.
                    let at = chunk.offset.max(0) as u64;
                    let in_order = at == n as u64 || at == offset + n as u64;
                    let end = n + chunk.data.len();
                    if !in_order || end > want {
                        return Err(Error::io(
                            what(),
                            std::io::Error::other(format!(
                                "containerd sent {} bytes at offset {} for a read of {want} \
                                 at {offset}, after {n} bytes",
                                chunk.data.len(),
                                chunk.offset
                            )),
                        ));
                    }
                    buf[n..end].copy_from_slice(&chunk.data);
                    n = end;
                }
                Ok(None) => break,
                Err(s) => return Err(self.store.err(what(), s)),
            }
        }
        Ok(n)
    }
}
