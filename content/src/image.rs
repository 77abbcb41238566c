//! containerd's `images.Store`: named [`Image`] records, the roots garbage collection
//! starts from.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::Result;
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
