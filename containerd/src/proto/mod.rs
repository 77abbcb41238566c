//! containerd's gRPC API, generated ahead of time from `containerd/proto` by
//! `cargo run --manifest-path containerd/codegen/Cargo.toml` (the only step that needs
//! `protoc`). Modules nest as the protobuf packages do, so the generated cross-package
//! paths (`super::super::super::types`) resolve; `google.protobuf` is `prost_types`.
//! Do not edit the generated files by hand.

#![allow(missing_docs, clippy::all, rustdoc::all)]

/// `containerd.*`
pub mod containerd {
    /// `containerd.types`: descriptors and mounts.
    pub mod types {
        include!("containerd.types.rs");
    }

    /// `containerd.services.*`: the services strata calls.
    pub mod services {
        /// `containerd.services.content.v1`
        pub mod content {
            /// Version 1.
            pub mod v1 {
                include!("containerd.services.content.v1.rs");
            }
        }

        /// `containerd.services.images.v1`
        pub mod images {
            /// Version 1.
            pub mod v1 {
                include!("containerd.services.images.v1.rs");
            }
        }

        /// `containerd.services.leases.v1`
        pub mod leases {
            /// Version 1.
            pub mod v1 {
                include!("containerd.services.leases.v1.rs");
            }
        }

        /// `containerd.services.namespaces.v1`
        pub mod namespaces {
            /// Version 1.
            pub mod v1 {
                include!("containerd.services.namespaces.v1.rs");
            }
        }

        /// `containerd.services.snapshots.v1`
        pub mod snapshots {
            /// Version 1.
            pub mod v1 {
                include!("containerd.services.snapshots.v1.rs");
            }
        }
    }
}

pub(crate) use containerd::services::snapshots::v1 as snapshots;
pub(crate) use containerd::services::{content::v1 as content, images::v1 as images};
pub(crate) use containerd::services::{leases::v1 as leases, namespaces::v1 as namespaces};
pub(crate) use containerd::types;
