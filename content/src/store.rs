//! The traits every content backend implements: [`ContentStore`] (blobs, labels,
//! ingests), [`LeaseManager`], [`ImageStore`] and [`GarbageCollector`], with
//! containerd's semantics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::Result;

/// Labels on content, leases and images: sorted, so anything derived from them is
/// deterministic.
pub type Labels = BTreeMap<String, String>;

/// Well-known label keys (containerd's).
pub mod labels {
    /// Marks content (or an image's target) as a GC root.
    pub const GC_ROOT: &str = "containerd.io/gc.root";
    /// `containerd.io/gc.ref.content` and any key that starts with
    /// `containerd.io/gc.ref.content.` name a digest the labelled blob references.
    pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
    /// On a compressed layer blob: the digest of its uncompressed tar (the diffID).
    pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
    /// On a lease: an RFC 3339 time after which the lease expires.
    pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
    /// On a lease: the lease is a flat lease (resources are not followed) when set.
    pub const GC_FLAT: &str = "containerd.io/gc.flat";
}

/// What the store knows about one committed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// When the blob was first committed.
    pub created_at: SystemTime,
    /// When its labels last changed.
    pub updated_at: SystemTime,
    /// The blob's labels.
    pub labels: Labels,
}

/// The state of an ingest (a writer in progress), keyed by its ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The ingest ref the writer was opened with.
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// Expected total size, 0 when unknown.
    pub total: u64,
    /// Expected digest, when the writer was opened with one.
    pub expected: Option<Digest>,
    /// When the ingest started.
    pub started_at: SystemTime,
    /// When it was last written.
    pub updated_at: SystemTime,
}

/// Which blobs a [`ContentStore::walk`] returns. Mirrors the label part of
/// containerd's filter syntax (`labels."k"==v`, `labels."k"`), combined with AND/OR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every blob.
    All,
    /// Blobs that carry label `key` (any value).
    HasLabel(String),
    /// Blobs whose label `key` equals `value`.
    LabelEquals(String, String),
    /// Blobs that match every filter.
    And(Vec<Filter>),
    /// Blobs that match at least one filter.
    Or(Vec<Filter>),
}

impl Filter {
    /// Whether `labels` pass this filter.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Filter::All => true,
            Filter::HasLabel(k) => labels.contains_key(k),
            Filter::LabelEquals(k, v) => labels.get(k) == Some(v),
            Filter::And(fs) => fs.iter().all(|f| f.matches(labels)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(labels)),
        }
    }
}

/// How to open a writer.
#[derive(Clone, Debug, Default)]
pub struct WriterOptions {
    /// The ingest ref: one writer at a time per ref; reopening a ref whose earlier
    /// writer was dropped resumes at its offset.
    pub reference: String,
    /// What the content is expected to be (size and digest), when known. If that
    /// digest is already committed the open fails with `AlreadyExists`.
    pub expected: Option<Descriptor>,
}

/// Random-access read of one committed blob.
#[async_trait]
pub trait ReaderAt: Send + Sync {
    /// The blob's size.
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at the end.
    async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize>;
    /// The blob's file on the local filesystem, for callers that can link or clone it
    /// instead of copying its bytes (an OCI layout written beside the store). The file
    /// is the committed, immutable blob: callers must never write to it. `None` (the
    /// default) for remote and in-memory stores.
    fn local_path(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A writer of one ingest: hashes as it writes, commits atomically.
#[async_trait]
pub trait ContentWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, buf: &[u8]) -> Result<()>;
    /// The digest of what has been written so far.
    fn digest(&self) -> Digest;
    /// Bytes written so far (including those of a resumed ingest).
    fn offset(&self) -> u64;
    /// The ingest's status.
    async fn status(&self) -> Result<Status>;
    /// Discards what was written past `size` (only `0` is required to be supported).
    async fn truncate(&mut self, size: u64) -> Result<()>;
    /// Makes the content visible under its digest. `size` of 0 means "don't check";
    /// `expected` is checked when given. On a mismatch nothing is left behind and the
    /// error names the ingest and both values. If the digest is already present the
    /// result is `AlreadyExists` (the ingest is removed, labels are not applied).
    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info>;
}

