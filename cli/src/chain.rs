//! Registers `--layer` directories as a chain of committed snapshots in the directory
//! snapshotter, without copying them.
//!
//! A snapshot's name is derived from its parent's name, its directory's canonical path
//! and a fingerprint of the tree's metadata (every entry's path, type, mode, owner,
//! size, link target, mtime and ctime). Re-running an export on unchanged trees finds
//! the same snapshots, and with them the layer blobs cached on them: a warm re-export
//! computes no diff. Any change to a tree (which updates some ctime) gives a new name,
//! so a stale cached layer can never be reused. Fingerprinting only stats the tree
//! (see [`fingerprint`]), which costs a small fraction of computing its diff.

use std::os::unix::ffi::OsStrExt;

use strata_content::Digester;
use strata_snapshotter::immutable_ref::LABEL_DESCRIPTION;
use strata_snapshotter::{DirectorySnapshotter, Labels, Snapshotter};

use crate::error::CliError;
use crate::plan::LayerPlan;

/// Label recording the directory a snapshot was registered from (for `gc`).
pub const LABEL_SOURCE_DIR: &str = "strata.io/source-dir";

pub use crate::fingerprint::fingerprint;

/// The snapshot name of `layer` (with fingerprint `fp`) on `parent`.
pub fn snapshot_name(parent: Option<&str>, layer: &LayerPlan, fp: &str) -> String {
    let mut d = Digester::new();
    d.update(parent.unwrap_or("").as_bytes());
    d.update(&[0]);
    d.update(layer.dir.as_os_str().as_bytes());
    d.update(&[0]);
    d.update(fp.as_bytes());
    format!("dir-{}", &d.finish().hex()[..32])
}

/// Registers (or finds) the snapshots of `layers` with fingerprints `fps`; returns
/// their names, base first.
pub async fn register(
    snapshotter: &DirectorySnapshotter,
    layers: &[LayerPlan],
    fps: &[String],
) -> Result<Vec<String>, CliError> {
    let mut names: Vec<String> = Vec::new();
    for (layer, fp) in layers.iter().zip(fps) {
        let parent = names.last().map(String::as_str);
        let name = snapshot_name(parent, layer, fp);
        let fail = |e: strata_snapshotter::Error| {
            CliError::context(format!("registering layer {}", layer.shown), e)
        };
        match snapshotter.stat(&name).await {
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
            }
            Err(e) if e.is_not_found() => {
                let labels = Labels::from([
                    (LABEL_DESCRIPTION.to_string(), layer.description.clone()),
                    (
                        LABEL_SOURCE_DIR.to_string(),
                        layer.dir.display().to_string(),
                    ),
                ]);
                match snapshotter
                    .register(&name, parent, &layer.dir, labels)
                    .await
                {
                    Ok(_) => {}
                    // Another strata registered the same tree at the same time.
                    Err(strata_snapshotter::Error::AlreadyExists(_)) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            Err(e) => return Err(fail(e)),
        }
        names.push(name);
    }
    Ok(names)
}
