//! [`LocalStore`]: a directory that is an OCI image layout, plus a SQLite database
//! beside it for labels, leases, image records and ingest state.
//!
//! ```text
//! <root>/oci-layout              {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json              one manifest entry per image record, sorted by name
//! <root>/blobs/sha256/<hex>      committed blobs
//! <root>/.strata/meta.db         SQLite (WAL): blobs+labels, leases, images, ingests
//! <root>/.strata/ingest/<h>/     one ingest: `ref`, `data`, `lock` (h = sha256 of ref)
//! ```
//!
//! Consistency between processes: every change of metadata runs in an `IMMEDIATE`
//! SQLite transaction (the database's single writer lock, with a busy timeout). A commit
//! renames its verified, fsynced data into `blobs/` and records the blob and its lease
//! membership inside one such transaction, and garbage collection holds one for its whole
//! mark and sweep, so a commit in another process can never be swept half-way. A live
//! writer holds an `flock` on its ingest's `lock` file; a second writer of the same ref,
//! in this or another process, gets `FailedPrecondition`.
//!
//! Blob files in `blobs/sha256` that the database does not know (left by a crash between
//! rename and database commit, or written by another tool) are invisible through the API
//! and removed by the next garbage collection.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::descriptor::{media_types, Descriptor};
use crate::digest::{Digest, Digester};
use crate::error::{Error, Result};
use crate::fields::{apply_image_paths, apply_label_paths, from_nanos, new_lease_id, to_nanos};
use crate::gc::{self, KIND_CONTENT, KIND_INGESTS};
use crate::store::{
    ContentStore, ContentWriter, Filter, GarbageCollector, GcReport, Image, ImageStore, Info,
    Labels, Lease, LeaseManager, LeaseResource, ReaderAt, Status, WriterOptions,
};

/// The OCI annotation naming an image in an image layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full image name in `index.json`.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, labels TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases(id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,
  labels TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lease_resources(lease TEXT NOT NULL, kind TEXT NOT NULL,
  id TEXT NOT NULL, PRIMARY KEY(lease, kind, id));
CREATE TABLE IF NOT EXISTS images(name TEXT PRIMARY KEY, target TEXT NOT NULL,
  labels TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ingests(ref TEXT PRIMARY KEY, expected TEXT,
  started_at INTEGER NOT NULL, expires_at INTEGER);
";

/// A persistent content store, lease manager, image store and garbage collector whose
/// root directory is a valid OCI image layout. Clones share one database connection.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
    lease: Option<String>,
}

struct Inner {
    root: PathBuf,
    conn: Mutex<Connection>,
}

fn sql(context: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Unavailable(format!("metadata database, {context}: {e}"))
}

fn io_err(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(context.to_string(), e)
}

fn labels_json(l: &Labels) -> String {
    serde_json::to_string(l).unwrap_or_else(|_| "{}".into())
}

fn parse_labels(s: &str, what: &str) -> Result<Labels> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unavailable(format!("corrupt labels of {what} in database: {e}")))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// Writes `bytes` to `path` atomically: temp file beside it, fsync, rename, dir fsync.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4()
    ));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    fsync_dir(dir)
}

/// Tries to take an exclusive `flock` without waiting; `Ok(false)` if another holder has it.
fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, owned file descriptor has no memory-safety conditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

impl Inner {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.root
            .join(".strata")
            .join("ingest")
            .join(Digest::sha256_of(reference.as_bytes()).hex())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // The connection holds no Rust-side invariants a panic could break.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("starting a write transaction"))
}

fn lease_exists(tx: &Connection, lease: &str) -> Result<()> {
    let found: Option<i64> = tx
        .query_row("SELECT 1 FROM leases WHERE id=?1", [lease], |r| r.get(0))
        .optional()
        .map_err(sql(format!("looking up lease {lease}")))?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::NotFound(format!("lease {lease}")))
}

fn add_resource(tx: &Connection, lease: &str, kind: &str, id: &str) -> Result<()> {
    lease_exists(tx, lease)?;
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources(lease, kind, id) VALUES (?1, ?2, ?3)",
        params![lease, kind, id],
    )
    .map_err(sql(format!("adding {kind} {id} to lease {lease}")))?;
    Ok(())
}

