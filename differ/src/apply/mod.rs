//! Unpacks an OCI layer tar onto a directory (containerd `archive.Apply` semantics).
//!
//! Whiteouts (`.wh.<name>`) remove what lower layers had; an opaque marker
//! (`.wh..wh..opq`) removes every child of its directory that this layer did not
//! create. Directory mtimes are set once all entries are in place.
//! [`ApplyOptions::rootless`] maps owners to the caller (see its documentation).
//!
//! # Refusals
//!
//! A layer comes from outside (a registry, an archive), so the applier never writes
//! outside the root and never follows a symlink on an entry's way. It stops at the
//! first entry it refuses with [`Error::RefusedEntry`], naming the layer, the entry and
//! the [`Refusal`]; what earlier entries wrote stays (the caller discards the tree —
//! the cache removes a failed extraction's snapshot). Refused:
//!
//! - names that escape: a `..` component, an absolute name, a NUL byte, or a parent
//!   that is a symlink — from a lower layer or made earlier in this layer (a symlink
//!   then a file through it), a symlink loop included: symlinks are never followed,
//!   so a loop is refused at its first link;
//! - hardlinks whose target escapes the same ways, is missing, is a directory, is the
//!   root, or is the entry itself (a hardlink to a symlink links the symlink, as
//!   `link(2)` does);
//! - whiteouts that name no single file (`.wh.`, `.wh..`, `.wh...`), and whiteouts
//!   under a symlinked parent; a non-directory entry naming the root;
//! - character and block devices the process may not create (no `CAP_MKNOD`: not root,
//!   or in a user namespace). Docker and umoci skip them there; strata refuses, so a
//!   tree never silently lacks what its layer holds, unless the caller asked for
//!   [`ApplyOptions::rootless`], which skips them. Fifos are always made.
//!
//! # Limits
//!
//! Each is checked on the entry's header, before its data is read or allocated, and
//! is refused as above:
//!
//! - a PAX or GNU long-name/long-link extension header is at most 1 MiB, Go
//!   `archive/tar`'s `maxSpecialFileSize` (added for CVE-2022-2879), which containerd
//!   and Docker read layers with;
//! - a name is at most 4096 bytes (`PATH_MAX`), a component 255 (`NAME_MAX`), and a
//!   name at most 1024 components deep;
//! - an xattr name is at most 255 bytes (`XATTR_NAME_MAX`), a value 64 KiB
//!   (`XATTR_SIZE_MAX`; all four from `<linux/limits.h>`);
//! - an entry's data must end within the bytes of tar the layer may hold — the blob's
//!   size for an uncompressed layer, its [`DecompressionLimit`](crate::DecompressionLimit)
//!   when compressed — so a header claiming more than can follow stops the layer at
//!   once, and the layer reader stops any stream past the bound
//!   ([`Error::TarTooLarge`]). The blob itself is never read past its descriptor's size.

mod confined;
mod extensions;
#[cfg(test)]
mod rootless_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::error::{io_err, Error, Refusal, Result};
use crate::file_metadata::Stat;
use crate::pax::{parse_pax, parse_pax_time};
use crate::tar_entries::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::ApplyOptions;
use confined::normalize;
use extensions::{trim_nul, Extensions, MAX_EXTENSION_HEADER};

/// The longest xattr name (Linux `XATTR_NAME_MAX`).
const MAX_XATTR_NAME: usize = 255;
/// The largest xattr value (Linux `XATTR_SIZE_MAX`).
const MAX_XATTR_VALUE: usize = 64 << 10;

/// Why unpacking stopped.
pub(crate) enum ApplyFailure {
    /// Reading the layer stream failed (the reader knows the typed cause).
    Read(io::Error),
    /// Anything else, already typed.
    Other(Error),
}

impl From<Error> for ApplyFailure {
    fn from(e: Error) -> Self {
        ApplyFailure::Other(e)
    }
}

/// Why one entry could not be applied; [`ApplyState::fail`] names the entry.
enum EntryFailure {
    /// Reading the layer stream failed.
    Read(io::Error),
    /// The entry is refused.
    Refused(Refusal),
    /// Anything else, already typed.
    Other(Error),
}

