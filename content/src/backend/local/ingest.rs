//! Ingests: their records and directories, [`LocalWriter`] (hash while writing, commit
//! atomically), and opening, listing and aborting them.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::blobs::blob_info;
use super::db::{labels_json, sql, write_tx};
use super::files::{fsync_dir, io_err, try_flock};
use super::leases::add_resource;
use super::{Inner, LocalStore};
use crate::content::{CommitExpectation, ContentWriter, Info, Status, WriterOptions};
use crate::error::{Error, Result};
use crate::gc;
use crate::label::Labels;
use crate::lease::ResourceKind;
use crate::owner::{recorded_owner_is_dead, ProcessOwner};
use crate::unix_time::{from_unix_nanos, to_unix_nanos};
use strata_oci::Descriptor;
use strata_oci::{Digest, Digester};

pub(super) fn ingest_status(
    conn: &Connection,
    inner: &Inner,
    reference: &str,
) -> Result<Option<Status>> {
    let row = conn
        .query_row(
            "SELECT expected, started_at FROM ingests WHERE ref=?1",
            [reference],
            |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()
        .map_err(sql(format!("reading ingest {reference}")))?;
    let Some((expected, started)) = row else {
        return Ok(None);
    };
    let expected: Option<Descriptor> = expected.and_then(|e| serde_json::from_str(&e).ok());
    let started_at = from_unix_nanos(started);
    let (offset, updated_at) = match fs::metadata(inner.ingest_dir(reference).join("data")) {
        Ok(m) => (m.len(), m.modified().unwrap_or(started_at)),
        Err(_) => (0, started_at),
    };
    Ok(Some(Status {
        reference: reference.to_string(),
        offset,
        total: expected.as_ref().map(|d| d.size).unwrap_or(0),
        expected: expected.map(|d| d.digest),
        started_at,
        updated_at,
    }))
}

/// The file in an ingest's directory naming the [`ProcessOwner`] of its last writer.
const OWNER_FILE: &str = "owner";

/// Removes the ingests dead processes left: those whose recorded owner is dead, whose
/// lock no live writer holds and whose ref is not in `leased` (held by a live lease).
/// Returns their refs (or, for a directory that never got a ref, its name), sorted.
/// Reads only the ingest directory's small files: cheap enough for every open.
pub(super) fn reclaim_dead_ingests(
    tx: &Connection,
    inner: &Inner,
    leased: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let root = inner.ingest_root();
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = fs::read_to_string(dir.join(OWNER_FILE)).ok();
        if !recorded_owner_is_dead(owner.as_deref()) {
            continue;
        }
        let reference = fs::read_to_string(dir.join("ref")).ok();
        if reference.as_ref().is_some_and(|r| leased.contains(r)) {
            continue;
        }
        // Held while removing, so a writer resuming the ref now waits or fails cleanly.
        let lock = File::open(dir.join("lock")).ok();
        if let Some(l) = &lock {
            if !try_flock(l).unwrap_or(false) {
                continue;
            }
        }
        match reference {
            Some(r) if inner.ingest_dir(&r) == dir => {
                remove_ingest(tx, inner, &r)?;
                removed.push(r);
            }
            _ => {
                fs::remove_dir_all(&dir).map_err(io_err(format!(
                    "removing a dead process's ingest at {}",
                    dir.display()
                )))?;
                removed.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// Removes an ingest's directory, row and lease memberships.
pub(super) fn remove_ingest(tx: &Connection, inner: &Inner, reference: &str) -> Result<()> {
    tx.execute("DELETE FROM ingests WHERE ref=?1", [reference])
        .map_err(sql(format!("removing ingest {reference}")))?;
    tx.execute(
        "DELETE FROM lease_resources WHERE kind=?1 AND id=?2",
        params![ResourceKind::Ingest.to_string(), reference],
    )
    .map_err(sql(format!("removing ingest {reference} from leases")))?;
    let dir = inner.ingest_dir(reference);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("removing ingest {reference} at {}", dir.display()),
            e,
        )),
    }
}

/// How much of an ingest is handed to the disk at a time while it is written.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// Asks the kernel to start writing each [`WRITEBACK_WINDOW`] of an ingest the write
/// from `before` to `after` completed, without waiting for it. The fsync at commit then
/// finds most of a large blob already on disk instead of writing it all at once while
/// the export waits (about 50 ms per 100 MB on the bench machine). A hint only: errors
/// are ignored, and the commit's fsync still guarantees durability.
pub(super) fn start_writeback(file: &File, before: u64, after: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let first = before / WRITEBACK_WINDOW;
        let last = after / WRITEBACK_WINDOW;
        if last > first {
            let offset = (first * WRITEBACK_WINDOW) as libc::off64_t;
            let len = ((last - first) * WRITEBACK_WINDOW) as libc::off64_t;
            // SAFETY: a plain syscall on a file descriptor this writer owns.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, before, after);
}

struct LocalWriter {
    store: LocalStore,
    reference: String,
    dir: PathBuf,
    /// Held (flocked) for the writer's lifetime.
    _lock: File,
    /// `None` only while a blocking write is in flight.
    data: Option<(File, Digester)>,
    expected: Option<Descriptor>,
}

impl LocalWriter {
    async fn with_data<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut File, &mut Digester) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (mut file, mut dg) = self.data.take().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "ingest {}: an earlier write failed mid-way",
                self.reference
            ))
        })?;
        let (file, dg, res) = tokio::task::spawn_blocking(move || {
            let res = f(&mut file, &mut dg);
            (file, dg, res)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("write task failed: {e}")))?;
        self.data = Some((file, dg));
        res.map_err(io_err(format!("writing ingest {}", self.reference)))
    }
}

