//! Directory registration: existing directories, each the full tree of one layer,
//! registered as a chain of committed snapshots in the [`DirectorySnapshotter`]
//! without copying them, and pruning the registrations whose trees changed since.
//!
//! A snapshot's name is derived from its parent's name, its directory's canonical path
//! and a fingerprint of the tree's metadata (every entry's path, type, mode, owner,
//! size, link target, mtime and ctime; see [`fingerprint`]). Registering unchanged trees
//! again finds the same snapshots, and with them the layer blobs cached on them: a warm
//! re-export computes no diff. Any change to a tree (which updates some ctime) gives a
//! new name, so a stale cached layer can never be reused. Fingerprinting only stats the
//! tree, which costs a small fraction of computing its diff.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use strata_oci::Digester;
use strata_snapshotter::{DirectorySnapshotter, Filter, Info, Kind, Labels, Snapshotter};

use crate::error::DirectoryError;
use crate::fingerprint::fingerprint;
use crate::immutable_ref::LABEL_DESCRIPTION;

/// Label recording the directory a snapshot was registered from (read when pruning).
pub const LABEL_SOURCE_DIR: &str = "strata.io/source-dir";

/// Label on the bottom registration of a keyed chain ([`DirectoryChain::keyed`]): the
/// key, part of the registration's name (read when pruning).
const LABEL_KEY: &str = "strata.io/chain-key";

/// One layer to register: a directory holding the full tree after this step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDir {
    /// The directory (canonicalized when read).
    pub dir: PathBuf,
    /// The layer's description: its history `created_by`.
    pub description: String,
}

/// A chain of layer directories, base first, read and named: the snapshot name of each
/// layer is known, registering it is left to [`DirectoryChain::register`]. Reading
/// first lets a caller check every tree before it touches a store.
#[derive(Clone, Debug)]
pub struct DirectoryChain {
    /// Each layer (its directory canonical) with its fingerprint and snapshot name,
    /// base first.
    layers: Vec<(LayerDir, String, String)>,
    /// What besides the trees decides their layers ([`DirectoryChain::keyed`]).
    key: Option<String>,
}

impl DirectoryChain {
    /// Fingerprints the trees of `layers` (base first) concurrently, on blocking
    /// threads, and derives their snapshot names. Errors name the first directory (in
    /// chain order) that could not be read.
    pub async fn read(layers: &[LayerDir]) -> Result<DirectoryChain, DirectoryError> {
        let tasks: Vec<_> = layers
            .iter()
            .map(|layer| {
                let dir = layer.dir.clone();
                tokio::task::spawn_blocking(move || {
                    let canonical = dir.canonicalize().map_err(|source| DirectoryError::Read {
                        dir: dir.clone(),
                        path: dir.clone(),
                        source,
                    })?;
                    let fp = fingerprint(&canonical)?;
                    Ok::<_, DirectoryError>((canonical, fp))
                })
            })
            .collect();
        let mut read = Vec::with_capacity(layers.len());
        for (layer, task) in layers.iter().zip(tasks) {
            let (dir, fp) = task.await.map_err(|e| DirectoryError::Read {
                dir: layer.dir.clone(),
                path: layer.dir.clone(),
                source: std::io::Error::other(e),
            })??;
            let layer = LayerDir {
                dir,
                description: layer.description.clone(),
            };
            read.push((layer, fp));
        }
        Ok(DirectoryChain::named(read, None))
    }

    /// The same trees, named with `key`: what, besides the trees themselves, decides
    /// their layers — the id of a base image's top ref the bottom layer is diffed
    /// against (its chainID; load the top with
    /// [`ImmutableRef::load_onto`](crate::ImmutableRef::load_onto)), and a differ
    /// rule other than the default one. The key is part of the bottom layer's snapshot
    /// name, so the same trees under another key are other layers, with other cached
    /// blobs; it is recorded in a label, so pruning finds the name again.
    pub fn keyed(self, key: &str) -> DirectoryChain {
        let read = self
            .layers
            .into_iter()
            .map(|(layer, fp, _)| (layer, fp))
            .collect();
        DirectoryChain::named(read, Some(key.to_string()))
    }