fn blob_info(conn: &Connection, d: &Digest) -> Result<Option<Info>> {
    conn.query_row(
        "SELECT size, created_at, updated_at, labels FROM blobs WHERE digest=?1",
        [d.as_str()],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        },
    )
    .optional()
    .map_err(sql(format!("reading content {d}")))?
    .map(|(size, c, u, l)| {
        Ok(Info {
            digest: d.clone(),
            size: size as u64,
            created_at: from_nanos(c),
            updated_at: from_nanos(u),
            labels: parse_labels(&l, d.as_str())?,
        })
    })
    .transpose()
}

fn all_blobs(conn: &Connection) -> Result<Vec<Info>> {
    let mut stmt = conn
        .prepare("SELECT digest, size, created_at, updated_at, labels FROM blobs ORDER BY digest")
        .map_err(sql("listing content"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(sql("listing content"))?;
    let mut out = Vec::new();
    for row in rows {
        let (d, size, c, u, l) = row.map_err(sql("listing content"))?;
        let digest = Digest::parse(&d)?;
        out.push(Info {
            labels: parse_labels(&l, &d)?,
            digest,
            size: size as u64,
            created_at: from_nanos(c),
            updated_at: from_nanos(u),
        });
    }
    Ok(out)
}

fn all_images(conn: &Connection) -> Result<Vec<Image>> {
    let mut stmt = conn
        .prepare("SELECT name, target, labels, created_at, updated_at FROM images ORDER BY name")
        .map_err(sql("listing images"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(sql("listing images"))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, target, labels, c, u) = row.map_err(sql("listing images"))?;
        let target: Descriptor = serde_json::from_str(&target).map_err(|e| {
            Error::Unavailable(format!("corrupt target of image {name} in database: {e}"))
        })?;
        out.push(Image {
            labels: parse_labels(&labels, &name)?,
            name,
            target,
            created_at: from_nanos(c),
            updated_at: from_nanos(u),
        });
    }
    Ok(out)
}

fn all_leases(conn: &Connection) -> Result<Vec<(Lease, Vec<LeaseResource>)>> {
    let mut stmt = conn
        .prepare("SELECT id, created_at, labels FROM leases ORDER BY id")
        .map_err(sql("listing leases"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql("listing leases"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, c, l) = row.map_err(sql("listing leases"))?;
        let resources = lease_resources(conn, &id)?;
        out.push((
            Lease {
                labels: parse_labels(&l, &id)?,
                id,
                created_at: from_nanos(c),
            },
            resources,
        ));
    }
    Ok(out)
}

fn lease_resources(conn: &Connection, lease: &str) -> Result<Vec<LeaseResource>> {
    let mut stmt = conn
        .prepare("SELECT id, kind FROM lease_resources WHERE lease=?1 ORDER BY id, kind")
        .map_err(sql(format!("listing resources of lease {lease}")))?;
    let rows = stmt
        .query_map([lease], |r| {
            Ok(LeaseResource {
                id: r.get(0)?,
                kind: r.get(1)?,
            })
        })
        .map_err(sql(format!("listing resources of lease {lease}")))?;
    let mut v = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql(format!("listing resources of lease {lease}")))?;
    v.sort();
    Ok(v)
}

/// Regenerates `index.json` from the image records visible in `conn`.
fn write_index(conn: &Connection, root: &Path) -> Result<()> {
    let manifests: Vec<Descriptor> = all_images(conn)?
        .into_iter()
        .map(|img| {
            let mut d = img.target;
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_string(), img.name.clone());
            d.annotations
                .insert(ANNOTATION_CONTAINERD_IMAGE_NAME.to_string(), img.name);
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec_pretty(&index)
        .map_err(|e| Error::InvalidArgument(format!("encoding index.json: {e}")))?;
    write_atomic(&root.join("index.json"), &bytes)
}

fn ingest_status(conn: &Connection, inner: &Inner, reference: &str) -> Result<Option<Status>> {
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
    let started_at = from_nanos(started);
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

/// Removes an ingest's directory, row and lease memberships.
fn remove_ingest(tx: &Connection, inner: &Inner, reference: &str) -> Result<()> {
    tx.execute("DELETE FROM ingests WHERE ref=?1", [reference])
        .map_err(sql(format!("removing ingest {reference}")))?;
    tx.execute(
        "DELETE FROM lease_resources WHERE kind=?1 AND id=?2",
        params![KIND_INGESTS, reference],
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

impl LocalStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<LocalStore> {
        let root = root.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(root))
            .await
            .map_err(|e| Error::Unavailable(format!("opening store: {e}")))?
    }

    fn open_blocking(root: PathBuf) -> Result<LocalStore> {
        for dir in [
            root.join("blobs").join("sha256"),
            root.join(".strata").join("ingest"),
        ] {
            fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let db_path = root.join(".strata").join("meta.db");
        let mut conn =
            Connection::open(&db_path).map_err(sql(format!("opening {}", db_path.display())))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(sql("setting busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("setting synchronous"))?;
        let tx = write_tx(&mut conn)?;
        tx.execute_batch(SCHEMA).map_err(sql("creating schema"))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !root.join("index.json").exists() {
            write_index(&tx, &root)?;
        }
        tx.commit().map_err(sql("creating schema"))?;
        Ok(LocalStore {
            inner: Arc::new(Inner {
                root,
                conn: Mutex::new(conn),
            }),
            lease: None,
        })
    }

    /// The root directory (an OCI image layout).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the blob `digest` lives, whether or not it is present.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blob_path(digest)
    }

    /// Opens the committed blob `digest` as a plain file, for blocking code that wants
    /// `std::io::Read` without going through the async [`ReaderAt`].
    pub fn open_blob_file(&self, digest: &Digest) -> Result<File> {
        File::open(self.inner.blob_path(digest)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("content {digest}"))
            } else {
                Error::io(format!("opening content {digest}"), e)
            }
        })
    }

    /// Runs `f` with the database connection on a blocking thread.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn();
            f(&mut conn, &inner)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("database task failed: {e}")))?
    }
}

