//! A content store in a running containerd, over its gRPC API on its unix socket.
//!
//! [`ContainerdStore`] implements [`ContentStore`], [`LeaseManager`], [`ImageStore`]
//! and [`GarbageCollector`] on containerd's content, leases and images services, in
//! one containerd namespace (the `containerd-namespace` request header). What it writes
//! is containerd's own content: `ctr images ls` shows the image records, and
//! containerd's GC keeps exactly what leases, image records and the
//! `containerd.io/gc.ref.content.*` labels reference.
//!
//! How containerd's API maps onto strata's contracts:
//! - Leases are the `containerd-lease` request header: [`ContentStore::with_lease`]
//!   returns a view that sends it, so containerd adds what the view commits (and its
//!   ingests) to the lease in the commit's own transaction. `delete` through a leased
//!   view removes the blob from the lease only (a lease `DeleteResource`).
//! - Writes go over the `Write` stream in chunks of at most 1 MiB (containerd refuses
//!   gRPC messages over 16 MiB). The running digest is containerd's own (a `STAT` after
//!   each write), so a resumed ingest reports the digest of all its bytes. A commit whose
//!   size or digest does not match is refused here with a typed error and the ingest is
//!   aborted, so nothing is left behind.
//! - An ingest ref is locked while a writer of this process holds it; a ref containerd
//!   reports locked (a writer in another process, or one whose stream is still closing)
//!   is retried for a moment, then reported as `FailedPrecondition`.
//! - containerd has no "collect now" call of its own: [`GarbageCollector::garbage_collect`]
//!   does what `ctr content prune references` does — it creates a throwaway lease and
//!   deletes it with `sync`, which makes containerd run a full mark-and-sweep before
//!   answering — and reports the blobs of this namespace that were there before and are
//!   gone after (so a blob another client deletes at the same moment is counted too).
//! - containerd collects garbage on its own too (shortly after it starts, and after
//!   enough changes): a blob that no lease, image record or labelled blob holds can
//!   vanish at any moment, as with containerd's own clients. Write under a lease
//!   ([`ContentStore::with_lease`]), as strata's exporter does, until the content is
//!   rooted.
//! - gRPC codes become typed errors: `NotFound`, `AlreadyExists`, `FailedPrecondition`,
//!   `InvalidArgument`, and `Unavailable` naming the socket when containerd can't be
//!   reached.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_client::services::v1 as api;
use containerd_client::tonic::{self, Code, Request};
use containerd_client::types::Descriptor as ApiDescriptor;
use futures::channel::mpsc;
use futures::SinkExt;

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::{
    ContentStore, ContentWriter, Filter, GarbageCollector, GcReport, Image, ImageStore, Info,
    Labels, Lease, LeaseManager, LeaseResource, ReaderAt, Status, WriterOptions,
};

/// The request header that selects a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The request header that puts what a request creates into a lease.
const LEASE_HEADER: &str = "containerd-lease";
/// The most bytes sent in one `Write` message (containerd's limit is 16 MiB).
const WRITE_CHUNK: usize = 1 << 20;
/// The most bytes asked for in one `Read` call.
const READ_CHUNK: usize = 4 << 20;
/// gRPC messages this client accepts (containerd's own server limit).
const MAX_MESSAGE: usize = 16 << 20;
/// How long to wait for a ref containerd reports locked before giving up.
const LOCKED_WAIT: Duration = Duration::from_secs(3);

/// A connection to containerd's gRPC socket, bound to one namespace.
///
/// Cheap to clone (clones share the connection). [`ContainerdStore`] and the
/// containerd snapshotter of `strata-snapshotter` are built on it.
#[derive(Clone, Debug)]
pub struct ContainerdConnection {
    channel: tonic::transport::Channel,
    socket: PathBuf,
    namespace: String,
}

impl ContainerdConnection {
    /// Connects to containerd at `socket`, in `namespace`, which must exist:
    /// `Unavailable` naming the socket when it does not exist or does not answer,
    /// `NotFound` naming the namespace when containerd has no such namespace.
    pub async fn connect(socket: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        let conn = Self::open(socket.as_ref(), namespace).await?;
        // containerd's namespaces `Get` answers for any name; `List` says which exist.
        let req = conn.request(api::ListNamespacesRequest {
            filter: String::new(),
        });
        let list = conn
            .namespaces()
            .list(req)
            .await
            .map_err(|s| conn.error("listing namespaces", s))?
            .into_inner();
        if list.namespaces.iter().any(|n| n.name == namespace) {
            Ok(conn)
        } else {
            Err(Error::NotFound(format!(
                "containerd namespace {namespace:?} does not exist on {} \
                 (create it with `ctr namespaces create {namespace}`)",
                conn.socket.display()
            )))
        }
    }