    /// Names the fingerprinted trees `read` as a chain keyed `key`.
    fn named(read: Vec<(LayerDir, String)>, key: Option<String>) -> DirectoryChain {
        let mut layers: Vec<(LayerDir, String, String)> = Vec::with_capacity(read.len());
        for (layer, fp) in read {
            let parent = layers
                .last()
                .map(|(_, _, name)| name.as_str())
                .or(key.as_deref());
            let name = snapshot_name(parent, &layer.dir, &fp);
            layers.push((layer, fp, name));
        }
        DirectoryChain { layers, key }
    }

    /// Each layer's directory (canonical) and fingerprint ([`fingerprint`]), base
    /// first: what a provenance statement names as the layers' sources.
    ///
    /// [`fingerprint`]: crate::fingerprint
    pub fn fingerprints(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.layers
            .iter()
            .map(|(layer, fp, _)| (layer.dir.as_path(), fp.as_str()))
    }

    /// The snapshot names of the chain's layers, base first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|(_, _, name)| name.as_str())
    }

    /// Registers the chain in `snapshotter`, or finds it registered already (then only
    /// the description labels are brought up to date); returns the snapshot names, base
    /// first. Safe against another process registering the same trees at once.
    pub async fn register(
        &self,
        snapshotter: &DirectorySnapshotter,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut names: Vec<String> = Vec::with_capacity(self.layers.len());
        for (layer, _, name) in &self.layers {
            let parent = names.last().map(String::as_str);
            let key = if parent.is_none() {
                self.key.as_deref()
            } else {
                None
            };
            register_one(snapshotter, layer, name, parent, key).await?;
            names.push(name.clone());
        }
        Ok(names)
    }
}

/// Reads `layers` (base first) and registers them as a chain in `snapshotter`, in one
/// call: [`DirectoryChain::read`] then [`DirectoryChain::register`]. Returns the
/// snapshot names, base first; load the top one with
/// [`ImmutableRef::load`](crate::ImmutableRef::load).
pub async fn register_directories(
    snapshotter: &DirectorySnapshotter,
    layers: &[LayerDir],
) -> Result<Vec<String>, DirectoryError> {
    DirectoryChain::read(layers)
        .await?
        .register(snapshotter)
        .await
}

/// The snapshot name of the tree at `dir` (canonical) with fingerprint `fp` on
/// `parent`. Stores registered by earlier versions depend on these exact bytes.
fn snapshot_name(parent: Option<&str>, dir: &Path, fp: &str) -> String {
    let mut d = Digester::new();
    d.update(parent.unwrap_or("").as_bytes());
    d.update(&[0]);
    d.update(dir.as_os_str().as_bytes());
    d.update(&[0]);
    d.update(fp.as_bytes());
    format!("dir-{}", &d.finish().hex()[..32])
}