struct LocalReader {
    file: Arc<File>,
    size: u64,
    path: PathBuf,
}

#[async_trait]
impl ReaderAt for LocalReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.size - offset) as usize);
        let file = self.file.clone();
        let data = tokio::task::spawn_blocking(move || {
            let mut v = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match file.read_at(&mut v[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            v.truncate(got);
            Ok(v)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("read task failed: {e}")))?
        .map_err(io_err(format!("reading blob at offset {offset}")))?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

/// How much of an ingest is handed to the disk at a time while it is written.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// Asks the kernel to start writing each [`WRITEBACK_WINDOW`] of an ingest the write
/// from `before` to `after` completed, without waiting for it. The fsync at commit then
/// finds most of a large blob already on disk instead of writing it all at once while
/// the export waits (about 50 ms per 100 MB on the bench machine). A hint only: errors
/// are ignored, and the commit's fsync still guarantees durability.
fn start_writeback(file: &File, before: u64, after: u64) {
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
        let expected_digest = expected
            .cloned()
            .or_else(|| self.expected.as_ref().map(|d| d.digest.clone()));
        let expected_size = if size != 0 {
            Some(size)
        } else {
            self.expected.as_ref().map(|d| d.size).filter(|s| *s != 0)
        };
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
            let mismatch = if expected_size.is_some_and(|s| s != actual_size) {
                Some(Error::SizeMismatch {
                    subject: format!("ingest {reference}"),
                    expected: expected_size.unwrap_or(0),
                    actual: actual_size,
                })
            } else {
                match &expected_digest {
                    Some(e) if *e != actual => Some(Error::DigestMismatch {
                        subject: format!("ingest {reference}"),
                        expected: e.to_string(),
                        actual: actual.to_string(),
                    }),
                    _ => None,
                }
            };
            if let Some(err) = mismatch {
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
                add_resource(&tx, lease, KIND_CONTENT, actual.as_str())?;
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
            let now = to_nanos(SystemTime::now());
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
                created_at: from_nanos(now),
                updated_at: from_nanos(now),
                labels,
            })
        })
        .await
        .map_err(|e| Error::Unavailable(format!("commit task failed: {e}")))?
    }
}

