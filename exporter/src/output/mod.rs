//! The exporters: `image` (content store + image records), `oci` (OCI layout, tar or
//! directory) and `docker` (docker-archive tar).

mod blob_file;
pub mod docker;
pub mod image;
pub mod oci;
pub mod registry;