/// containerd's `content.Store`: blobs addressed by digest, their labels, and ingests.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// What the store knows about `digest`; `NotFound` naming it when absent.
    async fn info(&self, digest: &Digest) -> Result<Info>;
    /// Replaces the fields named by `fieldpaths` (`labels`, or `labels.<key>`; empty
    /// means all updatable fields) with those of `info`; returns the new info.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;
    /// Every committed blob that passes `filter`, sorted by digest.
    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>>;
    /// Removes a blob. Through a leased view ([`ContentStore::with_lease`]) this only
    /// removes the blob from the lease.
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Opens `desc` for random-access reads; `NotFound` naming the digest if missing.
    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn ReaderAt>>;
    /// Opens (or resumes) an ingest.
    async fn writer(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>>;
    /// The status of the ingest `reference`.
    async fn status(&self, reference: &str) -> Result<Status>;
    /// Every ingest in progress, sorted by ref.
    async fn list_statuses(&self) -> Result<Vec<Status>>;
    /// Removes an ingest and what it had written.
    async fn abort(&self, reference: &str) -> Result<()>;
    /// A view of this store whose commits (and ingests) are added to lease `lease`
    /// atomically with the commit, and whose `delete` removes from the lease only.
    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore>;
}

/// A lease: a set of resources kept from GC until the lease is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id.
    pub id: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Its labels.
    pub labels: Labels,
}

/// One resource held by a lease.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseResource {
    /// The resource id (a digest for content, a ref for an ingest).
    pub id: String,
    /// The kind: `content`, `ingests`, or `snapshots/<snapshotter>`.
    pub kind: String,
}

/// containerd's `leases.Manager`.
#[async_trait]
pub trait LeaseManager: Send + Sync {
    /// Creates a lease; a random id when `id` is `None`. `AlreadyExists` if taken.
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease>;
    /// Deletes a lease; its resources become collectable.
    async fn delete_lease(&self, id: &str) -> Result<()>;
    /// Every lease, sorted by id.
    async fn list_leases(&self) -> Result<Vec<Lease>>;
    /// Adds a resource to a lease.
    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()>;
    /// Removes a resource from a lease.
    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()>;
    /// The resources of a lease, sorted.
    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>>;
}

/// A named image record: a GC root pointing at a manifest or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The image name (`docker.io/library/alpine:3`, or any ref name).
    pub name: String,
    /// The root descriptor (manifest or index).
    pub target: Descriptor,
    /// The record's labels.
    pub labels: Labels,
    /// When the record was created.
    pub created_at: SystemTime,
    /// When it was last updated.
    pub updated_at: SystemTime,
}

/// containerd's `images.Store`.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// The record named `name`; `NotFound` naming it when absent.
    async fn get_image(&self, name: &str) -> Result<Image>;
    /// Every record, sorted by name.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Creates a record; `AlreadyExists` if the name is taken. Times are set by the store.
    async fn create_image(&self, image: Image) -> Result<Image>;
    /// Updates the fields named by `fieldpaths` (`target`, `labels`, `labels.<key>`;
    /// empty means all); `NotFound` if absent.
    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image>;
    /// Deletes a record; its content becomes collectable.
    async fn delete_image(&self, name: &str) -> Result<()>;
}

/// What one garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed, sorted.
    pub removed: Vec<Digest>,
    /// Bytes freed by removing them.
    pub bytes_freed: u64,
    /// Ingests removed (expired, not leased).
    pub removed_ingests: Vec<String>,
}

/// containerd's GC over content: mark from roots (image records, leases, blobs
/// labelled `containerd.io/gc.root`) following `containerd.io/gc.ref.content*` labels,
/// sweep the rest.
#[async_trait]
pub trait GarbageCollector: Send + Sync {
    /// Runs one mark-and-sweep and reports what it removed.
    async fn garbage_collect(&self) -> Result<GcReport>;
}