/// Registers `layer` as `name` on `parent` (or, at the bottom of a keyed chain,
/// recording `key`), or updates the description of the registration found under that
/// name.
async fn register_one(
    snapshotter: &DirectorySnapshotter,
    layer: &LayerDir,
    name: &str,
    parent: Option<&str>,
    key: Option<&str>,
) -> Result<(), DirectoryError> {
    let fail = |source| DirectoryError::Register {
        dir: layer.dir.clone(),
        name: name.to_string(),
        source,
    };
    match snapshotter.stat(name).await {
        Ok(mut info) => {
            // Same tree, maybe another description: keep the label current.
            if info.labels.get(LABEL_DESCRIPTION) != Some(&layer.description) {
                info.labels
                    .insert(LABEL_DESCRIPTION.into(), layer.description.clone());
                snapshotter
                    .update(info, &[format!("labels.{LABEL_DESCRIPTION}")])
                    .await
                    .map_err(fail)?;
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            let mut labels = Labels::from([
                (LABEL_DESCRIPTION.to_string(), layer.description.clone()),
                (
                    LABEL_SOURCE_DIR.to_string(),
                    layer.dir.display().to_string(),
                ),
            ]);
            if let Some(key) = key {
                labels.insert(LABEL_KEY.to_string(), key.to_string());
            }
            match snapshotter.register(name, parent, &layer.dir, labels).await {
                Ok(_) => Ok(()),
                // Another process registered the same tree at the same time.
                Err(strata_snapshotter::Error::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(fail(e)),
            }
        }
        Err(e) => Err(fail(e)),
    }
}

/// What [`prune_stale_registrations`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The views removed.
    pub views: Vec<String>,
    /// The stale registrations removed, children before parents.
    pub registrations: Vec<String>,
}

impl PruneReport {
    /// How many snapshots were removed, views and registrations together.
    pub fn removed(&self) -> usize {
        self.views.len() + self.registrations.len()
    }
}

/// Removes every view, then (children first) every registration whose tree is gone or
/// changed since it was registered, and every registration on such a parent. Only
/// registrations made by [`DirectoryChain::register`] are checked (they record their
/// directory in [`LABEL_SOURCE_DIR`]); the registered trees themselves are never
/// touched. Meant for garbage collection while no export uses `snapshotter`: the
/// views of running exports are removed too.
pub async fn prune_stale_registrations(
    snapshotter: &DirectorySnapshotter,
) -> Result<PruneReport, DirectoryError> {
    let fail = |source| DirectoryError::Prune { source };
    let mut report = PruneReport::default();
    for view in snapshotter
        .walk(&Filter::Kind(Kind::View))
        .await
        .map_err(fail)?
    {
        snapshotter.remove(&view.name).await.map_err(fail)?;
        report.views.push(view.name);
    }
    let committed = snapshotter
        .walk(&Filter::Kind(Kind::Committed))
        .await
        .map_err(fail)?;
    let mut stale = BTreeSet::new();
    for info in &committed {
        let Some(dir) = info.labels.get(LABEL_SOURCE_DIR) else {
            continue;
        };
        if !registration_is_fresh(info, PathBuf::from(dir)).await {
            stale.insert(info.name.clone());
        }
    }
    // A registration on a stale parent is stale too.
    loop {
        let before = stale.len();
        for info in &committed {
            if info.parent.as_ref().is_some_and(|p| stale.contains(p)) {
                stale.insert(info.name.clone());
            }
        }
        if stale.len() == before {
            break;
        }
    }
    // Children before parents.
    while !stale.is_empty() {
        let leaves: Vec<String> = stale
            .iter()
            .filter(|n| {
                !committed
                    .iter()
                    .any(|c| c.parent.as_ref() == Some(*n) && stale.contains(&c.name))
            })
            .cloned()
            .collect();
        if leaves.is_empty() {
            break;
        }
        for name in leaves {
            snapshotter.remove(&name).await.map_err(fail)?;
            stale.remove(&name);
            report.registrations.push(name);
        }
    }
    Ok(report)
}

/// True when the tree at `dir` still has the name `info` was registered under.
async fn registration_is_fresh(info: &Info, dir: PathBuf) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let d = dir.clone();
    let fp = tokio::task::spawn_blocking(move || fingerprint(&d)).await;
    let parent = info
        .parent
        .as_deref()
        .or(info.labels.get(LABEL_KEY).map(String::as_str));
    matches!(fp, Ok(Ok(fp)) if snapshot_name(parent, &dir, &fp) == info.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of existing stores: computed before the registration moved out of the CLI.
    #[test]
    fn snapshot_names_are_stable() {
        let mut d = Digester::new();
        d.update(b"dir-parent\0/trees/top\0fp");
        assert_eq!(
            snapshot_name(Some("dir-parent"), Path::new("/trees/top"), "fp"),
            format!("dir-{}", &d.finish().hex()[..32])
        );
    }
}
