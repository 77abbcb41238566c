//! Importing an existing image as a chain of blob-backed refs plus its config.
//!
//! Every source comes down to an [`ImageRoot`]: a root descriptor (a manifest or an
//! index) and a [`BlobProvider`](strata_content::BlobProvider) serving the image's
//! blobs. [`open_image`] finds it for an OCI layout, an OCI or docker archive, or an
//! image record of strata's store or of containerd; a registry client builds one
//! from a resolved reference and its own provider. From there one code path reads
//! and verifies the manifest (choosing a platform in an index) and the config
//! ([`read_image`] → [`BaseImage`]), builds the refs ([`BaseImage::into_refs`] →
//! [`ImportedImage`]; [`import_image`] does both), or fetches everything into a store
//! ([`pull_image`]).

mod archive;
mod docker_archive;
mod error;
mod image;
mod layout;
mod location;
mod pull;

use std::sync::Arc;

use strata_content::{ContentStore, ImageStore, StoreProvider};
use strata_registry::{Access, RegistryClient, RegistryOptions};

pub use error::ImportError;
pub use image::{import_image, read_image, BaseImage, ImageRoot, ImportedImage};
pub use layout::OciLayoutProvider;
pub use location::{ImageLocation, InvalidImageLocation};
pub use pull::{pull_image, PulledImage};

/// A store's image records and the content they point at: strata's own store, or
/// containerd (whose backends implement the same traits).
#[derive(Clone)]
pub struct ImageRecords {
    /// The blobs.
    pub content: Arc<dyn ContentStore>,
    /// The image records.
    pub images: Arc<dyn ImageStore>,
    /// How errors name the store (`store DIR`, `containerd SOCKET namespace NS`).
    pub name: String,
}

impl std::fmt::Debug for ImageRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageRecords")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ImageRecords {
    /// The image record `name`: its root descriptor, its blobs served by this store. An
    /// unknown name is [`ImportError::TagNotFound`], naming the names there are.
    pub async fn open(&self, name: &str) -> Result<ImageRoot, ImportError> {
        open_record(name, self, name).await
    }
}

/// Finds the image `reference` names, without reading it: a registry image (its
/// manifest resolved, with `registry`'s credentials and insecure hosts; its blobs
/// then streamed from the registry), an OCI layout or archive, a docker archive
/// (indexed once, its blobs then read in place), or an image record of `store`
/// (`store:NAME`) or `containerd` (`containerd:NAME`). A record of a store not given
/// is [`ImportError::Unsupported`].
pub async fn open_image(
    reference: &ImageLocation,
    store: Option<&ImageRecords>,
    containerd: Option<&ImageRecords>,
    registry: &RegistryOptions,
) -> Result<ImageRoot, ImportError> {
    let text = reference.to_string();
    let unsupported = |reason: &str| ImportError::Unsupported {
        image: text.clone(),
        reason: reason.to_string(),
    };
    match reference {
        ImageLocation::Registry(r) => {
            let failed = |source| ImportError::Registry {
                image: text.clone(),
                source: Box::new(source),
            };
            let client = RegistryClient::connect(r, registry, Access::Pull)
                .await
                .map_err(failed)?;
            let (root, _) = client
                .fetch_manifest(&r.manifest_ref())
                .await
                .map_err(failed)?;
            Ok(ImageRoot {
                reference: text.clone(),
                name: reference.base_name(),
                root,
                provider: Arc::new(client),
            })
        }
        ImageLocation::OciLayout { dir, tag } => {
            layout::open_oci_layout(&text, dir, tag.as_deref()).await
        }
        ImageLocation::OciArchive { file, tag } => {
            layout::open_oci_archive(&text, file, tag.as_deref()).await
        }
        ImageLocation::DockerArchive { file, name } => {
            docker_archive::open_docker_archive(&text, file, name.as_deref()).await
        }
        ImageLocation::Store(name) => match store {
            Some(records) => open_record(&text, records, name).await,
            None => Err(unsupported("no store was given")),
        },
        ImageLocation::Containerd(name) => match containerd {
            Some(records) => open_record(&text, records, name).await,
            None => Err(unsupported(
                "containerd images need a containerd connection",
            )),
        },
    }
}

/// The image record `name` of `records`.
async fn open_record(
    reference: &str,
    records: &ImageRecords,
    name: &str,
) -> Result<ImageRoot, ImportError> {
    let content = |source| ImportError::Content {
        image: reference.to_string(),
        source,
    };
    let image = match records.images.get_image(name).await {
        Ok(image) => image,
        Err(e) if e.is_not_found() => {
            let available = records
                .images
                .list_images()
                .await
                .map_err(content)?
                .into_iter()
                .map(|i| i.name)
                .collect();
            return Err(ImportError::TagNotFound {
                image: reference.to_string(),
                tag: name.to_string(),
                available,
            });
        }
        Err(e) => return Err(content(e)),
    };
    Ok(ImageRoot {
        reference: reference.to_string(),
        name: image.name,
        root: image.target,
        provider: Arc::new(StoreProvider::new(
            records.content.clone(),
            records.name.clone(),
        )),
    })
}