#[async_trait]
impl ContentStore for LocalStore {
    async fn info(&self, digest: &Digest) -> Result<Info> {
        let d = digest.clone();
        self.db(move |c, _| {
            blob_info(c, &d)?.ok_or_else(|| Error::NotFound(format!("content {d}")))
        })
        .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let paths = fieldpaths.to_vec();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            let mut cur = blob_info(&tx, &info.digest)?
                .ok_or_else(|| Error::NotFound(format!("content {}", info.digest)))?;
            apply_label_paths(&mut cur.labels, &info.labels, &paths, &[])?;
            cur.updated_at = SystemTime::now();
            tx.execute(
                "UPDATE blobs SET labels=?2, updated_at=?3 WHERE digest=?1",
                params![
                    cur.digest.as_str(),
                    labels_json(&cur.labels),
                    to_nanos(cur.updated_at)
                ],
            )
            .map_err(sql(format!("updating content {}", cur.digest)))?;
            tx.commit()
                .map_err(sql(format!("updating content {}", cur.digest)))?;
            Ok(cur)
        })
        .await
    }

    async fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let filter = filter.clone();
        self.db(move |c, _| {
            Ok(all_blobs(c)?
                .into_iter()
                .filter(|i| filter.matches(&i.labels))
                .collect())
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let d = digest.clone();
        let lease = self.lease.clone();
        self.db(move |c, inner| {
            let tx = write_tx(c)?;
            if let Some(lease) = lease {
                lease_exists(&tx, &lease)?;
                tx.execute(
                    "DELETE FROM lease_resources WHERE lease=?1 AND kind=?2 AND id=?3",
                    params![lease, KIND_CONTENT, d.as_str()],
                )
                .map_err(sql(format!("removing {d} from lease {lease}")))?;
            } else {
                let n = tx
                    .execute("DELETE FROM blobs WHERE digest=?1", [d.as_str()])
                    .map_err(sql(format!("deleting content {d}")))?;
                if n == 0 {
                    return Err(Error::NotFound(format!("content {d}")));
                }
                match fs::remove_file(inner.blob_path(&d)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("deleting content {d}"), e)),
                }
            }
            tx.commit().map_err(sql(format!("deleting content {d}")))
        })
        .await
    }

    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn ReaderAt>> {
        let d = desc.digest.clone();
        self.db(move |c, inner| {
            let info = blob_info(c, &d)?.ok_or_else(|| Error::NotFound(format!("content {d}")))?;
            let path = inner.blob_path(&d);
            let file = File::open(&path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Error::NotFound(format!("content {d} (blob file missing)"))
                } else {
                    Error::io(format!("opening content {d}"), e)
                }
            })?;
            // The file's own length, so a damaged blob reads as what is on disk.
            let size = file
                .metadata()
                .map_err(io_err(format!("reading size of content {d}")))?
                .len();
            if size != info.size {
                tracing::warn!(digest = %d, recorded = info.size, on_disk = size, "blob size differs from its record");
            }
            Ok(Box::new(LocalReader {
                file: Arc::new(file),
                size,
                path,
            }) as Box<dyn ReaderAt>)
        })
        .await
    }

    async fn writer(&self, opts: WriterOptions) -> Result<Box<dyn ContentWriter>> {
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
                        add_resource(&tx, lease, KIND_CONTENT, exp.digest.as_str())?;
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
                        .then(|| to_nanos(now + gc::INGEST_EXPIRY));
                    tx.execute(
                        "INSERT INTO ingests(ref, expected, started_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        params![reference, expected_json, to_nanos(now), expires],
                    )
                    .map_err(sql(format!("creating ingest {reference}")))?;
                    opts.expected.clone()
                }
            };
            if let Some(lease) = &lease {
                add_resource(&tx, lease, KIND_INGESTS, &reference)?;
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

    async fn status(&self, reference: &str) -> Result<Status> {
        let r = reference.to_string();
        self.db(move |c, inner| {
            ingest_status(c, inner, &r)?.ok_or_else(|| Error::NotFound(format!("ingest {r}")))
        })
        .await
    }

    async fn list_statuses(&self) -> Result<Vec<Status>> {
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

    async fn abort(&self, reference: &str) -> Result<()> {
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

    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore> {
        Arc::new(LocalStore {
            inner: self.inner.clone(),
            lease: Some(lease.to_string()),
        })
    }
}

#[async_trait]
impl LeaseManager for LocalStore {
    async fn create_lease(&self, id: Option<&str>, labels: Labels) -> Result<Lease> {
        let id = new_lease_id(id)?;
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            if lease_exists(&tx, &id).is_ok() {
                return Err(Error::AlreadyExists(format!("lease {id}")));
            }
            let now = SystemTime::now();
            tx.execute(
                "INSERT INTO leases(id, created_at, labels) VALUES (?1, ?2, ?3)",
                params![id, to_nanos(now), labels_json(&labels)],
            )
            .map_err(sql(format!("creating lease {id}")))?;
            tx.commit().map_err(sql(format!("creating lease {id}")))?;
            Ok(Lease {
                id,
                created_at: from_nanos(to_nanos(now)),
                labels,
            })
        })
        .await
    }

    async fn delete_lease(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            let n = tx
                .execute("DELETE FROM leases WHERE id=?1", [&id])
                .map_err(sql(format!("deleting lease {id}")))?;
            if n == 0 {
                return Err(Error::NotFound(format!("lease {id}")));
            }
            tx.execute("DELETE FROM lease_resources WHERE lease=?1", [&id])
                .map_err(sql(format!("deleting lease {id}")))?;
            tx.commit().map_err(sql(format!("deleting lease {id}")))
        })
        .await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        self.db(|c, _| Ok(all_leases(c)?.into_iter().map(|(l, _)| l).collect()))
            .await
    }

    async fn add_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            add_resource(&tx, &lease, &resource.kind, &resource.id)?;
            tx.commit().map_err(sql(format!("adding to lease {lease}")))
        })
        .await
    }

    async fn delete_resource(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            let tx = write_tx(c)?;
            lease_exists(&tx, &lease)?;
            tx.execute(
                "DELETE FROM lease_resources WHERE lease=?1 AND kind=?2 AND id=?3",
                params![lease, resource.kind, resource.id],
            )
            .map_err(sql(format!("removing from lease {lease}")))?;
            tx.commit()
                .map_err(sql(format!("removing from lease {lease}")))
        })
        .await
    }

    async fn list_resources(&self, lease: &str) -> Result<Vec<LeaseResource>> {
        let lease = lease.to_string();
        self.db(move |c, _| {
            lease_exists(c, &lease)?;
            lease_resources(c, &lease)
        })
        .await
    }
}

