//! Base images on the command line: `--base REF` (imported as blob-backed refs, its
//! tree extracted only when a `--layer` is diffed against it), `--copy` layers,
//! `strata pull`; and the native snapshotter under the store that base trees and
//! `unpack=true` images are extracted into.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_cache::{
    copy_ref, open_image, pull_image, read_image, ImageLocation, ImageRecords, ImageRoot,
    ImmutableRef, Materializer,
};
use strata_containerd::ContainerdSnapshotter;
use strata_content::LeaseGuard;
use strata_differ::{CompareOptions, CopyOptions, WalkingDiffer};
use strata_exporter::UnpackTarget;
use strata_oci::Compression;
use strata_registry::RegistryOptions;
use strata_snapshotter::{NativeSnapshotter, Snapshotter};

use crate::error::CliError;
use crate::plan::{parse_platform, CopyPlan};
use crate::store::{self, Store, StoreLocation};
use crate::store::{native_snapshots_dir, NATIVE_SNAPSHOTTER};

/// How long the lease on `--copy` layers and pulled blobs outlives a process that died
/// holding it.
const TEMPORARY_LEASE: Duration = Duration::from_secs(3600);

/// What turns the base images of `store` into trees: blobs fetched into the store,
/// applied by the walking differ, into the native snapshotter under `store_dir`.
pub fn materializer(store: &Store, store_dir: &Path) -> Result<Materializer, CliError> {
    materializer_into(store, native(store_dir)?)
}

/// The snapshotter `unpack=true` extracts into: with containerd, its snapshotter
/// `snapshotter` (what `ctr run` uses); otherwise the native snapshotter under
/// `store_dir`. Layers are read from the store's content and applied by the walking
/// differ (mounting containerd's overlay mounts needs root).
pub fn unpack_target(
    store: &Store,
    store_dir: &Path,
    snapshotter: &str,
) -> Result<UnpackTarget, CliError> {
    let (snapshots, name): (Arc<dyn Snapshotter>, &str) = match &store.containerd {
        Some(conn) => (
            Arc::new(ContainerdSnapshotter::new(conn.clone(), snapshotter)),
            snapshotter,
        ),
        None => (native(store_dir)?, NATIVE_SNAPSHOTTER),
    };
    Ok(UnpackTarget {
        materializer: materializer_into(store, snapshots)?,
        snapshotter_name: name.to_string(),
    })
}

/// The native snapshotter under `store_dir`.
pub fn native(store_dir: &Path) -> Result<Arc<dyn Snapshotter>, CliError> {
    let dir = native_snapshots_dir(store_dir);
    let native = NativeSnapshotter::open(&dir)
        .map_err(|e| CliError::context(format!("opening snapshots {}", dir.display()), e))?;
    Ok(Arc::new(native))
}

/// Extraction from `store`'s blobs into `snapshotter`.
fn materializer_into(
    store: &Store,
    snapshotter: Arc<dyn Snapshotter>,
) -> Result<Materializer, CliError> {
    Ok(Materializer {
        store: store.content.clone(),
        applier: Arc::new(WalkingDiffer::new(store.content.clone())),
        snapshotter,
    })
}

/// Parses a `--base` or `pull` reference; `containerd:` needs `--containerd`.
pub fn parse_reference(text: &str, location: &StoreLocation) -> Result<ImageLocation, CliError> {
    let parsed = ImageLocation::parse(text).map_err(|e| CliError::usage(e.to_string()))?;
    if matches!(parsed, ImageLocation::Containerd(_))
        && !matches!(location, StoreLocation::Containerd { .. })
    {
        return Err(CliError::usage(format!(
            "{text}: containerd images need --containerd SOCKET"
        )));
    }
    Ok(parsed)
}