impl From<Error> for EntryFailure {
    fn from(e: Error) -> Self {
        EntryFailure::Other(e)
    }
}

impl From<Refusal> for EntryFailure {
    fn from(r: Refusal) -> Self {
        EntryFailure::Refused(r)
    }
}

/// Unpacks the tar read from `reader` onto `root` as `options` say; `layer` names the
/// layer in errors, and the tar may hold at most `tar_limit` bytes (an entry whose data would end past
/// them is refused at its header). Returns the reader (positioned after the tar's end
/// marker) and the outcome.
pub(crate) fn apply_tar<R: Read>(
    reader: R,
    root: &Path,
    layer: &str,
    tar_limit: u64,
    options: &ApplyOptions,
) -> (R, std::result::Result<(), ApplyFailure>) {
    let mut archive = tar::Archive::new(reader);
    let mut state = ApplyState {
        root: root.to_path_buf(),
        layer: layer.to_string(),
        tar_limit,
        rootless: options.rootless,
        created: HashSet::new(),
        dir_times: Vec::new(),
        restore: HashMap::new(),
        dir_modes: Vec::new(),
    };
    let outcome = state.unpack(&mut archive);
    (archive.into_inner(), outcome)
}

struct ApplyState {
    root: PathBuf,
    layer: String,
    /// The most bytes of tar the layer may hold.
    tar_limit: u64,
    /// [`ApplyOptions::rootless`].
    rootless: bool,
    /// Paths (relative, normalized) this layer created or updated.
    created: HashSet<Vec<u8>>,
    /// Directory mtimes to set at the end.
    dir_times: Vec<(PathBuf, i64, i64)>,
    /// The mtimes of existing directories this layer changed the content of, restored
    /// at the end unless the layer has an entry for the directory itself (a layer that
    /// does not mention a directory leaves its metadata alone, as umoci does).
    restore: HashMap<PathBuf, (i64, i64)>,
    /// Rootless: directory modes to set once the entries are in place (directories are
    /// kept writable by their owner meanwhile), in the order they were decided.
    dir_modes: Vec<(PathBuf, u32)>,
}