fn put_image(tx: &Connection, img: &Image) -> Result<()> {
    let target = serde_json::to_string(&img.target)
        .map_err(|e| Error::InvalidArgument(format!("encoding target of {}: {e}", img.name)))?;
    tx.execute(
        "INSERT OR REPLACE INTO images(name, target, labels, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![img.name, target, labels_json(&img.labels), to_nanos(img.created_at), to_nanos(img.updated_at)],
    )
    .map_err(sql(format!("writing image {}", img.name)))?;
    Ok(())
}

fn get_image(conn: &Connection, name: &str) -> Result<Image> {
    all_images(conn)?
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| Error::NotFound(format!("image {name}")))
}

#[async_trait]
impl ImageStore for LocalStore {
    async fn get_image(&self, name: &str) -> Result<Image> {
        let name = name.to_string();
        self.db(move |c, _| get_image(c, &name)).await
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        self.db(|c, _| all_images(c)).await
    }

    async fn create_image(&self, mut image: Image) -> Result<Image> {
        if image.name.is_empty() {
            return Err(Error::InvalidArgument("empty image name".into()));
        }
        self.db(move |c, inner| {
            let tx = write_tx(c)?;
            if get_image(&tx, &image.name).is_ok() {
                return Err(Error::AlreadyExists(format!("image {}", image.name)));
            }
            let now = from_nanos(to_nanos(SystemTime::now()));
            image.created_at = now;
            image.updated_at = now;
            put_image(&tx, &image)?;
            write_index(&tx, &inner.root)?;
            tx.commit()
                .map_err(sql(format!("creating image {}", image.name)))?;
            Ok(image)
        })
        .await
    }

    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let paths = fieldpaths.to_vec();
        self.db(move |c, inner| {
            let tx = write_tx(c)?;
            let cur = get_image(&tx, &image.name)?;
            let mut updated = apply_image_paths(&cur, &image, &paths)?;
            updated.updated_at = from_nanos(to_nanos(updated.updated_at));
            put_image(&tx, &updated)?;
            write_index(&tx, &inner.root)?;
            tx.commit()
                .map_err(sql(format!("updating image {}", image.name)))?;
            Ok(updated)
        })
        .await
    }

    async fn delete_image(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.db(move |c, inner| {
            let tx = write_tx(c)?;
            let n = tx
                .execute("DELETE FROM images WHERE name=?1", [&name])
                .map_err(sql(format!("deleting image {name}")))?;
            if n == 0 {
                return Err(Error::NotFound(format!("image {name}")));
            }
            write_index(&tx, &inner.root)?;
            tx.commit().map_err(sql(format!("deleting image {name}")))
        })
        .await
    }
}

