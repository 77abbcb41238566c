//! [`unpack_rootfs`]: one platform of a stored image applied, layer by layer, onto a
//! directory as a root filesystem, every layer's diffID checked against the config;
//! a failed unpack leaves the directory as it found it (empty, or absent).
//!
//! It lives here, beside the import, because it is the import's reading of an image
//! (manifest, platform, config, diff_ids: [`read_image`]) followed by the differ's
//! [`Applier`] on each layer, as the [`Materializer`](crate::Materializer) does into
//! a snapshotter; only the target differs (a directory the caller names).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_differ::{Applier, ApplyOptions};
use strata_oci::{Descriptor, Digest, Platform};
use strata_snapshotter::Mount;

use crate::error::RefError;
use crate::import::{read_image, ImageRoot, ImportError};

/// How [`unpack_rootfs`] unpacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// The platform to unpack from an index (default: the host's); for a single
    /// manifest, its config must be of this platform.
    pub platform: Option<Platform>,
    /// Map every owner to the caller, as `umoci unpack --rootless` does (see
    /// [`ApplyOptions::rootless`]: device nodes are skipped, only `user.` xattrs set).
    pub rootless: bool,
    /// Unpack into a directory that is not empty: its content is removed first (never
    /// crossing into another filesystem), so the result is exactly the image.
    pub force: bool,
}

/// What [`unpack_rootfs`] unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackedRootfs {
    /// The manifest of the platform unpacked.
    pub manifest: Descriptor,
    /// Its platform, as the config gives it.
    pub platform: Platform,
    /// The layers applied, base first, with their (verified) diffIDs.
    pub layers: Vec<(Descriptor, Digest)>,
}

/// Why an image could not be unpacked; after any of them the target is as it was
/// before (absent, or empty), except that a forced unpack has already emptied it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The image could not be read: no such name ([`ImportError::TagNotFound`], naming
    /// the names there are), no such platform ([`ImportError::MissingPlatform`],
    /// naming the platforms there are), a malformed manifest or config, …
    #[error(transparent)]
    Image(#[from] ImportError),
    /// The target exists and is not empty, and `force` was not given.
    #[error("{}: not empty (unpack into an empty or new directory, or force)", .dir.display())]
    NotEmpty {
        /// The target.
        dir: PathBuf,
    },
    /// The target exists and is not a directory.
    #[error("{}: not a directory", .dir.display())]
    NotADirectory {
        /// The target.
        dir: PathBuf,
    },
    /// Emptying a forced target would cross into another filesystem (a mount point
    /// under it); nothing under the mount point was touched.
    #[error("{}: a mount point under the target; unmount it before unpacking over it", .path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
    },
    /// A layer failed: its blob could not be read or applied
    /// ([`RefError::Apply`]), or its content does not hash to the config's diff_id
    /// ([`RefError::DiffIdMismatch`], naming the layer, expected and actual).
    #[error("{image}: {source}")]
    Layer {
        /// The image, as its reference was written.
        image: String,
        /// The layer's failure (boxed: it is large).
        #[source]
        source: Box<RefError>,
    },
    /// Creating, reading or emptying the target failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacks `image` (one platform of it, as `options` choose) onto `dir` as a root
/// filesystem: the manifest and config are read and verified ([`read_image`]), then
/// each layer is applied in order by `applier` (whiteouts, opaque directories,
/// hardlinks, xattrs, devices and owners — these two when the caller may set them, or
/// mapped to the caller with `rootless`) and its diffID compared with the config's.
///
/// The layer blobs are read from the applier's content store (a strata store or
/// containerd holding the image record `image` came from; `pull` an image elsewhere
/// first). `dir` is created if missing (with its missing parents); it must be empty
/// unless `force`. On any failure what was written is removed: a directory that was
/// created is removed again, one that existed is left empty with its mode, owner and
/// times restored.
pub async fn unpack_rootfs(
    image: &ImageRoot,
    applier: &dyn Applier,
    dir: &Path,
    options: &UnpackOptions,
) -> Result<UnpackedRootfs, UnpackError> {
    let read = read_image(image, options.platform.as_ref()).await?;
    let target = Target::prepare(dir, options.force)?;
    let apply = ApplyOptions {
        rootless: options.rootless,
    };
    let mounts = [Mount::bind(dir, false)];
    let mut layers = Vec::with_capacity(read.layers.len());
    for layer in &read.layers {
        let applied = layer.apply_checked(applier, &mounts, &apply).await;
        if let Err(source) = applied {
            target.undo();
            return Err(UnpackError::Layer {
                image: image.reference.clone(),
                source: Box::new(source),
            });
        }
        layers.push((layer.descriptor.clone(), layer.diff_id.clone()));
    }
    Ok(UnpackedRootfs {
        manifest: read.manifest,
        platform: read.platform,
        layers,
    })
}

