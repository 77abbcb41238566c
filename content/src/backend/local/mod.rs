//! [`LocalStore`]: a directory that is an OCI image layout, plus a SQLite database
//! beside it for labels, leases, image records and ingest state.
//!
//! ```text
//! <root>/oci-layout              {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json              one manifest entry per image record, sorted by name
//! <root>/blobs/sha256/<hex>      committed blobs
//! <root>/.strata/meta.db         SQLite (WAL): blobs+labels, leases, images, ingests
//! <root>/.strata/ingest/<h>/     one ingest: `ref`, `data`, `lock`, `owner` (h = sha256 of ref)
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
//! Dead exports: an ingest's `owner` file names the [`ProcessOwner`](crate::ProcessOwner)
//! of its last writer, and a [`LeaseGuard`](crate::LeaseGuard)'s lease is labelled
//! with its owner. Garbage collection deletes the leases of dead owners, then removes
//! every ingest whose owner is dead, whose lock no writer holds and that no remaining
//! lease holds, then marks and sweeps. [`LocalStore::open`] does the same cheaply (the
//! leases' rows and the ingest directories, no sweep), so the next export reclaims a
//! killed one's disk space at once.
//!
//! Blob files in `blobs/sha256` that the database does not know (left by a crash between
//! rename and database commit, or written by another tool) are invisible through the API
//! and removed by the next garbage collection.
//!
//! One file per concept: `blobs` (committed content and reads), `ingest` (writers and
//! commits), `leases`, `images` (records, mirrored into `index.json`), `gc`, `db` (the
//! schema and what every table shares) and `files` (atomic writes, syncs, locks).

mod blobs;
mod db;
#[cfg(test)]
mod dead_owner_tests;
mod files;
mod gc;
mod images;
mod ingest;
mod leases;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use strata_oci::{layout, Digest};

use crate::error::{Error, Result};
use db::{sql, write_tx};
use files::{io_err, write_atomic};
use images::write_index;

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
    /// The leases and ingests of dead processes [`LocalStore::open`] removed, until
    /// the first garbage collection reports them.
    reclaimed_at_open: Mutex<(Vec<String>, Vec<String>)>,
}

impl Inner {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join(layout::blob_path(d))
    }

    fn ingest_root(&self) -> PathBuf {
        self.root.join(".strata").join("ingest")
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.ingest_root()
            .join(Digest::sha256_of(reference.as_bytes()).hex())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // The connection holds no Rust-side invariants a panic could break.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reclaimed_at_open(&self) -> std::sync::MutexGuard<'_, (Vec<String>, Vec<String>)> {
        // Two lists: nothing a panic could leave half-updated.
        self.reclaimed_at_open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        let mut conn = db::open(&db_path)?;
        let tx = write_tx(&mut conn)?;
        db::create_schema(&tx)?;
        let layout_file = root.join(layout::LAYOUT_FILE);
        if !layout_file.exists() {
            write_atomic(&layout_file, layout::LAYOUT_FILE_CONTENT)?;
        }
        if !root.join(layout::INDEX_FILE).exists() {
            write_index(&tx, &root)?;
        }
        tx.commit().map_err(sql("creating schema"))?;
        let inner = Inner {
            root,
            conn: Mutex::new(conn),
            reclaimed_at_open: Mutex::default(),
        };
        let reclaimed = gc::reclaim_dead_owners(&mut inner.conn(), &inner)?;
        *inner.reclaimed_at_open() = reclaimed;
        Ok(LocalStore {
            inner: Arc::new(inner),
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
    /// `std::io::Read` without going through the async [`ReaderAt`](crate::ReaderAt).
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