#[async_trait]
impl GarbageCollector for LocalStore {
    async fn garbage_collect(&self) -> Result<GcReport> {
        self.db(|c, inner| {
            // The write transaction is held for the whole mark and sweep: no commit, in
            // this process or another, can interleave.
            let tx = write_tx(c)?;
            let now = SystemTime::now();
            let infos = all_blobs(&tx)?;
            let blobs: BTreeMap<Digest, Labels> = infos
                .iter()
                .map(|i| (i.digest.clone(), i.labels.clone()))
                .collect();
            let images = all_images(&tx)?;
            let leases = all_leases(&tx)?;
            let marked = gc::mark(&blobs, &images, &leases, now);
            for id in &marked.expired_leases {
                tx.execute("DELETE FROM leases WHERE id=?1", [id])
                    .map_err(sql(format!("deleting expired lease {id}")))?;
                tx.execute("DELETE FROM lease_resources WHERE lease=?1", [id])
                    .map_err(sql(format!("deleting expired lease {id}")))?;
            }
            let mut report = GcReport::default();
            for info in &infos {
                if marked.live.contains(&info.digest) {
                    continue;
                }
                tx.execute("DELETE FROM blobs WHERE digest=?1", [info.digest.as_str()])
                    .map_err(sql(format!("sweeping {}", info.digest)))?;
                match fs::remove_file(inner.blob_path(&info.digest)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("sweeping {}", info.digest), e)),
                }
                report.removed.push(info.digest.clone());
                report.bytes_freed += info.size;
            }
            // Blob files the database does not know (crash between rename and commit).
            let dir = inner.root.join("blobs").join("sha256");
            let entries = fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                    continue;
                };
                if !blobs.contains_key(&d) {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if fs::remove_file(entry.path()).is_ok() {
                        report.removed.push(d);
                        report.bytes_freed += size;
                    }
                }
            }
            report.removed.sort();
            // Unleased ingests past their expiry, unless a live writer holds them.
            let expired: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT ref FROM ingests WHERE expires_at IS NOT NULL AND expires_at < ?1 ORDER BY ref")
                    .map_err(sql("listing expired ingests"))?;
                let rows = stmt
                    .query_map([to_nanos(now)], |r| r.get(0))
                    .map_err(sql("listing expired ingests"))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(sql("listing expired ingests"))?
            };
            for r in expired {
                if marked.leased_ingests.contains(&r) {
                    continue;
                }
                let lock = File::open(inner.ingest_dir(&r).join("lock")).ok();
                if let Some(l) = &lock {
                    if !try_flock(l).unwrap_or(false) {
                        continue;
                    }
                }
                remove_ingest(&tx, inner, &r)?;
                report.removed_ingests.push(r);
            }
            tx.commit().map_err(sql("committing garbage collection"))?;
            Ok(report)
        })
        .await
    }
}
