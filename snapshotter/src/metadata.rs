//! The metadata every backend shares: one SQLite database per snapshotter root holding
//! each snapshot's key, kind, parent, labels, times, and a stable numeric id that names
//! its directory on disk.
//!
//! Like containerd's `snapshots/storage` (bolt), every state change happens in one
//! transaction, so the tree of snapshots is always consistent, and a reopened
//! snapshotter (or another process on the same root, thanks to WAL and a busy timeout)
//! sees the same snapshots.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use strata_content::{from_unix_nanos, to_unix_nanos};

use crate::error::{Error, Result};
use crate::snapshotter::{Filter, Info, Kind, Labels};

/// One stored snapshot: its info, its numeric id, and (directory backend) the
/// directory it was registered with.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// Stable id; names the snapshot's directory.
    pub id: i64,
    /// containerd's view of the snapshot.
    pub info: Info,
    /// The registered directory (directory backend only).
    pub path: Option<PathBuf>,
}

/// The metadata database of one snapshotter root.
pub(crate) struct Metadata {
    conn: Mutex<Connection>,
}

fn db_err(context: &str, e: rusqlite::Error) -> Error {
    Error::Metadata(format!("{context}: {e}"))
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::View => "view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

fn parse_kind(s: &str) -> Result<Kind> {
    match s {
        "view" => Ok(Kind::View),
        "active" => Ok(Kind::Active),
        "committed" => Ok(Kind::Committed),
        other => Err(Error::Metadata(format!("unknown snapshot kind {other:?}"))),
    }
}

/// Rejects keys no snapshotter accepts.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(
            "snapshot key must not be empty".into(),
        ));
    }
    if key.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "snapshot key {key:?} contains a NUL byte"
        )));
    }
    Ok(())
}

const COLUMNS: &str = "id, key, kind, parent, labels, created_ns, updated_ns, path";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        id: row.get(0)?,
        key: row.get(1)?,
        kind: row.get(2)?,
        parent: row.get(3)?,
        labels: row.get(4)?,
        created_ns: row.get(5)?,
        updated_ns: row.get(6)?,
        path: row.get(7)?,
    })
}

struct RawRecord {
    id: i64,
    key: String,
    kind: String,
    parent: Option<String>,
    labels: String,
    created_ns: i64,
    updated_ns: i64,
    path: Option<String>,
}

impl RawRecord {
    fn into_record(self) -> Result<Record> {
        let labels: Labels = serde_json::from_str(&self.labels).map_err(|e| {
            Error::Metadata(format!(
                "labels of snapshot {:?} are corrupt: {e}",
                self.key
            ))
        })?;
        Ok(Record {
            id: self.id,
            info: Info {
                kind: parse_kind(&self.kind)?,
                name: self.key,
                parent: self.parent,
                labels,
                created_at: from_unix_nanos(self.created_ns),
                updated_at: from_unix_nanos(self.updated_ns),
            },
            path: self.path.map(PathBuf::from),
        })
    }
}

impl Metadata {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Metadata> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        let conn = Connection::open(path).map_err(|e| db_err(&ctx("opening"), e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| db_err(&ctx("setting busy timeout on"), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db_err(&ctx("enabling WAL on"), e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| db_err(&ctx("setting synchronous on"), e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                parent TEXT,
                labels TEXT NOT NULL,
                created_ns INTEGER NOT NULL,
                updated_ns INTEGER NOT NULL,
                path TEXT
            );
            CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);",
        )
        .map_err(|e| db_err(&ctx("creating schema in"), e))?;
        Ok(Metadata {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one immediate (write-locking) transaction; commits when it succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err("starting transaction", e))?;
        let out = f(&tx)?;
        tx.commit()
            .map_err(|e| db_err("committing transaction", e))?;
        Ok(out)
    }

    /// Runs `f` on a read-only snapshot of the database.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }
}

/// The record of `key`, or `None`.
pub(crate) fn find(conn: &Connection, key: &str) -> Result<Option<Record>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM snapshots WHERE key = ?1"),
        params![key],
        row_to_record,
    )
    .optional()
    .map_err(|e| db_err(&format!("reading snapshot {key:?}"), e))?
    .map(RawRecord::into_record)
    .transpose()
}

