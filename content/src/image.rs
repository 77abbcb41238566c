//! containerd's `images.Store`: named [`Image`] records, the roots garbage collection
//! starts from.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::label::{apply_label_paths, Labels};
use strata_oci::Descriptor;

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

/// Applies image field paths (`target`, `labels`, `labels.<key>`; none means all) of
/// `new` onto a copy of `current`, stamping `updated_at`.
pub(crate) fn apply_image_paths(
    current: &Image,
    new: &Image,
    fieldpaths: &[String],
) -> Result<Image> {
    let mut out = current.clone();
    if fieldpaths.is_empty() {
        out.target = new.target.clone();
        out.labels = new.labels.clone();
    } else {
        apply_label_paths(&mut out.labels, &new.labels, fieldpaths, &["target"])?;
        if fieldpaths.iter().any(|p| p == "target") {
            out.target = new.target.clone();
        }
    }
    out.updated_at = SystemTime::now();
    Ok(out)
}

/// Deletes the image records `names` (containerd's `ctr images rm`, several at once);
/// their content is left to garbage collection, as containerd leaves it. Every name is
/// looked up first: when any is unknown, nothing is deleted and the error is a
/// `NotFound` naming each unknown one, so a typo never removes half a list. A name
/// given twice is deleted once. Returns the records deleted, in the order given.
///
/// ```
/// use strata_content::{remove_images, tag_image, ImageStore, MemoryStore};
/// # use strata_content::Image;
/// # use strata_oci::{media_types, Descriptor, Digest};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// # let target = Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(b"m"), 1);
/// # let now = std::time::SystemTime::now();
/// # store.create_image(Image { name: "app:1".into(), target, labels: Default::default(), created_at: now, updated_at: now }).await?;
/// tag_image(&store, "app:1", &["app:latest".to_string()], false).await?;
/// let err = remove_images(&store, &["app:1".into(), "nope".into()]).await.unwrap_err();
/// assert!(err.is_not_found() && err.to_string().contains("nope"));
/// assert_eq!(store.list_images().await?.len(), 2); // nothing deleted
/// remove_images(&store, &["app:1".into(), "app:latest".into()]).await?;
/// assert!(store.list_images().await?.is_empty());
/// # Ok::<(), strata_content::Error>(())
/// # }).unwrap();
/// ```
pub async fn remove_images<S: ImageStore + ?Sized>(
    images: &S,
    names: &[String],
) -> Result<Vec<Image>> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        if found.iter().any(|i: &Image| &i.name == name) || unknown.contains(name) {
            continue;
        }
        match images.get_image(name).await {
            Ok(image) => found.push(image),
            Err(e) if e.is_not_found() => unknown.push(name.clone()),
            Err(e) => return Err(e),
        }
    }
    if !unknown.is_empty() {
        return Err(Error::NotFound(unknown_images(&unknown)));
    }
    for image in &found {
        match images.delete_image(&image.name).await {
            // Deleted by someone else meanwhile: the record is gone either way.
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(found)
}

/// Records each of `targets` as a name of the image `source` (containerd's
/// `ctr images tag`): a new record with `source`'s root descriptor and labels, so the
/// same content is kept by either name. An unknown `source` is a `NotFound` naming
/// it. A target that already exists is an `AlreadyExists` naming it, checked for
/// every target before any is written, unless `replace` (ctr's `--force`): then its
/// record is pointed at `source`'s root and labels. Returns the records written.
pub async fn tag_image<S: ImageStore + ?Sized>(
    images: &S,
    source: &str,
    targets: &[String],
    replace: bool,
) -> Result<Vec<Image>> {
    let src = images.get_image(source).await.map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(unknown_images(&[source.to_string()])),
        other => other,
    })?;
    if !replace {
        for target in targets {
            match images.get_image(target).await {
                Ok(_) => return Err(Error::AlreadyExists(format!("image {target:?}"))),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut written = Vec::new();
    for target in targets {
        let now = SystemTime::now();
        let image = Image {
            name: target.clone(),
            target: src.target.clone(),
            labels: src.labels.clone(),
            created_at: now,
            updated_at: now,
        };
        let created = match images.create_image(image.clone()).await {
            Err(e) if e.is_already_exists() && replace => {
                images
                    .update_image(image, &["target".to_string(), "labels".to_string()])
                    .await
            }
            other => other,
        };
        written.push(created?);
    }
    Ok(written)
}

/// How errors name image records that do not exist: `image "a"`, `images "a", "b"`.
fn unknown_images(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.as_slice() {
        [one] => format!("image {one}"),
        many => format!("images {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use strata_oci::{media_types, Digest};

    fn record(name: &str, content: &[u8]) -> Image {
        let now = SystemTime::now();
        Image {
            name: name.into(),
            target: Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(content), 1),
            labels: [("l".to_string(), name.to_string())].into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn tags_copy_the_root_and_labels_and_refuse_taken_names() {
        let store = MemoryStore::new();
        store.create_image(record("a:1", b"a")).await.unwrap();
        store.create_image(record("b:1", b"b")).await.unwrap();
        let tagged = tag_image(&store, "a:1", &["a:2".into(), "c".into()], false)
            .await
            .unwrap();
        assert_eq!(tagged.len(), 2);
        for name in ["a:2", "c"] {
            let img = store.get_image(name).await.unwrap();
            assert_eq!(img.target.digest, Digest::sha256_of(b"a"));
            assert_eq!(img.labels["l"], "a:1");
        }
        // A taken target: nothing written, not even the free one before it.
        let err = tag_image(&store, "a:1", &["d".into(), "b:1".into()], false)
            .await
            .unwrap_err();
        assert!(
            err.is_already_exists() && err.to_string().contains("b:1"),
            "{err}"
        );
        assert!(store.get_image("d").await.unwrap_err().is_not_found());
        // --force moves it.
        tag_image(&store, "a:1", &["b:1".into()], true)
            .await
            .unwrap();
        let moved = store.get_image("b:1").await.unwrap();
        assert_eq!(moved.target.digest, Digest::sha256_of(b"a"));
        let err = tag_image(&store, "zz", &["x".into()], false)
            .await
            .unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("\"zz\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn remove_is_all_or_nothing_and_names_every_unknown_image() {
        let store = MemoryStore::new();
        store.create_image(record("a", b"a")).await.unwrap();
        store.create_image(record("b", b"b")).await.unwrap();
        let err = remove_images(&store, &["a".into(), "x".into(), "y".into()])
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), r#"not found: images "x", "y""#);
        assert_eq!(store.list_images().await.unwrap().len(), 2);
        let removed = remove_images(&store, &["b".into(), "a".into(), "b".into()])
            .await
            .unwrap();
        let names: Vec<&str> = removed.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(store.list_images().await.unwrap().is_empty());
    }
}
