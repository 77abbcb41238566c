//! [`ContainerdStore`]: the store over containerd's content, leases and images
//! services, and the state its writers share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_content::{Error, Info, Result, Status};
use strata_oci::Digest;
use tonic::Request;

use crate::connection::{all_messages, ContainerdConnection};
use crate::convert::info_from_api;
use crate::proto::content;

/// How long to wait for a ref containerd reports locked before giving up.
pub(crate) const LOCKED_WAIT: Duration = Duration::from_secs(3);

/// Ingest refs held by live writers of one store (and all its leased views).
pub(crate) type LiveRefs = Arc<Mutex<HashSet<String>>>;

/// The expected digest of each ingest this store opened with one: containerd 1.6
/// keeps an ingest's expected size but not its expected digest, so `status` fills it
/// in from here (for ingests opened by another process it stays unknown).
pub(crate) type Expected = Arc<Mutex<HashMap<String, Digest>>>;

/// containerd's content, leases and images services in one namespace, as strata's
/// content-store contracts: [`ContentStore`](strata_content::ContentStore), [`LeaseManager`](strata_content::LeaseManager), [`ImageStore`](strata_content::ImageStore) and
/// [`GarbageCollector`](strata_content::GarbageCollector).
///
/// What it writes is containerd's own content: `ctr images ls` shows the image
/// records, and containerd's GC keeps exactly what leases, image records and the
/// `containerd.io/gc.ref.content.*` labels reference. How containerd's API maps onto
/// strata's contracts:
/// - Leases are the `containerd-lease` request header: [`ContentStore::with_lease`](strata_content::ContentStore::with_lease)
///   returns a view that sends it, so containerd adds what the view commits (and its
///   ingests) to the lease in the commit's own transaction. `delete` through a leased
///   view removes the blob from the lease only (a lease `DeleteResource`).
/// - Writes go over the `Write` stream in chunks of at most 1 MiB (containerd refuses
///   gRPC messages over 16 MiB). The running digest is containerd's own (a `STAT` after
///   each write), so a resumed ingest reports the digest of all its bytes. A commit whose
///   size or digest does not match is refused here with a typed error and the ingest is
///   aborted, so nothing is left behind.
/// - An ingest ref is locked while a writer of this process holds it; a ref containerd
///   reports locked (a writer in another process, or one whose stream is still closing)
///   is retried for a moment, then reported as `FailedPrecondition`.
/// - containerd has no "collect now" call of its own: [`GarbageCollector::garbage_collect`](strata_content::GarbageCollector::garbage_collect)
///   does what `ctr content prune references` does — it creates a throwaway lease and
///   deletes it with `sync`, which makes containerd run a full mark-and-sweep before
///   answering — and reports the blobs of this namespace that were there before and are
///   gone after (so a blob another client deletes at the same moment is counted too).
/// - containerd collects garbage on its own too (shortly after it starts, and after
///   enough changes): a blob that no lease, image record or labelled blob holds can
///   vanish at any moment, as with containerd's own clients. Write under a lease
///   ([`ContentStore::with_lease`](strata_content::ContentStore::with_lease)), as strata's exporter does, until the content is
///   rooted.
/// - gRPC codes become typed errors: `NotFound`, `AlreadyExists`, `FailedPrecondition`,
///   `InvalidArgument`, and `Unavailable` naming the socket when containerd can't be
///   reached.
///
/// ```no_run
/// use strata_containerd::ContainerdStore;
/// use strata_content::{read_blob, write_blob, ContentStore, Labels};
/// use strata_oci::{Descriptor, Digest};
/// # async fn demo() -> strata_content::Result<()> {
/// let store = ContainerdStore::connect("/run/containerd/containerd.sock", "default").await?;
/// let bytes = b"hello";
/// let desc = Descriptor::new("text/plain", Digest::sha256_of(bytes), 5);
/// write_blob(&store, "hello", bytes, &desc, Labels::new()).await?;
/// assert_eq!(read_blob(&store, &desc, 1024).await?, bytes);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ContainerdStore {
    pub(crate) conn: ContainerdConnection,
    pub(crate) lease: Option<String>,
    pub(crate) live: LiveRefs,
    /// Refs whose dropped writer's stream containerd has not finished yet.
    pub(crate) closing: LiveRefs,
    pub(crate) expected: Expected,
}

impl ContainerdStore {
    /// Connects to containerd at `socket` in `namespace`, which must exist (see
    /// [`ContainerdConnection::connect`] for the errors).
    pub async fn connect(socket: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        Ok(Self::new(
            ContainerdConnection::connect(socket, namespace).await?,
        ))
    }

    /// A store on an open connection.
    pub fn new(conn: ContainerdConnection) -> Self {
        ContainerdStore {
            conn,
            lease: None,
            live: Arc::default(),
            closing: Arc::default(),
            expected: Arc::default(),
        }
    }

    /// The connection this store uses.
    pub fn connection(&self) -> &ContainerdConnection {
        &self.conn
    }

    /// Wraps `msg` in a request in this store's namespace and, for a leased view, lease.
    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        self.conn.request_in_lease(msg, self.lease.as_deref())
    }

    /// A typed error for the gRPC status of the request that was doing `what`.
    pub(crate) fn err(&self, what: impl AsRef<str>, status: tonic::Status) -> Error {
        self.conn.error(what.as_ref(), status)
    }

    /// `st` with the expected digest this store opened the ingest with, when
    /// containerd did not report one.
    pub(crate) fn with_expected(&self, mut st: Status) -> Status {
        if st.expected.is_none() {
            st.expected = self
                .expected
                .lock()
                .ok()
                .and_then(|m| m.get(&st.reference).cloned());
        }
        st
    }

    /// Waits (briefly) until containerd has finished the stream of a dropped writer
    /// of `reference`, so the ingest is no longer held open there.
    pub(crate) async fn wait_closed(&self, reference: &str) {
        let mut waited = Duration::ZERO;
        while waited < LOCKED_WAIT
            && self
                .closing
                .lock()
                .map(|c| c.contains(reference))
                .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
            waited += Duration::from_millis(2);
        }
    }

    /// Forgets the expected digest of an ingest that is gone.
    pub(crate) fn forget_expected(&self, reference: &str) {
        if let Ok(mut m) = self.expected.lock() {
            m.remove(reference);
        }
    }

    /// Every blob of the namespace, unfiltered, by digest.
    pub(crate) async fn sizes(&self) -> Result<BTreeMap<Digest, u64>> {
        Ok(self
            .list(Vec::new())
            .await?
            .into_iter()
            .map(|i| (i.digest, i.size))
            .collect())
    }

    /// The blobs matching any of containerd's `filters` (all blobs when there are none).
    pub(crate) async fn list(&self, filters: Vec<String>) -> Result<Vec<Info>> {
        let stream = self
            .conn
            .content()
            .list(self.req(content::ListContentRequest { filters }))
            .await
            .map_err(|s| self.err("listing content", s))?
            .into_inner();
        let responses = all_messages(stream)
            .await
            .map_err(|s| self.err("listing content", s))?;
        responses
            .into_iter()
            .flat_map(|r| r.info)
            .map(info_from_api)
            .collect()
    }
}
