//! Scanning a chain of layers: [`Layer`]s in, the final tree's packages out
//! ([`scan_layers`] → [`Inventory`]), each attributed to the layer that introduced it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use strata_oci::Digest;

use crate::db_files::{
    read_tar_delta, read_tree, DbState, Delta, APK_INSTALLED, DPKG_STATUS, RPM_DATABASES,
};
use crate::dpkg::{parse_status, StatusSource};
use crate::error::SbomError;
use crate::package::{OsRelease, Package, PackageKind};
use crate::{apk, db_files, rpm};

/// Where a layer's contents are read from.
pub enum LayerSource {
    /// A directory holding the full filesystem after this layer (a snapshot's mount,
    /// a `--layer` directory). Only the database files are read from it.
    Tree(PathBuf),
    /// The layer's uncompressed tar (a base image's blob, decompressed). Read once,
    /// front to back; only the data of database entries is read.
    Tar(Box<dyn Read + Send>),
}

impl std::fmt::Debug for LayerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSource::Tree(path) => f.debug_tuple("Tree").field(path).finish(),
            LayerSource::Tar(_) => f.write_str("Tar(..)"),
        }
    }
}

/// One layer of a chain: its diffID (what packages are attributed to) and where its
/// contents are.
#[derive(Debug)]
pub struct Layer {
    /// The layer's diffID (the digest of its uncompressed tar).
    pub diff_id: Digest,
    /// Its contents.
    pub source: LayerSource,
}

impl Layer {
    /// A layer whose full tree is the directory `tree`.
    pub fn tree(diff_id: Digest, tree: impl Into<PathBuf>) -> Layer {
        Layer {
            diff_id,
            source: LayerSource::Tree(tree.into()),
        }
    }

    /// A layer read from its uncompressed tar.
    pub fn tar(diff_id: Digest, tar: impl Read + Send + 'static) -> Layer {
        Layer {
            diff_id,
            source: LayerSource::Tar(Box::new(tar)),
        }
    }
}

/// Bounds on what is read from an image (its files are hostile until read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// The largest package database (`status`, a `status.d` file, `installed`,
    /// `rpmdb.sqlite`, `os-release`) read; a larger one is [`SbomError::TooLarge`].
    pub max_database_bytes: u64,
    /// The largest Debian copyright file read for a license; a larger one gives no
    /// license (`NOASSERTION`).
    pub max_copyright_bytes: u64,
    /// Layers read at once; `None` for the machine's cores.
    pub threads: Option<usize>,
}

impl Default for ScanLimits {
    /// 256 MiB per database (a large Fedora rpmdb is about 100 MiB), 1 MiB per
    /// copyright file.
    fn default() -> Self {
        ScanLimits {
            max_database_bytes: 256 << 20,
            max_copyright_bytes: 1 << 20,
            threads: None,
        }
    }
}

/// The packages of a chain's final tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Sorted by kind, name, architecture and version.
    pub packages: Vec<Package>,
    /// The final tree's `os-release`, if it has one.
    pub os_release: Option<OsRelease>,
}

/// What phase one made of a layer.
enum LayerRead {
    Tree(DbState),
    Tar(Delta),
}

fn read_layer(layer: Layer, limits: &ScanLimits) -> Result<LayerRead, SbomError> {
    match layer.source {
        LayerSource::Tree(tree) => read_tree(&tree, &layer.diff_id, limits).map(LayerRead::Tree),
        LayerSource::Tar(tar) => read_tar_delta(tar, &layer.diff_id, limits).map(LayerRead::Tar),
    }
}

/// Reads every layer (in parallel, up to `limits.threads`), keeping their order.
fn read_layers(layers: Vec<Layer>, limits: &ScanLimits) -> Result<Vec<LayerRead>, SbomError> {
    let count = layers.len();
    let threads = limits
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, count.max(1));
    let queue = Mutex::new(layers.into_iter().enumerate());
    let results: Mutex<Vec<Option<Result<LayerRead, SbomError>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((index, layer)) = next else {
                    return;
                };
                let read = read_layer(layer, limits);
                if let Ok(mut results) = results.lock() {
                    results[index] = Some(read);
                }
            });
        }
    });
    // Every layer was read (a worker's panic is re-raised by the scope); the first
    // failure in layer order is the one returned.
    let reads: Vec<LayerRead> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect::<Result<_, _>>()?;
    debug_assert_eq!(reads.len(), count);
    Ok(reads)
}