/// The metadata of one entry, PAX records applied.
struct EntryMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ApplyState {
    fn unpack<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
    ) -> std::result::Result<(), ApplyFailure> {
        // Raw mode: PAX and GNU long-name headers are read here, because the `tar`
        // crate splits PAX records at newlines, which breaks on xattr values that
        // contain one (records are length-prefixed and may hold any bytes).
        let entries = archive.entries().map_err(ApplyFailure::Read)?.raw(true);
        let mut ext = Extensions::default();
        for entry in entries {
            let mut entry = entry.map_err(ApplyFailure::Read)?;
            let ty = entry.header().entry_type();
            if let EntryType::XHeader
            | EntryType::XGlobalHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink = ty
            {
                let data = match self.read_extension(&mut entry) {
                    Ok(data) => data,
                    Err(f) => return Err(self.fail(f, &entry.path_bytes())),
                };
                match ty {
                    EntryType::XHeader => {
                        ext.pax = parse_pax(&data)
                            .ok_or_else(|| self.corrupt("malformed PAX extended header"))?
                    }
                    EntryType::GNULongName => ext.long_name = Some(trim_nul(data)),
                    EntryType::GNULongLink => ext.long_link = Some(trim_nul(data)),
                    _ => {}
                }
            } else {
                let this = std::mem::take(&mut ext);
                let name = this.name(&entry);
                if let Err(f) = self
                    .check_tar_limit(&entry)
                    .and_then(|()| self.apply_entry(&mut entry, &this, &name))
                {
                    return Err(self.fail(f, &name));
                }
            }
        }
        // Rootless: the directories' own modes, now that nothing more is written in them.
        for (path, mode) in &self.dir_modes {
            if Stat::lstat_opt(path)?.is_some_and(|s| s.is_dir()) {
                fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                    .map_err(|e| io_err(path, e))?;
            }
        }
        // Directory mtimes last: creating children would move them.
        let set_by_layer: HashSet<&PathBuf> = self.dir_times.iter().map(|(p, _, _)| p).collect();
        for (path, (sec, nsec)) in &self.restore {
            if !set_by_layer.contains(path) && Stat::lstat_opt(path)?.is_some_and(|s| s.is_dir()) {
                set_times(path, *sec, *nsec)?;
            }
        }
        for (path, sec, nsec) in self.dir_times.iter().rev() {
            set_times(path, *sec, *nsec)?;
        }
        Ok(())
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::CorruptLayer {
            digest: self.layer.clone(),
            reason: reason.into(),
        }
    }

    /// `failure` of the entry named `entry`, as the applier reports it.
    fn fail(&self, failure: EntryFailure, entry: &[u8]) -> ApplyFailure {
        match failure {
            EntryFailure::Read(e) => ApplyFailure::Read(e),
            EntryFailure::Other(e) => ApplyFailure::Other(e),
            EntryFailure::Refused(refusal) => ApplyFailure::Other(Error::RefusedEntry {
                layer: self.layer.clone(),
                entry: String::from_utf8_lossy(entry).into_owned(),
                refusal,
            }),
        }
    }

    /// Refuses an entry whose data would end past the tar's bound.
    fn check_tar_limit<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
    ) -> std::result::Result<(), EntryFailure> {
        let end = entry.raw_file_position().saturating_add(entry.size());
        if end > self.tar_limit {
            return Err(Refusal::PastTarLimit {
                end,
                limit: self.tar_limit,
            }
            .into());
        }
        Ok(())
    }

    /// The data of a PAX or GNU extension header, refused past
    /// [`MAX_EXTENSION_HEADER`] or the tar's bound before any of it is read.
    fn read_extension<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
    ) -> std::result::Result<Vec<u8>, EntryFailure> {
        let size = entry.size();
        if size > MAX_EXTENSION_HEADER {
            return Err(Refusal::ExtensionHeaderTooLarge {
                size,
                limit: MAX_EXTENSION_HEADER,
            }
            .into());
        }
        self.check_tar_limit(entry)?;
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(EntryFailure::Read)?;
        Ok(data)
    }

    /// Applies the entry named `raw` (its extension headers read into `ext`).
    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        ext: &Extensions,
        raw: &[u8],
    ) -> std::result::Result<(), EntryFailure> {
        let ty = entry.header().entry_type();
        let link = ext.link(entry);
        if let Some(size) = ext.get(b"size") {
            if std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                != Some(entry.size())
            {
                return Err(self
                    .corrupt(format!(
                        "entry {:?}: PAX size disagrees with the header",
                        String::from_utf8_lossy(raw)
                    ))
                    .into());
            }
        }
        let comps = normalize(raw)?;
        let meta = self.meta(entry, ext)?;

        let Some((base, parents)) = comps.split_last() else {
            // The root itself ("./"): only its metadata.
            if ty != EntryType::Directory {
                return Err(Refusal::Root.into());
            }
            let root = self.root.clone();
            self.set_meta(&root, &meta, true)?;
            self.dir_times.push((root, meta.mtime, meta.mtime_nsec));
            return Ok(());
        };
        let rel_parent = parents.join(&b'/');

        if let Some(rest) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if matches!(rest, b"" | b"." | b"..") {
                return Err(Refusal::InvalidWhiteout.into());
            }
            // A whiteout under a path that is not a directory (any more) has nothing
            // to remove (umoci writes such entries after replacing a directory).
            let Some(parent) = self.existing_dir(parents)? else {
                return Ok(());
            };
            self.remember(&parent)?;
            if *base == OPAQUE_MARKER.as_bytes() {
                for name in crate::file_metadata::read_dir_sorted(&parent)? {
                    let mut rel = rel_parent.clone();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(name.as_bytes());
                    if !self.created.contains(&rel) {
                        remove_all(&parent.join(name))?;
                    }
                }
            } else {
                remove_all(&parent.join(OsStr::from_bytes(rest)))?;
            }
            return Ok(());
        }

        let parent = self.safe_dir(parents, true)?;
        // A hardlink's target is resolved before anything at its name is removed.
        let link_target = match ty {
            EntryType::Link => {
                let target = link
                    .as_deref()
                    .ok_or_else(|| self.corrupt("hardlink without a target"))?;
                let resolved = self.hardlink_target(&comps, target).map_err(|f| match f {
                    EntryFailure::Refused(r) => Refusal::HardlinkTarget {
                        target: String::from_utf8_lossy(target).into_owned(),
                        refusal: Box::new(r),
                    }
                    .into(),
                    other => other,
                })?;
                Some(resolved)
            }
            _ => None,
        };
        self.remember(&parent)?;
        let path = parent.join(OsStr::from_bytes(base));
        let rel = comps.join(&b'/');
        let existing = Stat::lstat_opt(&path)?;
        if let Some(ex) = &existing {
            if !(ex.is_dir() && ty == EntryType::Directory) {
                remove_all(&path)?;
            }
        }
        match ty {
            EntryType::Directory => {
                if existing.as_ref().is_none_or(|e| !e.is_dir()) {
                    fs::create_dir(&path).map_err(|e| io_err(&path, e))?;
                } else {
                    // The entry's xattrs replace the directory's.
                    for (name, _) in crate::file_metadata::xattrs(&path)? {
                        if !meta.xattrs.iter().any(|(k, _)| *k == name.as_bytes()) {
                            xattr::remove(&path, &name).map_err(|e| io_err(&path, e))?;
                        }
                    }
                }
                self.set_meta(&path, &meta, true)?;
                self.dir_times.push((path, meta.mtime, meta.mtime_nsec));
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
                copy_data(entry, &mut f, &path)?;
                drop(f);
                self.set_meta(&path, &meta, true)?;
                set_times(&path, meta.mtime, meta.mtime_nsec)?;
            }
            EntryType::Symlink => {
                let target = link
                    .clone()
                    .ok_or_else(|| self.corrupt("symlink without a target"))?;
                symlink(OsStr::from_bytes(&target), &path).map_err(|e| io_err(&path, e))?;
                self.set_meta(&path, &meta, false)?;
                set_times(&path, meta.mtime, meta.mtime_nsec)?;
            }
            EntryType::Link => {
                if let Some(tpath) = &link_target {
                    fs::hard_link(tpath, &path).map_err(|e| io_err(&path, e))?;
                }
            }
            EntryType::Char | EntryType::Block if self.rootless => {
                // An unprivileged caller cannot make device nodes: skipped.
                tracing::debug!(
                    entry = %String::from_utf8_lossy(raw),
                    "rootless: device node skipped"
                );
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (kind, refusal) = match ty {
                    EntryType::Char => (nix::sys::stat::SFlag::S_IFCHR, Some(Refusal::CharDevice)),
                    EntryType::Block => {
                        (nix::sys::stat::SFlag::S_IFBLK, Some(Refusal::BlockDevice))
                    }
                    _ => (nix::sys::stat::SFlag::S_IFIFO, None),
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let made = nix::sys::stat::mknod(
                    &path,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                );
                match (made, refusal) {
                    (Ok(()), _) => {}
                    // No CAP_MKNOD (not root, or in a user namespace).
                    (Err(nix::errno::Errno::EPERM), Some(refusal)) => return Err(refusal.into()),
                    (Err(e), _) => return Err(io_err(&path, io::Error::from(e)).into()),
                }
                self.set_meta(&path, &meta, true)?;
                set_times(&path, meta.mtime, meta.mtime_nsec)?;
            }
            other => {
                return Err(self
                    .corrupt(format!(
                        "entry {:?} has unsupported type {other:?}",
                        String::from_utf8_lossy(raw)
                    ))
                    .into())
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    /// The entry's metadata with its PAX records applied.
    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        ext: &Extensions,
    ) -> std::result::Result<EntryMeta, EntryFailure> {
        let h = entry.header();
        let bad = |what: &str, e: io::Error| self.corrupt(format!("bad {what}: {e}"));
        let mut meta = EntryMeta {
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            uid: h.uid().map_err(|e| bad("uid", e))? as u32,
            gid: h.gid().map_err(|e| bad("gid", e))? as u32,
            mtime: h.mtime().map_err(|e| bad("mtime", e))? as i64,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        };
        for (key, value) in &ext.pax {
            let (key, value) = (&key[..], &value[..]);
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let lossy = || String::from_utf8_lossy(name).into_owned();
                if name.len() > MAX_XATTR_NAME {
                    return Err(Refusal::XattrNameTooLong {
                        name: lossy(),
                        limit: MAX_XATTR_NAME,
                    }
                    .into());
                }
                if value.len() > MAX_XATTR_VALUE {
                    return Err(Refusal::XattrValueTooLarge {
                        name: lossy(),
                        bytes: value.len(),
                        limit: MAX_XATTR_VALUE,
                    }
                    .into());
                }
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if key == b"mtime" {
                let (s, n) = parse_pax_time(value).ok_or_else(|| self.corrupt("bad PAX mtime"))?;
                meta.mtime = s;
                meta.mtime_nsec = n;
            } else if key == b"uid" || key == b"gid" {
                let v: u32 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.corrupt("bad PAX uid/gid"))?;
                if key == b"uid" {
                    meta.uid = v;
                } else {
                    meta.gid = v;
                }
            }
        }
        Ok(meta)
    }

    /// Owner, then mode (chown clears setuid), then xattrs. Rootless: no owner, only
    /// `user.` xattrs, and a directory's mode deferred (owner-writable meanwhile).
    fn set_meta(&mut self, path: &Path, meta: &EntryMeta, chmod: bool) -> Result<()> {
        if !self.rootless {
            lchown(path, Some(meta.uid), Some(meta.gid)).map_err(|e| io_err(path, e))?;
        }
        if chmod {
            let mut mode = meta.mode;
            if self.rootless && Stat::lstat(path)?.is_dir() {
                self.dir_modes.push((path.to_path_buf(), mode));
                mode |= 0o700;
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| io_err(path, e))?;
        }
        for (k, v) in &meta.xattrs {
            if self.rootless && !k.starts_with(b"user.") {
                continue;
            }
            xattr::set(path, OsStr::from_bytes(k), v).map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }

    /// Records the mtime of existing directory `dir` before its content changes;
    /// rootless, makes it writable by its owner until the layer is in place.
    fn remember(&mut self, dir: &Path) -> Result<()> {
        if !self.restore.contains_key(dir) {
            if let Some(st) = Stat::lstat_opt(dir)? {
                self.restore
                    .insert(dir.to_path_buf(), (st.mtime, st.mtime_nsec));
                if self.rootless && st.is_dir() && st.mode & 0o700 != 0o700 {
                    self.dir_modes.push((dir.to_path_buf(), st.mode & 0o7777));
                    fs::set_permissions(dir, fs::Permissions::from_mode(st.mode & 0o7777 | 0o700))
                        .map_err(|e| io_err(dir, e))?;
                }
            }
        }
        Ok(())
    }
}

/// Copies an entry's data into `f`, telling stream errors from file errors.
fn copy_data(
    entry: &mut impl Read,
    f: &mut fs::File,
    path: &Path,
) -> std::result::Result<(), EntryFailure> {
    use std::io::Write;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryFailure::Read(e)),
        };
        f.write_all(&buf[..n]).map_err(|e| io_err(path, e))?;
    }
}

/// Removes `path` and everything under it, never following symlinks.
fn remove_all(path: &Path) -> Result<()> {
    match Stat::lstat_opt(path)? {
        None => Ok(()),
        Some(st) if st.is_dir() => fs::remove_dir_all(path).map_err(|e| io_err(path, e)),
        Some(_) => fs::remove_file(path).map_err(|e| io_err(path, e)),
    }
}

/// Sets atime and mtime of `path` (not following symlinks).
fn set_times(path: &Path, sec: i64, nsec: i64) -> Result<()> {
    let ts = nix::sys::time::TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err(path, io::Error::from(e)))
}
