//! Committed blobs: their records, random-access reads, and the [`ContentStore`] impl
//! (ingests are in `ingest.rs`).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::db::{labels_json, parse_labels, sql, write_tx};
use super::files::io_err;
use super::leases::lease_exists;
use super::LocalStore;
use crate::content::{ContentStore, ContentWriter, Filter, Info, ReaderAt, Status, WriterOptions};
use crate::error::{Error, Result};
use crate::label::apply_label_paths;
use crate::lease::ResourceKind;
use crate::unix_time::{from_unix_nanos, to_unix_nanos};
use strata_oci::Descriptor;
use strata_oci::Digest;

pub(super) fn blob_info(conn: &Connection, d: &Digest) -> Result<Option<Info>> {
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
            created_at: from_unix_nanos(c),
            updated_at: from_unix_nanos(u),
            labels: parse_labels(&l, d.as_str())?,
        })
    })
    .transpose()
}

pub(super) fn all_blobs(conn: &Connection) -> Result<Vec<Info>> {
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
            created_at: from_unix_nanos(c),
            updated_at: from_unix_nanos(u),
        });
    }
    Ok(out)
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
                    to_unix_nanos(cur.updated_at)
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
                    params![lease, ResourceKind::Content.to_string(), d.as_str()],
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
        self.open_ingest(opts).await
    }

    async fn status(&self, reference: &str) -> Result<Status> {
        self.ingest(reference).await
    }

    async fn list_statuses(&self) -> Result<Vec<Status>> {
        self.ingests().await
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        self.abort_ingest(reference).await
    }

    fn with_lease(&self, lease: &str) -> Arc<dyn ContentStore> {
        Arc::new(LocalStore {
            inner: self.inner.clone(),
            lease: Some(lease.to_string()),
        })
    }
}
