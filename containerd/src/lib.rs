//! # strata-containerd
//!
//! strata's backends over a running containerd, through its gRPC API on its unix
//! socket: everything strata knows about containerd is in this crate.
//!
//! - [`ContainerdConnection`]: the socket, one containerd namespace (the
//!   `containerd-namespace` request header), and containerd's gRPC status codes as
//!   strata's typed errors (`NotFound`, `AlreadyExists`, `FailedPrecondition`,
//!   `InvalidArgument`, `Unavailable` naming the socket).
//! - [`ContainerdStore`]: containerd's content, leases and images services as
//!   strata-content's [`ContentStore`](strata_content::ContentStore),
//!   [`LeaseManager`](strata_content::LeaseManager),
//!   [`ImageStore`](strata_content::ImageStore) and
//!   [`GarbageCollector`](strata_content::GarbageCollector). What it writes is
//!   containerd's own content: `ctr images ls` shows the image records, and containerd's
//!   GC keeps what leases, image records and `containerd.io/gc.ref.*` labels hold.
//! - [`ContainerdSnapshotter`]: one of containerd's snapshotters (`overlayfs`,
//!   `native`, …) as strata-snapshotter's
//!   [`Snapshotter`](strata_snapshotter::Snapshotter), so a chain committed in
//!   containerd can be exported by key.
//!
//! Both pass the conformance suites of strata-content and strata-snapshotter (run
//! against a private containerd by `strata-tests`).
//!
//! ```no_run
//! use strata_containerd::{ContainerdConnection, ContainerdSnapshotter, ContainerdStore};
//! use strata_content::{read_blob, write_blob, ContentStore, Labels};
//! use strata_oci::{Descriptor, Digest};
//! use strata_snapshotter::{Filter, Snapshotter};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let conn =
//!     ContainerdConnection::connect_or_create("/run/containerd/containerd.sock", "strata")
//!         .await?;
//! let store = ContainerdStore::new(conn.clone());
//! let bytes = b"hello";
//! let desc = Descriptor::new("text/plain", Digest::sha256_of(bytes), bytes.len() as u64);
//! write_blob(&store, "hello", bytes, &desc, Labels::new()).await?;
//! assert_eq!(read_blob(&store, &desc, 1024).await?, bytes);
//! assert_eq!(store.info(&desc.digest).await?.size, 5);
//!
//! let snapshots = ContainerdSnapshotter::new(conn, "overlayfs");
//! for info in snapshots.walk(&Filter::All).await? {
//!     println!("{} ({:?})", info.name, info.kind);
//! }
//! # Ok(()) }
//! ```
//!
//! ## The gRPC code, and building without protoc
//!
//! The client code for the containerd services strata calls (content, images, leases,
//! namespaces, snapshots) is generated ahead of time with tonic-prost-build and checked
//! in (`src/proto/`), from containerd's `.proto` files, checked in too (`proto/`). So
//! building strata needs no `protoc`. After changing a `.proto` file, regenerate the
//! code from the workspace root with the generator crate outside the workspace (this is
//! the only step that needs `protoc`; Debian: `protobuf-compiler`):
//!
//! ```text
//! cargo run --manifest-path containerd/codegen/Cargo.toml
//! ```

#![deny(missing_docs)]

mod connection;
mod content;
mod convert;
mod gc;
mod images;
mod ingest;
mod leases;
mod proto;
mod snapshotter;
mod store;

pub use connection::ContainerdConnection;
pub use snapshotter::ContainerdSnapshotter;
pub use store::ContainerdStore;