#[async_trait]
impl ContentWriter for LocalWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        let buf = buf.to_vec();
        self.with_data(move |f, dg| {
            let before = dg.len();
            f.write_all(&buf)?;
            dg.update(&buf);
            start_writeback(f, before, dg.len());
            Ok(())
        })
        .await
    }

    fn digest(&self) -> Digest {
        self.data
            .as_ref()
            .map(|(_, d)| d.digest())
            .unwrap_or_else(|| Digester::new().finish())
    }

    fn offset(&self) -> u64 {
        self.data.as_ref().map(|(_, d)| d.len()).unwrap_or(0)
    }

    async fn status(&self) -> Result<Status> {
        let r = self.reference.clone();
        self.store
            .db(move |c, inner| {
                ingest_status(c, inner, &r)?.ok_or_else(|| Error::NotFound(format!("ingest {r}")))
            })
            .await
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::InvalidArgument(format!(
                "ingest {}: truncate only supports size 0, got {size}",
                self.reference
            )));
        }
        self.with_data(|f, dg| {
            f.set_len(0)?;
            *dg = Digester::new();
            Ok(())
        })
        .await
    }

    async fn commit(
        mut self: Box<Self>,
        size: u64,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info> {
        let check = CommitExpectation::new(size, expected, self.expected.as_ref());
        let (file, dg) = self.data.take().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "ingest {}: an earlier write failed mid-way",
                self.reference
            ))
        })?;
        let store = self.store.clone();
        let lease = store.lease.clone();
        tokio::task::spawn_blocking(move || {
            let this = *self;
            let reference = this.reference.clone();
            let actual = dg.digest();
            let actual_size = dg.len();
            let mut conn = store.inner.conn();
            let inner = &store.inner;
            if let Err(err) = check.verify(&reference, actual_size, &actual) {
                drop(file);
                let tx = write_tx(&mut conn)?;
                remove_ingest(&tx, inner, &reference)?;
                tx.commit().map_err(sql(format!("removing ingest {reference}")))?;
                return Err(err);
            }
            file.sync_all()
                .map_err(io_err(format!("syncing ingest {reference}")))?;
            drop(file);
            let tx = write_tx(&mut conn)?;
            if let Some(lease) = &lease {
                add_resource(&tx, lease, &ResourceKind::Content, actual.as_str())?;
            }
            if blob_info(&tx, &actual)?.is_some() {
                remove_ingest(&tx, inner, &reference)?;
                tx.commit().map_err(sql(format!("committing {actual}")))?;
                return Err(Error::AlreadyExists(format!("content {actual}")));
            }
            let target = inner.blob_path(&actual);
            fs::rename(this.dir.join("data"), &target).map_err(io_err(format!(
                "moving ingest {reference} to {}",
                target.display()
            )))?;
            if let Some(parent) = target.parent() {
                fsync_dir(parent)?;
            }
            let now = to_unix_nanos(SystemTime::now());
            tx.execute(
                "INSERT INTO blobs(digest, size, created_at, updated_at, labels) VALUES (?1, ?2, ?3, ?3, ?4)",
                params![actual.as_str(), actual_size as i64, now, labels_json(&labels)],
            )
            .map_err(sql(format!("recording content {actual}")))?;
            remove_ingest(&tx, inner, &reference)?;
            tx.commit().map_err(sql(format!("committing {actual}")))?;
            Ok(Info {
                digest: actual,
                size: actual_size,
                created_at: from_unix_nanos(now),
                updated_at: from_unix_nanos(now),
                labels,
            })
        })
        .await
        .map_err(|e| Error::Unavailable(format!("commit task failed: {e}")))?
    }
}