/// The record of `key`; `NotFound` naming it when absent.
pub(crate) fn get(conn: &Connection, key: &str) -> Result<Record> {
    find(conn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))
}

/// The committed parent `parent`: `NotFound` when absent, `FailedPrecondition` when
/// it is not committed.
pub(crate) fn committed_parent(conn: &Connection, parent: &str) -> Result<Record> {
    let rec = get(conn, parent)?;
    if rec.info.kind != Kind::Committed {
        return Err(Error::FailedPrecondition {
            key: parent.to_string(),
            reason: format!(
                "a parent must be committed, but it is {}",
                kind_str(rec.info.kind)
            ),
        });
    }
    Ok(rec)
}

/// The parent chain of `rec`, nearest parent first (not including `rec`).
pub(crate) fn ancestors(conn: &Connection, rec: &Record) -> Result<Vec<Record>> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = rec.info.parent.clone();
    while let Some(key) = next {
        if out.iter().any(|r| r.info.name == key) || key == rec.info.name {
            return Err(Error::Metadata(format!(
                "parent chain of {:?} loops at {key:?}",
                rec.info.name
            )));
        }
        let parent = get(conn, &key).map_err(|e| match e {
            Error::NotFound(k) => Error::Metadata(format!(
                "parent {k:?} of snapshot {:?} is missing",
                rec.info.name
            )),
            other => other,
        })?;
        next = parent.info.parent.clone();
        out.push(parent);
    }
    Ok(out)
}

/// Creates snapshot `key` of `kind` on `parent` (which must be committed). Fails with
/// `AlreadyExists` when `key` is taken.
pub(crate) fn create(
    tx: &Transaction<'_>,
    key: &str,
    kind: Kind,
    parent: Option<&str>,
    labels: &Labels,
    path: Option<&Path>,
) -> Result<Record> {
    check_key(key)?;
    if let Some(p) = parent {
        committed_parent(tx, p)?;
    }
    if find(tx, key)?.is_some() {
        return Err(Error::AlreadyExists(key.to_string()));
    }
    let now = to_unix_nanos(SystemTime::now());
    let labels_json = serde_json::to_string(labels)
        .map_err(|e| Error::Metadata(format!("encoding labels of {key:?}: {e}")))?;
    tx.execute(
        "INSERT INTO snapshots (key, kind, parent, labels, created_ns, updated_ns, path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        params![
            key,
            kind_str(kind),
            parent,
            labels_json,
            now,
            path.map(|p| p.to_string_lossy().into_owned())
        ],
    )
    .map_err(|e| db_err(&format!("creating snapshot {key:?}"), e))?;
    get(tx, key)
}

/// Commits active snapshot `key` as `name` (same id, so the same directory), with
/// `labels` (containerd semantics: the committed snapshot carries the labels given to
/// commit). Returns the committed record.
pub(crate) fn commit(
    tx: &Transaction<'_>,
    name: &str,
    key: &str,
    labels: &Labels,
) -> Result<Record> {
    check_key(name)?;
    let rec = get(tx, key)?;
    if rec.info.kind != Kind::Active {
        return Err(Error::FailedPrecondition {
            key: key.to_string(),
            reason: format!(
                "only active snapshots can be committed, it is {}",
                kind_str(rec.info.kind)
            ),
        });
    }
    if find(tx, name)?.is_some() {
        return Err(Error::AlreadyExists(name.to_string()));
    }
    let now = to_unix_nanos(SystemTime::now());
    let labels_json = serde_json::to_string(labels)
        .map_err(|e| Error::Metadata(format!("encoding labels of {name:?}: {e}")))?;
    tx.execute(
        "UPDATE snapshots SET key = ?1, kind = 'committed', labels = ?2, created_ns = ?3,
         updated_ns = ?3 WHERE id = ?4",
        params![name, labels_json, now, rec.id],
    )
    .map_err(|e| db_err(&format!("committing {key:?} as {name:?}"), e))?;
    get(tx, name)
}

