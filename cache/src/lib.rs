//! # strata-cache
//!
//! The refs an export reads, and what is cached on them.
//!
//! - [`ImmutableRef`]: a cheap, clonable handle on one layer and its parent chain:
//!   its description, creation time, read-only mounts, and the layer blobs already
//!   computed for it, one [`BlobInfo`] per [`BlobKey`] (compression and
//!   `source_date_epoch`). Blob infos are kept in the snapshot's labels, so a later
//!   export, even by another process, reuses the blob instead of computing the diff.
//! - Blob-backed refs ([`ImmutableRef::from_blob`] on a [`BlobLayer`]): a base image's
//!   layers, known by descriptor, diffID, history entry and a provider to fetch the
//!   blob from. They are exported byte for byte; their tree exists only once a child's
//!   diff needs it, when the [`Materializer`] extracts the chain once per chainID ([`strata_oci::chain_id`])
//!   and reuses it afterwards ([`prune_extracted`] collects the chains nothing
//!   references). [`copy_ref`] stacks a Dockerfile-`COPY` layer written
//!   straight from a directory.
//! - Directory registration: existing directories, each the full tree of one layer,
//!   registered as a chain of committed snapshots in a
//!   [`DirectorySnapshotter`](strata_snapshotter::DirectorySnapshotter) without
//!   copying them ([`register_directories`], or [`DirectoryChain`] to read the trees
//!   before touching the store). Snapshot names are keyed by the parent, the canonical
//!   path and a [`fingerprint`] of the tree's metadata: unchanged trees find their
//!   snapshots (and cached blobs) again, a changed tree gets a new name.
//!   [`prune_stale_registrations`] removes the registrations whose trees changed or
//!   went away.
//! - Importing an existing image: an [`ImageLocation`] (`oci:DIR[:TAG]`,
//!   `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME:TAG]`, `store:NAME`,
//!   `containerd:NAME`, `docker://REF`) is opened into an [`ImageRoot`] (a root
//!   descriptor and a [`BlobProvider`](strata_content::BlobProvider); [`open_image`]),
//!   read and verified for one platform ([`read_image`] →
//!   [`BaseImage`]), and turned into a chain of blob-backed refs plus its config
//!   ([`import_image`] → [`ImportedImage`]) or fetched into a store ([`pull_image`]).
//!   Failures are [`ImportError`]s naming the image and the blob.
//! - Unpacking an image as a root filesystem: [`unpack_rootfs`] applies one platform's
//!   layers onto a directory ([`UnpackOptions`]: platform, rootless, force), checking
//!   every diffID, and removes what it wrote when it fails ([`UnpackError`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use strata_cache::{register_directories, ImmutableRef, LayerDir};
//! use strata_snapshotter::{DirectorySnapshotter, TempMount};
//!
//! let tmp = tempfile::tempdir()?;
//! let (base, top) = (tmp.path().join("base"), tmp.path().join("top"));
//! std::fs::create_dir_all(&base)?;
//! std::fs::write(base.join("hello"), "hi")?;
//! std::fs::create_dir_all(&top)?;
//! std::fs::write(top.join("hello"), "hi")?;
//! std::fs::write(top.join("world"), "!")?;
//!
//! let snapshots = DirectorySnapshotter::open(tmp.path().join("meta"))?;
//! let layers = [
//!     LayerDir { dir: base, description: "COPY hello".into() },
//!     LayerDir { dir: top, description: "COPY world".into() },
//! ];
//! let names = register_directories(&snapshots, &layers).await?;
//! // Unchanged trees: the same snapshots (and the blobs cached on them).
//! assert_eq!(register_directories(&snapshots, &layers).await?, names);
//!
//! let top_ref = ImmutableRef::load(Arc::new(snapshots), &names[1]).await?;
//! assert_eq!(top_ref.description(), "COPY world");
//! assert_eq!(top_ref.parent().map(|p| p.id()), Some(names[0].as_str()));
//! let tree = TempMount::mount(&top_ref.mounts().await?)?;
//! assert!(tree.path().join("world").exists());
//! drop(tree);
//! top_ref.release().await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod blob;
mod blob_layer;
mod copy_ref;
mod directories;
mod error;
mod fingerprint;
mod immutable_ref;
mod import;
mod prune_extracted;
mod unpack;

pub use blob::{BlobInfo, BlobKey, EstargzVariant};
pub use blob_layer::{BlobLayer, Materializer};
pub use copy_ref::copy_ref;
pub use directories::{
    prune_stale_registrations, register_directories, DirectoryChain, LayerDir, PruneReport,
    LABEL_SOURCE_DIR,
};
pub use error::{DirectoryError, RefError};
pub use fingerprint::fingerprint;
pub use immutable_ref::{ImmutableRef, LABEL_DESCRIPTION};
pub use import::{
    import_image, open_image, pull_image, read_image, BaseImage, ImageLocation, ImageRecords,
    ImageRoot, ImportError, ImportedImage, InvalidImageLocation, OciLayoutProvider, PulledImage,
};
pub use prune_extracted::prune_extracted;
pub use unpack::{unpack_rootfs, UnpackError, UnpackOptions, UnpackedRootfs};
