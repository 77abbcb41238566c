//! The metadata database: its schema, how it is opened, and the conversions every
//! table shares (errors, labels as JSON, write transactions).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::label::Labels;

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

pub(super) fn sql(context: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Unavailable(format!("metadata database, {context}: {e}"))
}

pub(super) fn labels_json(l: &Labels) -> String {
    serde_json::to_string(l).unwrap_or_else(|_| "{}".into())
}

pub(super) fn parse_labels(s: &str, what: &str) -> Result<Labels> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unavailable(format!("corrupt labels of {what} in database: {e}")))
}

pub(super) fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("starting a write transaction"))
}

/// Opens the database at `path`: WAL, full sync, and a busy timeout so that other
/// processes on the same store wait for the write lock instead of failing.
pub(super) fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql(format!("opening {}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(60))
        .map_err(sql("setting busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("setting synchronous"))?;
    Ok(conn)
}

/// Creates the tables the database lacks.
pub(super) fn create_schema(tx: &Connection) -> Result<()> {
    tx.execute_batch(SCHEMA).map_err(sql("creating schema"))
}
