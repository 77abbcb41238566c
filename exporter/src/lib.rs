//! # strata-exporter
//!
//! Exports immutable snapshot refs as OCI or Docker images: layers, history, config,
//! manifests and indexes, with GC labels, into a content store and onto outputs.
