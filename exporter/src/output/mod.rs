//! The exporters: `image` (content store + image records), `oci` (OCI layout, tar or
//! directory), `docker` (docker-archive tar), sharing `layout`, and `registry`.

mod blob_file;
pub(crate) mod docker;
pub(crate) mod image;
pub(crate) mod layout;
pub(crate) mod oci;
pub(crate) mod registry;
mod unpack;
