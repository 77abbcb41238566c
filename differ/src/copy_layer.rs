//! [`copy_layer`]: a layer holding a tree copied under a destination, like a
//! Dockerfile `COPY` — no diff against anything, so no whiteouts.
//!
//! The entries are the differ's own: the source is walked as the upper tree of a diff
//! against an empty tree ([`double_walk`]), and written by the [`LayerTarWriter`]
//! through [`write_layer`] (hashed, compressed and committed in one pass), with every
//! name put under the destination and every owner replaced.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use strata_content::ContentStore;

use crate::changes::{double_walk, Change};
use crate::error::{Error, Result};
use crate::file_metadata::{ContentCheck, Stat};
use crate::layer_writer::write_layer;
use crate::tar_entries::{is_reserved_name, LayerTarWriter};
use crate::{CompareOptions, LayerBlob};

/// Where a copy layer puts its source, and whose its entries are (`strata export
/// --copy SRC[:DEST] [--chown UID:GID]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// The absolute path inside the image the source goes to; `/` by default. A file
    /// source goes *at* `dest`, or at `dest/<its name>` when `dest` ends with `/`.
    pub dest: String,
    /// The `(uid, gid)` every copied entry gets (`--chown`); `None` for `0:0`.
    pub owner: Option<(u32, u32)>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            dest: "/".to_string(),
            owner: None,
        }
    }
}

/// Writes a layer holding `src` under `copy.dest`, as a Dockerfile `COPY` does, and
/// commits it to `store` per `opts` (compression, level, lease, labels, progress; the
/// blob gets the `containerd.io/uncompressed` label with its diffID, as every layer).
///
/// - A directory `src`: its contents (not the directory itself) under `dest`.
/// - Any other `src` (file, symlink, device, fifo): at `dest`, or at `dest/<name of
///   src>` when `dest` ends with `/` (or is `/`). A symlink is copied as the symlink,
///   never followed.
/// - Every copied entry is owned by `copy.owner` (default `0:0`). Modes (with
///   setuid/setgid/sticky), mtimes with nanoseconds, xattrs, symlink targets, devices
///   and fifos are kept as the differ writes them; a second name of a hardlinked file
///   within `src` is a hardlink entry to the first (in layer order); sockets are
///   skipped.
/// - `dest` and its ancestors get no entries of their own: applied over a base, a
///   directory the base has keeps its mode and owner (a `--copy x:/tmp/` must not take
///   `/tmp`'s sticky bit, nor `--chown` hand `/etc` to a user); a missing one is
///   created by the applier (containerd, docker, umoci and strata alike) as `0755`
///   `root:root`. So `--chown` applies to what is copied, not to `dest`.
/// - Every mtime is clamped to `opts.source_date_epoch` when set. Entries are sorted
///   (parents first, names in byte order), so the same `src` gives the same diffID and
///   blob digest on every run, whatever the thread count.
///
/// Errors, before anything is committed (a failed layer leaves no ingest behind):
/// [`Error::InvalidCopyDestination`] when `dest` is not absolute, holds a `..`
/// component or a NUL byte, or a name starting with `.wh.`;
/// [`Error::CopySourceMissing`] naming `src` when it does not exist;
/// [`Error::ReservedName`] naming the source path of an entry whose name in the layer
/// would start with `.wh.` (it would be read as a whiteout and delete a base file).
///
/// `strata export --copy ./site:/srv/www --chown 101:101`, applied onto a tree:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::os::unix::fs::MetadataExt;
/// use std::sync::Arc;
/// use strata_content::MemoryStore;
/// use strata_differ::{copy_layer, Applier, CompareOptions, CopyOptions, WalkingDiffer};
/// use strata_snapshotter::Mount;
///
/// let (site, rootfs) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// std::fs::write(site.path().join("index.html"), "<h1>hi</h1>")?;
///
/// let store = Arc::new(MemoryStore::new());
/// let copy = CopyOptions { dest: "/srv/www".into(), owner: Some((101, 101)) };
/// let layer = copy_layer(store.clone(), site.path(), &copy, &CompareOptions::default()).await?;
///
/// WalkingDiffer::new(store).apply(&layer.descriptor, &[Mount::bind(rootfs.path(), false)]).await?;
/// let page = rootfs.path().join("srv/www/index.html");
/// assert_eq!(std::fs::read_to_string(&page)?, "<h1>hi</h1>");
/// # if nix::unistd::geteuid().is_root() {
/// assert_eq!(std::fs::metadata(&page)?.uid(), 101);
/// # }
/// # Ok(())
/// # }
/// ```
pub async fn copy_layer(
    store: Arc<dyn ContentStore>,
    src: &Path,
    copy: &CopyOptions,
    opts: &CompareOptions,
) -> Result<LayerBlob> {
    let dest = Destination::parse(&copy.dest)?;
    let src = src.to_path_buf();
    let owner = copy.owner.unwrap_or((0, 0));
    let epoch = opts.source_date_epoch;
    write_layer(store, opts, move |sink| {
        write_copy(&src, &dest, owner, epoch, sink)
    })
    .await
}

