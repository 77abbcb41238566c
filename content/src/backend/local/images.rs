//! Image records, in the `images` table and mirrored into the layout's `index.json`.

use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::db::{labels_json, parse_labels, sql, write_tx};
use super::files::write_atomic;
use super::LocalStore;
use strata_oci::{layout, Descriptor};

use crate::error::{Error, Result};
use crate::image::{apply_image_paths, Image, ImageStore};
use crate::unix_time::{from_unix_nanos, to_unix_nanos};

pub(super) fn all_images(conn: &Connection) -> Result<Vec<Image>> {
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
            created_at: from_unix_nanos(c),
            updated_at: from_unix_nanos(u),
        });
    }
    Ok(out)
}

/// Regenerates `index.json` from the image records visible in `conn`.
pub(super) fn write_index(conn: &Connection, root: &Path) -> Result<()> {
    let manifests: Vec<Descriptor> = all_images(conn)?
        .into_iter()
        .map(|img| layout::index_entry(&img.target, &img.name, layout::RefName::FullName))
        .collect();
    let bytes = serde_json::to_vec_pretty(&layout::index(&manifests))
        .map_err(|e| Error::InvalidArgument(format!("encoding index.json: {e}")))?;
    write_atomic(&root.join(layout::INDEX_FILE), &bytes)
}

pub(super) fn put_image(tx: &Connection, img: &Image) -> Result<()> {
    let target = serde_json::to_string(&img.target)
        .map_err(|e| Error::InvalidArgument(format!("encoding target of {}: {e}", img.name)))?;
    tx.execute(
        "INSERT OR REPLACE INTO images(name, target, labels, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![img.name, target, labels_json(&img.labels), to_unix_nanos(img.created_at), to_unix_nanos(img.updated_at)],
    )
    .map_err(sql(format!("writing image {}", img.name)))?;
    Ok(())
}

pub(super) fn get_image(conn: &Connection, name: &str) -> Result<Image> {
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
            let now = from_unix_nanos(to_unix_nanos(SystemTime::now()));
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
            updated.updated_at = from_unix_nanos(to_unix_nanos(updated.updated_at));
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