impl LocalStore {
    /// Opens (or resumes) the ingest `opts.reference`: [`ContentStore::writer`].
    ///
    /// [`ContentStore::writer`]: crate::ContentStore::writer
    pub(super) async fn open_ingest(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
        if opts.reference.is_empty() {
            return Err(Error::InvalidArgument("empty ingest ref".into()));
        }
        let lease = self.lease.clone();
        let store = self.clone();
        self.db(move |c, inner| {
            let reference = opts.reference.clone();
            if let Some(exp) = &opts.expected {
                if blob_info(c, &exp.digest)?.is_some() {
                    if let Some(lease) = &lease {
                        let tx = write_tx(c)?;
                        add_resource(&tx, lease, &ResourceKind::Content, exp.digest.as_str())?;
                        tx.commit().map_err(sql(format!("leasing {}", exp.digest)))?;
                    }
                    return Err(Error::AlreadyExists(format!("content {}", exp.digest)));
                }
            }
            let dir = inner.ingest_dir(&reference);
            fs::create_dir_all(&dir).map_err(io_err(format!(
                "creating ingest {reference} at {}",
                dir.display()
            )))?;
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join("lock"))
                .map_err(io_err(format!("opening lock of ingest {reference}")))?;
            if !try_flock(&lock).map_err(io_err(format!("locking ingest {reference}")))? {
                return Err(Error::FailedPrecondition(format!(
                    "ingest ref {reference:?} is locked by another writer"
                )));
            }
            fs::write(dir.join("ref"), reference.as_bytes())
                .map_err(io_err(format!("writing ref of ingest {reference}")))?;
            fs::write(dir.join(OWNER_FILE), ProcessOwner::current().to_string())
                .map_err(io_err(format!("writing owner of ingest {reference}")))?;
            let tx = write_tx(c)?;
            let existing: Option<Option<String>> = tx
                .query_row("SELECT expected FROM ingests WHERE ref=?1", [&reference], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql(format!("reading ingest {reference}")))?;
            let expected_json = opts
                .expected
                .as_ref()
                .and_then(|d| serde_json::to_string(d).ok());
            let now = SystemTime::now();
            let expected = match existing {
                Some(prev) => {
                    if expected_json.is_some() {
                        tx.execute(
                            "UPDATE ingests SET expected=?2 WHERE ref=?1",
                            params![reference, expected_json],
                        )
                        .map_err(sql(format!("updating ingest {reference}")))?;
                        opts.expected.clone()
                    } else {
                        prev.and_then(|p| serde_json::from_str(&p).ok())
                    }
                }
                None => {
                    let expires = lease
                        .is_none()
                        .then(|| to_unix_nanos(now + gc::INGEST_EXPIRY));
                    tx.execute(
                        "INSERT INTO ingests(ref, expected, started_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        params![reference, expected_json, to_unix_nanos(now), expires],
                    )
                    .map_err(sql(format!("creating ingest {reference}")))?;
                    opts.expected.clone()
                }
            };
            if let Some(lease) = &lease {
                add_resource(&tx, lease, &ResourceKind::Ingest, &reference)?;
            }
            tx.commit().map_err(sql(format!("opening ingest {reference}")))?;
            let mut data = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(dir.join("data"))
                .map_err(io_err(format!("opening data of ingest {reference}")))?;
            // Resume: re-hash what an earlier writer of this ref left behind.
            let mut dg = Digester::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = data
                    .read(&mut buf)
                    .map_err(io_err(format!("re-reading ingest {reference}")))?;
                if n == 0 {
                    break;
                }
                dg.update(&buf[..n]);
            }
            Ok(Box::new(LocalWriter {
                store,
                reference,
                dir,
                _lock: lock,
                data: Some((data, dg)),
                expected,
            }) as Box<dyn ContentWriter>)
        })
        .await
    }

    /// The status of the ingest `reference`.
    pub(super) async fn ingest(&self, reference: &str) -> Result<Status> {
        let r = reference.to_string();
        self.db(move |c, inner| {
            ingest_status(c, inner, &r)?.ok_or_else(|| Error::NotFound(format!("ingest {r}")))
        })
        .await
    }

    /// Every ingest in progress, sorted by ref.
    pub(super) async fn ingests(&self) -> Result<Vec<Status>> {
        self.db(|c, inner| {
            let refs: Vec<String> = {
                let mut stmt = c
                    .prepare("SELECT ref FROM ingests ORDER BY ref")
                    .map_err(sql("listing ingests"))?;
                let rows = stmt
                    .query_map([], |r| r.get(0))
                    .map_err(sql("listing ingests"))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(sql("listing ingests"))?
            };
            let mut out = Vec::new();
            for r in refs {
                if let Some(s) = ingest_status(c, inner, &r)? {
                    out.push(s);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes an ingest unless a live writer holds it.
    pub(super) async fn abort_ingest(&self, reference: &str) -> Result<()> {
        let r = reference.to_string();
        self.db(move |c, inner| {
            let tx = write_tx(c)?;
            if ingest_status(&tx, inner, &r)?.is_none() {
                return Err(Error::NotFound(format!("ingest {r}")));
            }
            let lock_path = inner.ingest_dir(&r).join("lock");
            // Hold the lock while removing so a live writer is never pulled from under.
            let _lock = match File::open(&lock_path) {
                Ok(f) => {
                    if !try_flock(&f).map_err(io_err(format!("locking ingest {r}")))? {
                        return Err(Error::FailedPrecondition(format!(
                            "ingest ref {r:?} is locked by a live writer"
                        )));
                    }
                    Some(f)
                }
                Err(_) => None,
            };
            remove_ingest(&tx, inner, &r)?;
            tx.commit().map_err(sql(format!("aborting ingest {r}")))
        })
        .await
    }
}