/// The target directory, and how to put it back as it was.
struct Target {
    dir: PathBuf,
    /// The topmost directory this unpack created (`dir` or one of its parents).
    created: Option<PathBuf>,
    /// The metadata `dir` had, when it existed.
    before: Option<fs::Metadata>,
}

impl Target {
    /// Checks (and creates, or with `force` empties) `dir`.
    fn prepare(dir: &Path, force: bool) -> Result<Target, UnpackError> {
        match fs::metadata(dir) {
            Ok(md) if !md.is_dir() => Err(UnpackError::NotADirectory {
                dir: dir.to_path_buf(),
            }),
            Ok(md) => {
                let not_empty = fs::read_dir(dir).map_err(io_err(dir))?.next().is_some();
                if not_empty {
                    if !force {
                        return Err(UnpackError::NotEmpty {
                            dir: dir.to_path_buf(),
                        });
                    }
                    empty_dir(dir, md.dev())?;
                }
                Ok(Target {
                    dir: dir.to_path_buf(),
                    created: None,
                    before: Some(md),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The topmost missing ancestor, removed again on failure.
                let mut top = dir.to_path_buf();
                while let Some(parent) = top.parent() {
                    if parent.as_os_str().is_empty() || parent.exists() {
                        break;
                    }
                    top = parent.to_path_buf();
                }
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                Ok(Target {
                    dir: dir.to_path_buf(),
                    created: Some(top),
                    before: None,
                })
            }
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    /// Removes what the unpack wrote; failures to do so are logged (the unpack's own
    /// error is the one reported).
    fn undo(&self) {
        let result = match (&self.created, &self.before) {
            (Some(top), _) => fs::remove_dir_all(top).map_err(io_err(top)),
            (None, Some(md)) => empty_dir(&self.dir, md.dev()).and_then(|()| self.restore(md)),
            (None, None) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing a failed unpack");
        }
    }

    /// Puts back the mode, owner and times `dir` had (a layer may set the root's).
    fn restore(&self, md: &fs::Metadata) -> Result<(), UnpackError> {
        let dir = &self.dir;
        let now = fs::metadata(dir).map_err(io_err(dir))?;
        if (now.uid(), now.gid()) != (md.uid(), md.gid()) {
            std::os::unix::fs::chown(dir, Some(md.uid()), Some(md.gid())).map_err(io_err(dir))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(io_err(dir))?;
        let times = fs::FileTimes::new()
            .set_accessed(md.accessed().map_err(io_err(dir))?)
            .set_modified(md.modified().map_err(io_err(dir))?);
        fs::File::open(dir)
            .and_then(|f| f.set_times(times))
            .map_err(io_err(dir))
    }
}

/// Removes everything under `dir` (whose filesystem is `dev`), never following
/// symlinks, and refusing to descend into a mount point (another `st_dev`).
fn empty_dir(dir: &Path, dev: u64) -> Result<(), UnpackError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if md.is_dir() {
            if md.dev() != dev {
                return Err(UnpackError::MountPoint { path });
            }
            // Owner-writable first, so a read-only directory can be emptied.
            if md.mode() & 0o700 != 0o700 {
                fs::set_permissions(&path, fs::Permissions::from_mode(md.mode() | 0o700))
                    .map_err(io_err(&path))?;
            }
            empty_dir(&path, dev)?;
            fs::remove_dir(&path).map_err(io_err(&path))?;
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}
