//! [`AbortOnDrop`]: a cancelled write leaves no ingest behind.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{ContentStore, ContentWriter, WriterOptions};
use crate::error::{Error, Result};

/// Aborts the ingest `reference` if the future writing it is dropped (cancelled)
/// before it commits or aborts the ingest itself; [`AbortOnDrop::disarm`] it once it
/// has. The abort runs in the background on the current tokio runtime, since a drop
/// cannot wait. Declare it before the writer, so the writer (and its lock on the
/// ingest) is dropped first.
pub struct AbortOnDrop {
    store: Arc<dyn ContentStore>,
    reference: Option<String>,
    /// The open of the ingest's writer, while it is in flight.
    opening: Option<JoinHandle<Result<Box<dyn ContentWriter>>>>,
}

impl AbortOnDrop {
    /// Guards the ingest `reference` of `store`.
    pub fn new(store: Arc<dyn ContentStore>, reference: impl Into<String>) -> AbortOnDrop {
        AbortOnDrop {
            store,
            reference: Some(reference.into()),
            opening: None,
        }
    }

    /// Opens the guarded ingest's writer with `opts` as a task of its own: if the
    /// caller is dropped while the open is in flight, the abort waits for it and then
    /// removes what it created.
    pub async fn open(&mut self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
        let store = Arc::clone(&self.store);
        let reference = opts.reference.clone();
        let opening = self
            .opening
            .insert(tokio::spawn(async move { store.writer(opts).await }));
        let opened = opening.await;
        self.opening = None;
        opened.map_err(|join| {
            Error::io(
                format!("opening ingest {reference}"),
                std::io::Error::other(join.to_string()),
            )
        })?
    }

    /// The write committed or aborted its ingest itself: nothing to do on drop.
    pub fn disarm(&mut self) {
        self.reference = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(reference) = self.reference.take() else {
            return;
        };
        let store = Arc::clone(&self.store);
        let opening = self.opening.take();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Some(opening) = opening {
                    // Let the open finish and release its writer, then abort.
                    drop(opening.await);
                }
                if let Err(e) = store.abort(&reference).await {
                    if !e.is_not_found() {
                        tracing::warn!(%reference, error = %e, "aborting a dropped ingest");
                    }
                }
            });
        }
    }
}