/// A checked copy destination.
#[derive(Debug, PartialEq, Eq)]
struct Destination {
    /// Relative to the image root; empty for `/`.
    path: PathBuf,
    /// `dest` names a directory (ends with `/` or `/.`, or is `/`): a file source goes
    /// into it under its own name.
    is_dir: bool,
}

impl Destination {
    fn parse(dest: &str) -> Result<Destination> {
        let invalid = |reason: String| Error::InvalidCopyDestination {
            dest: dest.to_string(),
            reason,
        };
        if dest.contains('\0') {
            return Err(invalid("it holds a NUL byte".into()));
        }
        if !dest.starts_with('/') {
            return Err(invalid("it must be an absolute path".into()));
        }
        let mut path = PathBuf::new();
        for component in Path::new(dest).components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) if is_reserved_name(name) => {
                    return Err(invalid(format!(
                        "{name:?} starts with \".wh.\", reserved for whiteouts"
                    )))
                }
                Component::Normal(name) => path.push(name),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(invalid("it must not contain \"..\"".into()))
                }
            }
        }
        let is_dir = dest.ends_with('/') || dest.ends_with("/.") || path.as_os_str().is_empty();
        Ok(Destination { path, is_dir })
    }
}

/// Writes the copy layer's tar into `sink`.
fn write_copy(
    src: &Path,
    dest: &Destination,
    owner: (u32, u32),
    epoch: Option<i64>,
    sink: &mut dyn Write,
) -> Result<()> {
    let st = Stat::lstat_opt(src)?.ok_or_else(|| Error::CopySourceMissing {
        path: src.to_path_buf(),
    })?;
    let mut tar = LayerTarWriter::new(sink, epoch).owned_by(owner);
    if st.is_dir() {
        // No lower tree: nothing to compare, the check does not matter.
        let set = double_walk(None, src, ContentCheck::Metadata)?;
        // Checked before anything is written: a refused copy streams nothing.
        let reserved = set
            .iter()
            .map(|change| change.path())
            .find(|rel| rel.components().any(|c| is_reserved_name(c.as_os_str())));
        if let Some(rel) = reserved {
            return Err(Error::ReservedName {
                path: src.join(rel),
            });
        }
        for change in set.iter() {
            // A walk against no lower tree finds entries only.
            if let Change::Entry(rel) = change {
                tar.write_entry_as(&src.join(rel), &dest.path.join(rel))?;
            }
        }
        tracing::debug!(src = %src.display(), entries = set.len(), "copy layer");
    } else {
        let (dir, name): (&Path, &OsStr) = if dest.is_dir {
            let name = src.file_name().ok_or_else(|| Error::Io {
                path: src.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a copy source that is not a directory needs a file name",
                ),
            })?;
            if is_reserved_name(name) {
                return Err(Error::ReservedName {
                    path: src.to_path_buf(),
                });
            }
            (dest.path.as_path(), name)
        } else {
            let parent = dest.path.parent().unwrap_or(Path::new(""));
            (parent, dest.path.file_name().unwrap_or(OsStr::new("")))
        };
        tar.write_entry_as(src, &dir.join(name))?;
    }
    tar.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(dest: &str) -> (String, bool) {
        let d = Destination::parse(dest).expect(dest);
        (d.path.display().to_string(), d.is_dir)
    }

    #[test]
    fn destinations_are_normalized() {
        assert_eq!(parsed("/"), (String::new(), true));
        assert_eq!(parsed("//"), (String::new(), true));
        assert_eq!(parsed("/app"), ("app".into(), false));
        assert_eq!(parsed("/app/"), ("app".into(), true));
        assert_eq!(parsed("/app/."), ("app".into(), true));
        assert_eq!(parsed("/usr//local/./bin"), ("usr/local/bin".into(), false));
    }

    #[test]
    fn bad_destinations_are_refused_naming_them() {
        for dest in [
            "",
            "app",
            "./app",
            "/app/../etc",
            "/..",
            "/a\0b",
            "/x/.wh.y",
            "/.wh..wh..opq/",
        ] {
            match Destination::parse(dest) {
                Err(Error::InvalidCopyDestination { dest: named, .. }) => assert_eq!(named, dest),
                other => panic!("{dest:?}: expected InvalidCopyDestination, got {other:?}"),
            }
        }
    }
}
