//! Which content store a command works on: the local store directory (`--store`), or
//! a running containerd (`--containerd SOCKET [--namespace NS]`). Commands see both
//! through the same traits ([`Store`]), so there is one code path for each command.
//!
//! With containerd, blobs, leases and image records are containerd's (`ctr images ls`
//! shows what `type=image` wrote); the layer directories' snapshot registrations still
//! live under the `--store` directory, as containerd has no snapshotter for plain
//! directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_containerd::{ContainerdConnection, ContainerdStore};
use strata_content::{ContentStore, GarbageCollector, ImageStore, LeaseManager, LocalStore};

use crate::error::CliError;

/// Where the snapshot metadata of the directory snapshotter lives in a store.
pub fn snapshots_dir(store: &Path) -> PathBuf {
    store.join(".strata").join("snapshots")
}

/// The name of strata's native snapshotter under the store, as `unpack=true` records
/// it in the config's `containerd.io/gc.ref.snapshot.native` label.
pub const NATIVE_SNAPSHOTTER: &str = "native";

/// Where the native snapshotter under the store keeps its snapshots: base images'
/// trees (one committed snapshot per chainID) and images unpacked with `unpack=true`.
pub fn native_snapshots_dir(store_dir: &Path) -> PathBuf {
    snapshots_dir(store_dir).join(NATIVE_SNAPSHOTTER)
}

/// The containerd namespace used when `--namespace` is not given (created if missing,
/// as `ctr` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where the content of a command lives, as the global options chose it.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    /// The local store directory.
    Local(PathBuf),
    /// containerd at `socket`; `namespace` as given with `--namespace` (must exist),
    /// or `None` for [`DEFAULT_NAMESPACE`] (created if missing).
    Containerd {
        /// containerd's gRPC socket.
        socket: PathBuf,
        /// The explicit `--namespace`, if any.
        namespace: Option<String>,
    },
}

/// An open store: the four services a command may use, on one backend.
#[derive(Clone)]
pub struct Store {
    /// Blobs and their labels.
    pub content: Arc<dyn ContentStore>,
    /// Leases holding an export's blobs until they are rooted.
    pub leases: Arc<dyn LeaseManager>,
    /// Image records.
    pub images: Arc<dyn ImageStore>,
    /// Mark-and-sweep collection.
    pub gc: Arc<dyn GarbageCollector>,
    /// The store as messages name it (`store DIR`, `containerd SOCKET namespace NS`).
    pub shown: String,
    /// The containerd connection, when the store is containerd.
    pub containerd: Option<ContainerdConnection>,
}

impl Store {
    fn from_backend<S>(backend: Arc<S>, shown: String) -> Store
    where
        S: ContentStore + LeaseManager + ImageStore + GarbageCollector + 'static,
    {
        Store {
            content: backend.clone(),
            leases: backend.clone(),
            images: backend.clone(),
            gc: backend,
            shown,
            containerd: None,
        }
    }

    /// Opens (creating it if needed, for `export`) the local store at `dir`.
    pub async fn open_local(dir: &Path) -> Result<Store, CliError> {
        let store = LocalStore::open(dir)
            .await
            .map_err(|e| CliError::context(format!("opening store {}", dir.display()), e))?;
        Ok(Store::from_backend(
            Arc::new(store),
            format!("store {}", dir.display()),
        ))
    }

    /// Connects to containerd at `socket`. An explicit `namespace` must exist; without
    /// one, [`DEFAULT_NAMESPACE`] is used and created if missing.
    pub async fn connect_containerd(
        socket: &Path,
        namespace: Option<&str>,
    ) -> Result<Store, CliError> {
        let conn = match namespace {
            Some(ns) => ContainerdConnection::connect(socket, ns).await,
            None => ContainerdConnection::connect_or_create(socket, DEFAULT_NAMESPACE).await,
        }
        .map_err(|e| CliError::context("connecting to containerd", e))?;
        let shown = format!(
            "containerd {} namespace {}",
            socket.display(),
            conn.namespace()
        );
        let mut store = Store::from_backend(Arc::new(ContainerdStore::new(conn.clone())), shown);
        store.containerd = Some(conn);
        Ok(store)
    }
}

/// Opens the store at `location`; a local store must already exist unless `create`.
pub async fn open(location: &StoreLocation, create: bool) -> Result<Store, CliError> {
    match location {
        StoreLocation::Local(dir) => {
            if !create && (!dir.join("oci-layout").is_file() || !dir.join(".strata").is_dir()) {
                return Err(CliError::failed(format!(
                    "no strata store at {} (run strata export first, or pass --store)",
                    dir.display()
                )));
            }
            Store::open_local(dir).await
        }
        StoreLocation::Containerd { socket, namespace } => {
            Store::connect_containerd(socket, namespace.as_deref()).await
        }
    }
}