    /// Connects like [`ContainerdConnection::connect`], creating `namespace` if it does
    /// not exist yet (what `ctr` and containerd's Go client do implicitly).
    pub async fn connect_or_create(socket: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        let conn = Self::open(socket.as_ref(), namespace).await?;
        let req = conn.request(api::CreateNamespaceRequest {
            namespace: Some(api::Namespace {
                name: namespace.to_string(),
                labels: HashMap::new(),
            }),
        });
        match conn.namespaces().create(req).await {
            Ok(_) => Ok(conn),
            Err(s) if s.code() == Code::AlreadyExists => Ok(conn),
            Err(s) => Err(conn.error(&format!("creating namespace {namespace:?}"), s)),
        }
    }

    async fn open(socket: &Path, namespace: &str) -> Result<Self> {
        if namespace.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty containerd namespace name".into(),
            ));
        }
        match tokio::fs::metadata(socket).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Unavailable(format!(
                    "containerd socket {} does not exist (is containerd running?)",
                    socket.display()
                )))
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "containerd socket {}: {e}",
                    socket.display()
                )))
            }
        }
        let channel = containerd_client::connect(socket).await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot connect to containerd at {}: {}",
                socket.display(),
                error_chain(&e)
            ))
        })?;
        Ok(ContainerdConnection {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
        })
    }

    /// The socket this connection talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containerd namespace every request is made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying gRPC channel (for other containerd services).
    pub fn channel(&self) -> tonic::transport::Channel {
        self.channel.clone()
    }

    /// Wraps `msg` in a request carrying this connection's namespace header.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        self.request_in_lease(msg, None)
    }

    /// Wraps `msg` in a request carrying the namespace header and, when `lease` is
    /// given, the lease header (what the request creates joins that lease).
    pub fn request_in_lease<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        insert_header(&mut req, NAMESPACE_HEADER, &self.namespace);
        if let Some(lease) = lease {
            insert_header(&mut req, LEASE_HEADER, lease);
        }
        req
    }

    /// Turns a gRPC status of the request that was doing `what` into a typed error.
    /// `Unavailable` (and transport failures) name the socket.
    pub fn error(&self, what: &str, status: tonic::Status) -> Error {
        let msg = status.message();
        match status.code() {
            Code::NotFound => Error::NotFound(format!("{what}: {msg}")),
            Code::AlreadyExists => Error::AlreadyExists(format!("{what}: {msg}")),
            Code::FailedPrecondition | Code::OutOfRange => {
                Error::FailedPrecondition(format!("{what}: {msg}"))
            }
            Code::InvalidArgument => Error::InvalidArgument(format!("{what}: {msg}")),
            Code::Unavailable if msg.contains("locked") => {
                Error::FailedPrecondition(format!("{what}: {msg}"))
            }
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => Error::Unavailable(
                format!("containerd at {}: {what}: {msg}", self.socket.display()),
            ),
            Code::Unknown if msg.contains("transport") || msg.contains("connection") => {
                Error::Unavailable(format!(
                    "containerd at {}: {what}: {msg}",
                    self.socket.display()
                ))
            }
            code => Error::io(
                format!("containerd at {}: {what}: {code:?}", self.socket.display()),
                std::io::Error::other(msg.to_string()),
            ),
        }
    }

    fn content(&self) -> api::content_client::ContentClient<tonic::transport::Channel> {
        api::content_client::ContentClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn leases(&self) -> api::leases_client::LeasesClient<tonic::transport::Channel> {
        api::leases_client::LeasesClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn images(&self) -> api::images_client::ImagesClient<tonic::transport::Channel> {
        api::images_client::ImagesClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn namespaces(&self) -> api::namespaces_client::NamespacesClient<tonic::transport::Channel> {
        api::namespaces_client::NamespacesClient::new(self.channel())
    }
}

fn insert_header<T>(req: &mut Request<T>, key: &'static str, value: &str) {
    // Namespace and lease names are validated by containerd; a value that can't be a
    // header is sent as nothing and containerd reports the missing namespace.
    if let Ok(v) = value.parse() {
        req.metadata_mut().insert(key, v);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Ingest refs held by live writers of one store (and all its leased views).
type LiveRefs = Arc<Mutex<HashSet<String>>>;

/// The expected digest of each ingest this store opened with one: containerd 1.6
/// keeps an ingest's expected size but not its expected digest, so `status` fills it
/// in from here (for ingests opened by another process it stays unknown).
type Expected = Arc<Mutex<HashMap<String, Digest>>>;

/// containerd's content, leases and images services in one namespace, as strata's
/// content-store contracts. See the [module docs](self) for how they map.
///
/// ```no_run
/// use strata_content::{read_blob, write_blob, ContainerdStore, ContentStore, Descriptor,
///     Digest, Labels};
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
    conn: ContainerdConnection,
    lease: Option<String>,
    live: LiveRefs,
    /// Refs whose dropped writer's stream containerd has not finished yet.
    closing: LiveRefs,
    expected: Expected,
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

    fn req<T>(&self, msg: T) -> Request<T> {
        self.conn.request_in_lease(msg, self.lease.as_deref())
    }

    fn err(&self, what: impl AsRef<str>, status: tonic::Status) -> Error {
        self.conn.error(what.as_ref(), status)
    }

    /// `st` with the expected digest this store opened the ingest with, when
    /// containerd did not report one.
    fn with_expected(&self, mut st: Status) -> Status {
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
    async fn wait_closed(&self, reference: &str) {
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
    fn forget_expected(&self, reference: &str) {
        if let Ok(mut m) = self.expected.lock() {
            m.remove(reference);
        }
    }

    /// Every blob of the namespace, unfiltered, by digest.
    async fn sizes(&self) -> Result<BTreeMap<Digest, u64>> {
        Ok(self
            .list(Vec::new())
            .await?
            .into_iter()
            .map(|i| (i.digest, i.size))
            .collect())
    }

    async fn list(&self, filters: Vec<String>) -> Result<Vec<Info>> {
        let mut stream = self
            .conn
            .content()
            .list(self.req(api::ListContentRequest { filters }))
            .await
            .map_err(|s| self.err("listing content", s))?
            .into_inner();
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    for info in resp.info {
                        out.push(info_from_api(info)?);
                    }
                }
                Ok(None) => break,
                Err(s) => return Err(self.err("listing content", s)),
            }
        }
        Ok(out)
    }

    async fn open_writer(&self, opts: &WriterOptions) -> Result<Writer> {
        let reference = opts.reference.clone();
        let (total, expected) = match &opts.expected {
            Some(d) => (d.size, Some(d.digest.clone())),
            None => (0, None),
        };
        let (mut tx, rx) = mpsc::channel::<api::WriteContentRequest>(2);
        tx.send(api::WriteContentRequest {
            action: api::WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: total as i64,
            expected: expected.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::io(format!("ingest {reference}"), std::io::Error::other(e)))?;
        let what = format!("opening ingest {reference:?}");
        let mut responses = self
            .conn
            .content()
            .write(self.req(rx))
            .await
            .map_err(|s| self.err(&what, s))?
            .into_inner();
        let first = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(Error::Unavailable(format!(
                    "containerd at {}: {what}: the write stream closed",
                    self.conn.socket.display()
                )))
            }
            Err(s) => {
                return Err(match (s.code(), &expected) {
                    (Code::AlreadyExists, Some(d)) => {
                        Error::AlreadyExists(format!("content {d} (ingest {reference:?})"))
                    }
                    _ => self.err(&what, s),
                })
            }
        };
        let digest = Digest::parse(&first.digest)?;
        if let (Some(d), Ok(mut map)) = (&expected, self.expected.lock()) {
            map.insert(reference.clone(), d.clone());
        }
        Ok(Writer {
            store: self.clone(),
            reference,
            stream: Some(WriteStream { tx, responses }),
            offset: first.offset as u64,
            digest,
            total: first.total.max(0) as u64,
            expected,
            started_at: time_from(first.started_at),
            updated_at: time_from(first.updated_at),
        })
    }
}

fn time_from(ts: Option<prost_types::Timestamp>) -> SystemTime {
    ts.and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn labels_from(map: HashMap<String, String>) -> Labels {
    map.into_iter().collect()
}

fn labels_to(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn info_from_api(info: api::Info) -> Result<Info> {
    Ok(Info {
        digest: Digest::parse(&info.digest)?,
        size: info.size.max(0) as u64,
        created_at: time_from(info.created_at),
        updated_at: time_from(info.updated_at),
        labels: labels_from(info.labels),
    })
}

fn status_from_api(st: api::Status) -> Result<Status> {
    Ok(Status {
        expected: if st.expected.is_empty() {
            None
        } else {
            Some(Digest::parse(&st.expected)?)
        },
        reference: st.r#ref,
        offset: st.offset.max(0) as u64,
        total: st.total.max(0) as u64,
        started_at: time_from(st.started_at),
        updated_at: time_from(st.updated_at),
    })
}

fn descriptor_to_api(d: &Descriptor) -> ApiDescriptor {
    ApiDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size as i64,
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn descriptor_from_api(d: ApiDescriptor) -> Result<Descriptor> {
    let mut out = Descriptor::new(
        d.media_type,
        Digest::parse(&d.digest)?,
        d.size.max(0) as u64,
    );
    out.annotations = d.annotations.into_iter().collect();
    Ok(out)
}

fn image_from_api(img: api::Image) -> Result<Image> {
    let target = img.target.ok_or_else(|| {
        Error::InvalidArgument(format!("containerd image {:?} has no target", img.name))
    })?;
    Ok(Image {
        target: descriptor_from_api(target)?,
        name: img.name,
        labels: labels_from(img.labels),
        created_at: time_from(img.created_at),
        updated_at: time_from(img.updated_at),
    })
}

fn image_to_api(img: &Image) -> api::Image {
    api::Image {
        name: img.name.clone(),
        labels: labels_to(&img.labels),
        target: Some(descriptor_to_api(&img.target)),
        created_at: None,
        updated_at: None,
    }
}

/// A containerd filter string quoted the way its filter parser reads quoted strings.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `filter` in disjunctive normal form: a list of alternatives (containerd ORs the
/// filter strings it is given), each a list of conditions (ANDed, comma-separated).
/// `None` when it would be too large to be worth sending; the caller then filters
/// on this side only.
fn to_containerd_filters(filter: &Filter) -> Option<Vec<Vec<String>>> {
    const MAX_ALTERNATIVES: usize = 64;
    let out = match filter {
        Filter::All => vec![Vec::new()],
        Filter::HasLabel(k) => vec![vec![format!("labels.{}", quote(k))]],
        Filter::LabelEquals(k, v) => vec![vec![format!("labels.{}=={}", quote(k), quote(v))]],
        Filter::Or(fs) => {
            let mut out = Vec::new();
            for f in fs {
                out.extend(to_containerd_filters(f)?);
            }
            out
        }
        Filter::And(fs) => {
            let mut out = vec![Vec::new()];
            for f in fs {
                let alts = to_containerd_filters(f)?;
                let mut next = Vec::new();
                for a in &out {
                    for b in &alts {
                        let mut c: Vec<String> = a.clone();
                        c.extend(b.iter().cloned());
                        next.push(c);
                    }
                }
                out = next;
                if out.len() > MAX_ALTERNATIVES {
                    return None;
                }
            }
            out
        }
    };
    (out.len() <= MAX_ALTERNATIVES).then_some(out)
}

#[async_trait]
impl ContentStore for ContainerdStore {
    async fn info(&self, digest: &Digest) -> Result<Info> {
        let resp = self
            .conn
            .content()
            .info(self.req(api::InfoRequest {
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
            .update(self.req(api::UpdateRequest {
                info: Some(api::Info {
                    digest: info.digest.to_string(),
                    size: info.size as i64,
                    created_at: None,
                    updated_at: None,
                    labels: labels_to(&info.labels),
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: fieldpaths.to_vec(),
                }),
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
            .delete(self.req(api::DeleteContentRequest {
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
            .status(self.req(api::StatusRequest {
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
            .list_statuses(self.req(api::ListStatusesRequest {
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
            .abort(self.req(api::AbortRequest {
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
            .read(self.store.req(api::ReadContentRequest {
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

/// Marks an ingest ref as held by a live writer of this store until dropped.
struct LiveRef {
    live: LiveRefs,
    reference: String,
}

impl LiveRef {
    fn claim(live: &LiveRefs, reference: &str) -> Result<LiveRef> {
        let mut set = live
            .lock()
            .map_err(|_| Error::FailedPrecondition("ingest lock table poisoned".into()))?;
        if !set.insert(reference.to_string()) {
            return Err(Error::FailedPrecondition(format!(
                "ingest {reference:?} is locked by a live writer"
            )));
        }
        Ok(LiveRef {
            live: Arc::clone(live),
            reference: reference.to_string(),
        })
    }
}

impl Drop for LiveRef {
    fn drop(&mut self) {
        if let Ok(mut set) = self.live.lock() {
            set.remove(&self.reference);
        }
    }
}

/// The two halves of one `Write` stream.
struct WriteStream {
    tx: mpsc::Sender<api::WriteContentRequest>,
    responses: tonic::Streaming<api::WriteContentResponse>,
}

impl WriteStream {
    /// Ends the stream and waits for containerd to finish it (and release the ref).
    async fn close(mut self) {
        self.tx.close_channel();
        while let Ok(Some(_)) = self.responses.message().await {}
    }
}

/// One ingest's `Write` stream.
struct Writer {
    store: ContainerdStore,
    reference: String,
    stream: Option<WriteStream>,
    offset: u64,
    digest: Digest,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
}

impl Writer {
    /// Sends one request and waits for containerd's answer to it.
    async fn round_trip(
        &mut self,
        req: api::WriteContentRequest,
    ) -> Result<api::WriteContentResponse> {
        let what = format!("writing ingest {:?}", self.reference);
        let closed = || {
            Error::Unavailable(format!(
                "containerd at {}: {what}: the write stream closed",
                self.store.conn.socket.display()
            ))
        };
        let Some(stream) = self.stream.as_mut() else {
            return Err(closed());
        };
        if stream.tx.send(req).await.is_err() {
            // The stream ended: containerd's status, read next, says why.
        }
        match stream.responses.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(closed()),
            Err(s) => Err(self.store.err(&what, s)),
        }
    }

    /// Ends the stream and waits until containerd has released the ingest.
    async fn finish(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.close().await;
        }
    }

    /// Ends the stream, then aborts the ingest.
    async fn abort(mut self) {
        self.finish().await;
        self.store.forget_expected(&self.reference);
        if let Err(e) = self
            .store
            .conn
            .content()
            .abort(self.store.req(api::AbortRequest {
                r#ref: self.reference.clone(),
            }))
            .await
        {
            tracing::warn!(reference = %self.reference, "aborting a failed ingest: {e}");
        }
    }
}

impl Drop for Writer {
    /// A writer dropped mid-ingest: its stream is ended in the background, and the
    /// ref counts as closing (so `abort` and a new writer wait for containerd to
    /// release it) until containerd has finished the stream.
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Ok(mut closing) = self.store.closing.lock() {
            closing.insert(self.reference.clone());
        }
        let closing = Arc::clone(&self.store.closing);
        let reference = self.reference.clone();
        handle.spawn(async move {
            stream.close().await;
            if let Ok(mut closing) = closing.lock() {
                closing.remove(&reference);
            }
        });
    }
}

/// A [`Writer`] and the claim on its ref, released together.
struct LiveWriter {
    w: Writer,
    _guard: LiveRef,
}

#[async_trait]
impl ContentWriter for LiveWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        for chunk in buf.chunks(WRITE_CHUNK) {
            let offset = self.w.offset;
            let resp = self
                .w
                .round_trip(api::WriteContentRequest {
                    action: api::WriteAction::Write as i32,
                    r#ref: self.w.reference.clone(),
                    offset: offset as i64,
                    data: chunk.to_vec(),
                    ..Default::default()
                })
                .await?;
            let now = resp.offset.max(0) as u64;
            if now != offset + chunk.len() as u64 {
                return Err(Error::io(
                    format!("writing ingest {:?}", self.w.reference),
                    std::io::Error::other(format!(
                        "containerd is at offset {now} after writing {} bytes at {offset}",
                        chunk.len()
                    )),
                ));
            }
            self.w.offset = now;
            // containerd hashes as it writes and answers with the digest so far, which
            // covers a resumed ingest's earlier bytes too.
            self.w.digest = Digest::parse(&resp.digest)?;
            self.w.updated_at = SystemTime::now();
        }
        Ok(())
    }

    fn digest(&self) -> Digest {
        self.w.digest.clone()
    }

    fn offset(&self) -> u64 {
        self.w.offset
    }

    async fn status(&self) -> Result<Status> {
        Ok(Status {
            reference: self.w.reference.clone(),
            offset: self.w.offset,
            total: self.w.total,
            expected: self.w.expected.clone(),
            started_at: self.w.started_at,
            updated_at: self.w.updated_at,
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::InvalidArgument(format!(
                "ingest {:?}: only truncating to 0 is supported, not {size}",
                self.w.reference
            )));
        }
        // containerd truncates when a write says offset 0 on a non-empty ingest.
        let resp = self
            .w
            .round_trip(api::WriteContentRequest {
                action: api::WriteAction::Write as i32,
                r#ref: self.w.reference.clone(),
                offset: 0,
                ..Default::default()
            })
            .await?;
        self.w.offset = resp.offset.max(0) as u64;
        self.w.digest = Digest::parse(&resp.digest)?;
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info> {
        let LiveWriter { mut w, _guard } = *self;
        let subject = format!("ingest {:?}", w.reference);
        let mismatch = if size != 0 && size != w.offset {
            Some(Error::SizeMismatch {
                subject: subject.clone(),
                expected: size,
                actual: w.offset,
            })
        } else if let Some(want) = expected.or(w.expected.as_ref()) {
            (*want != w.digest).then(|| Error::DigestMismatch {
                subject: subject.clone(),
                expected: want.to_string(),
                actual: w.digest.to_string(),
            })
        } else {
            None
        };
        if let Some(e) = mismatch {
            w.abort().await;
            return Err(e);
        }
        let digest = w.digest.clone();
        let resp = w
            .round_trip(api::WriteContentRequest {
                action: api::WriteAction::Commit as i32,
                r#ref: w.reference.clone(),
                total: w.offset as i64,
                expected: digest.to_string(),
                offset: w.offset as i64,
                labels: labels_to(&labels),
                ..Default::default()
            })
            .await;
        // Let containerd finish the stream (it releases the ref) before the ref is
        // released here.
        w.finish().await;
        if matches!(resp, Ok(_) | Err(Error::AlreadyExists(_))) {
            w.store.forget_expected(&w.reference);
        }
        match resp {
            Ok(_) => {}
            Err(Error::AlreadyExists(_)) => {
                return Err(Error::AlreadyExists(format!(
                    "content {digest} ({subject})"
                )))
            }
            Err(e) => {
                w.abort().await;
                return Err(e);
            }
        }
        let store = w.store.clone();
        drop(w);
        store.info(&digest).await
    }
}

#[async_trait]
impl LeaseManager for ContainerdStore {
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease> {
        // The same id rules as the other backends; generated ids are prefixed, since a
        // containerd is shared with other clients.
        let id = match id {
            Some(_) => crate::lease::new_lease_id(id)?,
            None => format!("strata-{}", crate::lease::new_lease_id(None)?),
        };
        let resp = self
            .conn
            .leases()
            .create(self.conn.request(api::CreateRequest {
                id: id.clone(),
                labels: labels_to(&labels),
            }))
            .await
            .map_err(|s| self.err(format!("creating lease {id:?}"), s))?
            .into_inner();
        let lease = resp
            .lease
            .ok_or_else(|| Error::NotFound(format!("lease {id:?}: none returned")))?;
        Ok(Lease {
            id: lease.id,
            created_at: time_from(lease.created_at),
            labels: labels_from(lease.labels),
        })
    }

    async fn delete_lease(&self, id: &str) -> Result<()> {
        self.conn
            .leases()
            .delete(self.conn.request(api::DeleteRequest {
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
            .list(self.conn.request(api::ListRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("listing leases", s))?
            .into_inner();
        let mut out: Vec<Lease> = resp
            .leases
            .into_iter()
            .map(|l| Lease {
                id: l.id,
                created_at: time_from(l.created_at),
                labels: labels_from(l.labels),
            })
            .collect();
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
            .add_resource(self.conn.request(api::AddResourceRequest {
                id: lease.to_string(),
                resource: Some(api::Resource {
                    id: resource.id,
                    r#type: resource.kind.to_string(),
                }),
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
            .delete_resource(self.conn.request(api::DeleteResourceRequest {
                id: lease.to_string(),
                resource: Some(api::Resource {
                    id: resource.id,
                    r#type: resource.kind.to_string(),
                }),
            }))
            .await
            .map_err(|s| self.err(what, s))?;
        Ok(())
    }

    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>> {
        let resp = self
            .conn
            .leases()
            .list_resources(self.conn.request(api::ListResourcesRequest {
                id: lease.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("resources of lease {lease:?}"), s))?
            .into_inner();
        let mut out = resp
            .resources
            .into_iter()
            .map(|r| {
                Ok(LeaseResource {
                    kind: r.r#type.parse()?,
                    id: r.id,
                })
            })
            .collect::<Result<Vec<LeaseResource>>>()?;
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl ImageStore for ContainerdStore {
    async fn get_image(&self, name: &str) -> Result<Image> {
        let resp = self
            .conn
            .images()
            .get(self.conn.request(api::GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(|s| self.err(format!("image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}")))?;
        image_from_api(img)
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let resp = self
            .conn
            .images()
            .list(self.conn.request(api::ListImagesRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(|s| self.err("listing images", s))?
            .into_inner();
        let mut out = resp
            .images
            .into_iter()
            .map(image_from_api)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create_image(&self, image: Image) -> Result<Image> {
        let name = image.name.clone();
        let resp = self
            .conn
            .images()
            .create(self.conn.request(api::CreateImageRequest {
                image: Some(image_to_api(&image)),
                source_date_epoch: None,
            }))
            .await
            .map_err(|s| self.err(format!("creating image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}: none returned")))?;
        image_from_api(img)
    }

    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let name = image.name.clone();
        let resp = self
            .conn
            .images()
            .update(self.conn.request(api::UpdateImageRequest {
                image: Some(image_to_api(&image)),
                update_mask: Some(prost_types::FieldMask {
                    paths: fieldpaths.to_vec(),
                }),
                source_date_epoch: None,
            }))
            .await
            .map_err(|s| self.err(format!("updating image {name:?}"), s))?
            .into_inner();
        let img = resp
            .image
            .ok_or_else(|| Error::NotFound(format!("image {name:?}: none returned")))?;
        image_from_api(img)
    }

    async fn delete_image(&self, name: &str) -> Result<()> {
        self.conn
            .images()
            .delete(self.conn.request(api::DeleteImageRequest {
                name: name.to_string(),
                sync: false,
                target: None,
            }))
            .await
            .map_err(|s| self.err(format!("deleting image {name:?}"), s))?;
        Ok(())
    }
}

#[async_trait]
impl GarbageCollector for ContainerdStore {
    async fn garbage_collect(&self) -> Result<GcReport> {
        let before = self.sizes().await?;
        // `ctr content prune references` semantics: deleting a lease with `sync` makes
        // containerd run its GC and answer once it is done.
        let lease = self.create_lease(None, Labels::new()).await?;
        self.conn
            .leases()
            .delete(self.conn.request(api::DeleteRequest {
                id: lease.id.clone(),
                sync: true,
            }))
            .await
            .map_err(|s| self.err(format!("running GC (deleting lease {:?})", lease.id), s))?;
        let after = self.sizes().await?;
        let mut report = GcReport::default();
        for (digest, size) in before {
            if !after.contains_key(&digest) {
                report.bytes_freed += size;
                report.removed.push(digest);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_containerd_syntax() {
        let f = Filter::And(vec![
            Filter::Or(vec![
                Filter::HasLabel("a".into()),
                Filter::LabelEquals("b".into(), "x\"y".into()),
            ]),
            Filter::HasLabel("c".into()),
        ]);
        let alts: Vec<String> = to_containerd_filters(&f)
            .expect("small filter")
            .into_iter()
            .map(|a| a.join(","))
            .collect();
        assert_eq!(
            alts,
            [
                r#"labels."a",labels."c""#,
                r#"labels."b"=="x\"y",labels."c""#
            ]
        );
        assert_eq!(to_containerd_filters(&Filter::Or(vec![])), Some(vec![]));
        assert_eq!(to_containerd_filters(&Filter::All), Some(vec![vec![]]));
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nope.sock");
        match ContainerdStore::connect(&socket, "default").await {
            Err(Error::Unavailable(m)) => {
                assert!(m.contains(&socket.display().to_string()), "{m}")
            }
            other => panic!("connecting to a missing socket gave {other:?}"),
        }
        // A file that is not a socket: containerd cannot be reached there either.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").expect("write");
        match ContainerdStore::connect(&file, "default").await {
            Err(Error::Unavailable(m)) => assert!(m.contains(&file.display().to_string()), "{m}"),
            other => panic!("connecting to a plain file gave {other:?}"),
        }
    }
}