/// Names of the snapshots whose parent is `key`, sorted.
pub(crate) fn children(conn: &Connection, key: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT key FROM snapshots WHERE parent = ?1 ORDER BY key")
        .map_err(|e| db_err("listing children", e))?;
    let rows = stmt
        .query_map(params![key], |r| r.get::<_, String>(0))
        .map_err(|e| db_err(&format!("listing children of {key:?}"), e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| db_err(&format!("listing children of {key:?}"), e))
}

/// Removes `key`; `FailedPrecondition` naming it when it has children. Returns the
/// removed record so the backend can delete its directory.
pub(crate) fn remove(tx: &Transaction<'_>, key: &str) -> Result<Record> {
    let rec = get(tx, key)?;
    let kids = children(tx, key)?;
    if !kids.is_empty() {
        return Err(Error::FailedPrecondition {
            key: key.to_string(),
            reason: format!("it has children: {}", kids.join(", ")),
        });
    }
    tx.execute("DELETE FROM snapshots WHERE id = ?1", params![rec.id])
        .map_err(|e| db_err(&format!("removing snapshot {key:?}"), e))?;
    Ok(rec)
}

/// Updates the labels of `info.name` named by `fieldpaths` (containerd semantics:
/// empty or `labels` replaces every label, `labels.<k>` sets or removes one).
pub(crate) fn update(tx: &Transaction<'_>, info: &Info, fieldpaths: &[String]) -> Result<Info> {
    let rec = get(tx, &info.name)?;
    let mut labels = rec.info.labels.clone();
    if fieldpaths.is_empty() {
        labels = info.labels.clone();
    } else {
        for path in fieldpaths {
            if path == "labels" {
                labels = info.labels.clone();
            } else if let Some(k) = path.strip_prefix("labels.").filter(|k| !k.is_empty()) {
                match info.labels.get(k) {
                    Some(v) => labels.insert(k.to_string(), v.clone()),
                    None => labels.remove(k),
                };
            } else {
                return Err(Error::InvalidArgument(format!(
                    "cannot update field {path:?} of snapshot {:?}: only labels and labels.<key> can be updated",
                    info.name
                )));
            }
        }
    }
    let now = to_unix_nanos(SystemTime::now());
    let labels_json = serde_json::to_string(&labels)
        .map_err(|e| Error::Metadata(format!("encoding labels of {:?}: {e}", info.name)))?;
    tx.execute(
        "UPDATE snapshots SET labels = ?1, updated_ns = ?2 WHERE id = ?3",
        params![labels_json, now, rec.id],
    )
    .map_err(|e| db_err(&format!("updating snapshot {:?}", info.name), e))?;
    Ok(get(tx, &info.name)?.info)
}

/// Every record, sorted by key.
pub(crate) fn all(conn: &Connection) -> Result<Vec<Record>> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM snapshots ORDER BY key"))
        .map_err(|e| db_err("listing snapshots", e))?;
    let rows = stmt
        .query_map([], row_to_record)
        .map_err(|e| db_err("listing snapshots", e))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(
            row.map_err(|e| db_err("listing snapshots", e))?
                .into_record()?,
        );
    }
    Ok(out)
}

/// The infos passing `filter`, sorted by name.
pub(crate) fn walk(conn: &Connection, filter: &Filter) -> Result<Vec<Info>> {
    Ok(all(conn)?
        .into_iter()
        .map(|r| r.info)
        .filter(|i| filter.matches(i))
        .collect())
}