/// Finds the image `reference` names: in a registry (plain HTTP for `insecure`
/// hosts), a layout or archive, the local store (`store:`), or containerd.
pub async fn open(
    reference: &ImageLocation,
    store: &Store,
    location: &StoreLocation,
    store_dir: &Path,
    insecure: &[String],
) -> Result<ImageRoot, CliError> {
    let records = |s: &Store| ImageRecords {
        content: s.content.clone(),
        images: s.images.clone(),
        name: s.shown.clone(),
    };
    let registry = RegistryOptions {
        insecure_hosts: insecure.to_vec(),
        ..RegistryOptions::default()
    };
    let (local, containerd) = match location {
        StoreLocation::Local(_) => (Some(records(store)), None),
        StoreLocation::Containerd { .. } => {
            let local = match reference {
                ImageLocation::Store(_) => Some(records(&Store::open_local(store_dir).await?)),
                _ => None,
            };
            (local, Some(records(store)))
        }
    };
    open_image(reference, local.as_ref(), containerd.as_ref(), &registry)
        .await
        .map_err(|e| CliError::context("opening the base image", e))
}

/// Stacks `copies` on `top`, each a layer written straight from its source (owned
/// `owner`, default 0:0) with the output's `compression` and `source_date_epoch`,
/// into the materializer's store (leased by the caller).
pub async fn stack_copies(
    mut top: Option<ImmutableRef>,
    copies: &[CopyPlan],
    owner: Option<(u32, u32)>,
    compression: Compression,
    source_date_epoch: Option<i64>,
    materializer: &Materializer,
) -> Result<Option<ImmutableRef>, CliError> {
    let opts = CompareOptions {
        compression,
        source_date_epoch,
        ..CompareOptions::default()
    };
    for copy in copies {
        let layer = copy_ref(
            top,
            &copy.src,
            &CopyOptions {
                dest: copy.dest.clone(),
                owner,
            },
            &format!("COPY {} {}", copy.shown, copy.dest),
            &opts,
            materializer,
        )
        .await
        .map_err(|e| CliError::context(format!("--copy {}", copy.shown), e))?;
        top = Some(layer);
    }
    Ok(top)
}

/// `strata pull REF`: every blob of the image (one platform of an index) fetched into
/// the store, verified, and recorded under the image's name; prints the manifest
/// digest.
pub async fn pull(
    reference: &str,
    platform: Option<&str>,
    location: &StoreLocation,
    store_dir: &Path,
    insecure: &[String],
) -> Result<(), CliError> {
    let parsed = parse_reference(reference, location)?;
    let platform = platform.map(parse_platform).transpose()?;
    let store = store::open(location, true).await?;
    let root = open(&parsed, &store, location, store_dir, insecure).await?;
    let image = read_image(&root, platform.as_ref())
        .await
        .map_err(|e| CliError::context(format!("pulling {reference}"), e))?;
    let name = match &parsed {
        ImageLocation::Registry(r) => r.to_string(),
        _ => root.name.clone(),
    };
    let lease = LeaseGuard::temporary(store.leases.clone(), TEMPORARY_LEASE)
        .await
        .map_err(|e| CliError::context("creating a lease", e))?;
    let leased = store.content.with_lease(lease.id());
    let pulled = pull_image(&image, &leased, Some((store.images.as_ref(), &name))).await;
    // The image record holds what the pull wrote once it exists; the lease goes
    // either way, before an error is reported.
    let released = lease.release().await;
    let pulled = pulled.map_err(|e| CliError::context(format!("pulling {reference}"), e))?;
    released.map_err(|e| CliError::context("releasing the pull's lease", e))?;
    eprintln!("pulled {name} ({} blobs fetched)", pulled.fetched.len());
    println!("{}", pulled.manifest.digest);
    Ok(())
}

/// A temporary lease on `store` for what an export writes before the exporter's own
/// lease holds it (`--copy` layers).
pub async fn temporary_lease(store: &Store) -> Result<LeaseGuard, CliError> {
    LeaseGuard::temporary(store.leases.clone(), TEMPORARY_LEASE)
        .await
        .map_err(|e| CliError::context("creating a lease", e))
}