/// The packages a state's databases list, attributed (for now) to `layer`.
fn packages_of(state: &DbState, layer: &Digest) -> Result<Vec<Package>, SbomError> {
    let mut packages = Vec::new();
    if let Some(status) = state.file(DPKG_STATUS) {
        let text = String::from_utf8_lossy(status);
        packages.extend(parse_status(&text, StatusSource::StatusFile, layer));
    }
    for (path, entry) in state
        .files
        .range(format!("{}/", db_files::DPKG_STATUS_DIR)..)
    {
        if !path.starts_with(db_files::DPKG_STATUS_DIR) {
            break;
        }
        if let (true, db_files::Entry::File(bytes)) = (db_files::is_status_d_file(path), entry) {
            let text = String::from_utf8_lossy(bytes);
            packages.extend(parse_status(&text, StatusSource::StatusDir, layer));
        }
    }
    if let Some(installed) = state.file(APK_INSTALLED) {
        packages.extend(apk::parse_installed(
            &String::from_utf8_lossy(installed),
            layer,
        ));
    }
    if let Some((path, db)) = RPM_DATABASES
        .iter()
        .find_map(|p| state.file(p).map(|db| (*p, db)))
    {
        packages.extend(rpm::read_database(db, path, layer)?);
    }
    Ok(packages)
}

/// The database entries of a state: equal views list the same packages.
fn database_view(state: &DbState) -> Vec<(&String, &db_files::Entry)> {
    state
        .files
        .iter()
        .filter(|(path, _)| db_files::is_database(path))
        .collect()
}

/// A state's database entries, owned.
type DatabaseView = Vec<(String, db_files::Entry)>;

type Key = (PackageKind, String, Option<String>);

fn key(package: &Package) -> Key {
    (package.kind, package.name.clone(), package.arch.clone())
}

/// Scans a chain of layers (base first) without extracting it and returns the
/// packages of its final tree. Each package is attributed to the lowest layer from
/// which it is present, at its final version, in every layer up to the top. Blocking:
/// call it on a blocking thread.
pub fn scan_layers(layers: Vec<Layer>, limits: &ScanLimits) -> Result<Inventory, SbomError> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let reads = read_layers(layers, limits)?;
    let mut state = DbState::default();
    // Per layer: package key → (version, epoch).
    let mut versions: Vec<BTreeMap<Key, (String, Option<u32>)>> = Vec::with_capacity(reads.len());
    let mut previous: Option<(DatabaseView, Vec<Package>)> = None;
    let mut top_packages = Vec::new();
    for (read, diff_id) in reads.into_iter().zip(&diff_ids) {
        match read {
            LayerRead::Tree(tree_state) => state = tree_state,
            LayerRead::Tar(delta) => {
                if state.tree.is_some() {
                    let debs: Vec<String> = top_packages
                        .iter()
                        .filter(|p: &&Package| p.kind == PackageKind::Deb)
                        .map(|p| p.name.clone())
                        .collect();
                    state.detach_from_tree(debs.iter().map(String::as_str), limits);
                }
                state.apply(&delta);
            }
        }
        let view: DatabaseView = database_view(&state)
            .into_iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        let packages = match &previous {
            Some((old_view, old_packages)) if *old_view == view => old_packages.clone(),
            _ => packages_of(&state, diff_id)?,
        };
        let mut layer_versions = BTreeMap::new();
        for package in &packages {
            layer_versions
                .entry(key(package))
                .or_insert_with(|| (package.version.clone(), package.epoch));
        }
        versions.push(layer_versions);
        top_packages = packages.clone();
        previous = Some((view, packages));
    }
    let mut seen = BTreeMap::new();
    let mut packages = Vec::new();
    for mut package in top_packages {
        let key = key(&package);
        if seen.insert(key.clone(), ()).is_some() {
            continue;
        }
        let version = (package.version.clone(), package.epoch);
        let mut introduced = versions.len().saturating_sub(1);
        while introduced > 0 && versions[introduced - 1].get(&key) == Some(&version) {
            introduced -= 1;
        }
        if let Some(diff_id) = diff_ids.get(introduced) {
            package.layer = diff_id.clone();
        }
        if package.kind == PackageKind::Deb {
            package.license = state.copyright(&package.name, limits);
        }
        packages.push(package);
    }
    packages.sort_by(|a, b| {
        (a.kind, &a.name, &a.arch, &a.version, a.epoch)
            .cmp(&(b.kind, &b.name, &b.arch, &b.version, b.epoch))
    });
    let os_release = state
        .os_release()
        .map(|bytes| OsRelease::parse(&String::from_utf8_lossy(bytes)));
    Ok(Inventory {
        packages,
        os_release,
    })
}
