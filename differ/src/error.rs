//! Typed errors of the differ.

use std::io;
use std::path::PathBuf;

/// The result type of differ operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong; every variant names the path, digest or mount at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the content store failed.
    #[error(transparent)]
    Content(#[from] strata_content::Error),
    /// Resolving or mounting snapshots failed.
    #[error(transparent)]
    Snapshot(#[from] strata_snapshotter::Error),
    /// A file in a tree could not be read (or written, when applying).
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file changed while it was being read (size or mtime moved under us).
    #[error("{path} changed while the layer was being written: {reason}")]
    TreeChanged {
        /// The path at fault.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// A path in a tree looks like a whiteout (`.wh.` prefix) and cannot be put in a
    /// layer without being misread as a deletion.
    #[error("{path}: file names starting with \".wh.\" are reserved for whiteouts")]
    ReservedName {
        /// The path at fault.
        path: PathBuf,
    },
    /// The source of a copy layer does not exist.
    #[error("copy source {path} does not exist")]
    CopySourceMissing {
        /// The missing source path.
        path: PathBuf,
    },
    /// A copy layer's destination is not an absolute path inside the image (relative,
    /// with a `..` or NUL, or with a name reserved for whiteouts).
    #[error("copy destination {dest:?} is invalid: {reason}")]
    InvalidCopyDestination {
        /// The destination as given.
        dest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The applier refused an entry of a layer: it would land outside the root, is a
    /// kind the process may not create, or passes a limit. Nothing of the entry was
    /// written; the tree holds what earlier entries wrote.
    #[error("layer {layer}: entry {entry:?} refused: {refusal}")]
    RefusedEntry {
        /// The layer's digest.
        layer: String,
        /// The entry's name in the tar (for an extension header, the header's own name).
        entry: String,
        /// What was refused.
        refusal: Refusal,
    },
    /// A compressed layer decompressed past its bound (a decompression bomb): see
    /// [`DecompressionLimit`](crate::DecompressionLimit).
    #[error("layer {layer} decompresses to more than {limit} bytes of tar, its bound")]
    TarTooLarge {
        /// The layer's digest.
        layer: String,
        /// The bound, in bytes of uncompressed tar.
        limit: u64,
    },
    /// A layer blob is not a valid (compressed) tar.
    #[error("layer {digest} is corrupt: {reason}")]
    CorruptLayer {
        /// The layer's digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Mounts the differ cannot read as a tree.
    #[error("unsupported mounts: {0}")]
    UnsupportedMount(String),
    /// A media type that is not a layer type the differ knows.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
}

/// Why the applier refused a layer entry (see [`Error::RefusedEntry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The name has a `..` component.
    #[error("a \"..\" component climbs out of the root")]
    ParentComponent,
    /// The name is absolute.
    #[error("an absolute name")]
    AbsoluteName,
    /// The name holds a NUL byte.
    #[error("a NUL byte in the name")]
    NulInName,
    /// A directory on the entry's way is a symlink (the applier never follows one:
    /// neither one from a lower layer nor one this layer made, nor a symlink loop).
    #[error("its parent {parent:?} is a symlink")]
    SymlinkedParent {
        /// The symlink, relative to the root.
        parent: String,
    },
    /// The name is the root itself, where only a directory entry may stand.
    #[error("it names the root")]
    Root,
    /// A hardlink whose target is refused for `refusal` (a name refusal, or one of
    /// the `Target…` refusals).
    #[error("hardlink target {target:?}: {refusal}")]
    HardlinkTarget {
        /// The link target as the tar gives it.
        target: String,
        /// Why the target is refused.
        refusal: Box<Refusal>,
    },
    /// A hardlink target that does not exist (earlier in the layer or below it).
    #[error("it does not exist")]
    TargetMissing,
    /// A hardlink target that is a directory (Linux cannot hardlink directories).
    #[error("it is a directory")]
    TargetIsDirectory,
    /// A hardlink to the entry's own name.
    #[error("it is the entry itself")]
    TargetIsTheEntry,
    /// A whiteout that names no single file in its directory: `.wh.` alone,
    /// `.wh..` or `.wh...`.
    #[error("a whiteout must name one file of its directory")]
    InvalidWhiteout,
    /// A character device, which the process may not create (no `CAP_MKNOD`: not
    /// root, or in a user namespace).
    #[error("a character device, and this process may not create one (no CAP_MKNOD)")]
    CharDevice,
    /// A block device, which the process may not create (no `CAP_MKNOD`).
    #[error("a block device, and this process may not create one (no CAP_MKNOD)")]
    BlockDevice,
    /// A PAX or GNU extension header larger than its limit (1 MiB).
    #[error("an extension header of {size} bytes, over the limit of {limit}")]
    ExtensionHeaderTooLarge {
        /// The size the header claims.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A name longer than Linux's `PATH_MAX`.
    #[error("a name of {bytes} bytes, over the limit of {limit}")]
    PathTooLong {
        /// The normalized name's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A name component longer than Linux's `NAME_MAX`.
    #[error("a name component of {bytes} bytes, over the limit of {limit}")]
    ComponentTooLong {
        /// The component's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A name with more components than the depth limit.
    #[error("{depth} levels deep, over the limit of {limit}")]
    TooDeep {
        /// The name's number of components.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// An xattr name longer than Linux's `XATTR_NAME_MAX`.
    #[error("xattr name {name:?} is over the limit of {limit} bytes")]
    XattrNameTooLong {
        /// The name (lossy UTF-8).
        name: String,
        /// The limit.
        limit: usize,
    },
    /// An xattr value larger than Linux's `XATTR_SIZE_MAX`.
    #[error("xattr {name:?} has a value of {bytes} bytes, over the limit of {limit}")]
    XattrValueTooLarge {
        /// The xattr's name (lossy UTF-8).
        name: String,
        /// The value's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The entry's data would end past the bytes of tar the layer may hold (the blob's
    /// size for an uncompressed layer, its [`DecompressionLimit`](crate::DecompressionLimit)
    /// otherwise): refused at its header, before any of its data is read.
    #[error("its data would end at byte {end} of the tar, past the layer's bound of {limit}")]
    PastTarLimit {
        /// Where the entry's data would end in the tar.
        end: u64,
        /// The bound.
        limit: u64,
    },
}

/// An `Error::Io` naming `path`.
pub(crate) fn io_err(path: &std::path::Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
