//! containerd's `content.Store`: blobs addressed by digest ([`ReaderAt`] for reading),
//! ingests ([`ContentWriter`], [`WriterOptions`], [`Status`]) and their management
//! ([`Info`], [`Filter`]), with the everyday helpers over any store beside them.

mod abort_on_drop;
mod helpers;
mod provider;
mod readers;

pub use abort_on_drop::AbortOnDrop;
pub use helpers::{copy, open_writer, read_blob, write_blob};
pub use provider::{fetch_blob, BlobProvider, DistributionSource, StoreProvider};
pub use readers::{BlockingReader, ReaderAtStream};

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::label::Labels;
use strata_oci::Descriptor;
use strata_oci::Digest;

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

/// What a commit verifies: the size and digest given to [`ContentWriter::commit`] or,
/// failing those, the ones the writer was opened with. Shared by the backends.
pub(crate) struct CommitExpectation {
    size: Option<u64>,
    digest: Option<Digest>,
}

impl CommitExpectation {
    /// `size` (0: not given) and `digest` as passed to `commit`; `opened` as passed in
    /// [`WriterOptions::expected`].
    pub(crate) fn new(size: u64, digest: Option<&Digest>, opened: Option<&Descriptor>) -> Self {
        CommitExpectation {
            size: if size != 0 {
                Some(size)
            } else {
                opened.map(|d| d.size).filter(|s| *s != 0)
            },
            digest: digest.cloned().or_else(|| opened.map(|d| d.digest.clone())),
        }
    }

    /// A mismatch error naming the ingest `reference` and both values when what was
    /// written is not what was expected (the size is checked first).
    pub(crate) fn verify(&self, reference: &str, size: u64, digest: &Digest) -> Result<()> {
        if let Some(expected) = self.size.filter(|s| *s != size) {
            return Err(Error::SizeMismatch {
                subject: format!("ingest {reference}"),
                expected,
                actual: size,
            });
        }
        match &self.digest {
            Some(expected) if expected != digest => Err(Error::DigestMismatch {
                subject: format!("ingest {reference}"),
                expected: expected.to_string(),
                actual: digest.to_string(),
            }),
            _ => Ok(()),
        }
    }
}
