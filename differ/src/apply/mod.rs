//! Unpacks an OCI layer tar onto a directory (containerd `archive.Apply` semantics).
//!
//! Whiteouts (`.wh.<name>`) remove what lower layers had; an opaque marker
//! (`.wh..wh..opq`) removes every child of its directory that this layer did not
//! create. Entries are refused with [`Error::PathEscapes`] when they would land outside
//! the root: `..` components, absolute names, or a parent that is a symlink. Directory
//! mtimes are set once all entries are in place. [`ApplyOptions::rootless`] maps
//! owners to the caller (see its documentation).

mod confined;
#[cfg(test)]
mod rootless_tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};

#[cfg(test)]
use strata_oci::{Digest, Digester};
use tar::EntryType;

use crate::error::{io_err, Error, Result};
use crate::file_metadata::Stat;
use crate::pax::{parse_pax, parse_pax_time};
use crate::tar_entries::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::ApplyOptions;
use confined::normalize;

/// Hashes everything read through it.
#[cfg(test)]
struct HashingReader<R> {
    inner: R,
    digester: Digester,
}

#[cfg(test)]
impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

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

/// Unpacks the tar read from `reader` onto `root` as `options` say; `layer` names the
/// layer in errors. Returns the reader (positioned after the tar's end marker) and the
/// outcome.
pub(crate) fn apply_tar<R: Read>(
    reader: R,
    root: &Path,
    layer: &str,
    options: &ApplyOptions,
) -> (R, std::result::Result<(), ApplyFailure>) {
    let mut archive = tar::Archive::new(reader);
    let mut state = ApplyState {
        root: root.to_path_buf(),
        layer: layer.to_string(),
        rootless: options.rootless,
        created: HashSet::new(),
        dir_times: Vec::new(),
        restore: HashMap::new(),
        dir_modes: Vec::new(),
    };
    let outcome = state.unpack(&mut archive);
    (archive.into_inner(), outcome)
}

/// [`apply_tar`] for a plain stream: read errors are [`Error::CorruptLayer`]; returns
/// the sha256 of everything read (the diffID).
#[cfg(test)]
pub(crate) fn apply_plain<R: Read>(reader: R, root: &Path, layer: &str) -> Result<Digest> {
    let (mut hashing, outcome) = apply_tar(
        HashingReader {
            inner: reader,
            digester: Digester::new(),
        },
        root,
        layer,
        &ApplyOptions::default(),
    );
    let corrupt = |e: io::Error| Error::CorruptLayer {
        digest: layer.to_string(),
        reason: e.to_string(),
    };
    match outcome {
        Ok(()) => {}
        Err(ApplyFailure::Read(e)) => return Err(corrupt(e)),
        Err(ApplyFailure::Other(e)) => return Err(e),
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(corrupt)?;
    Ok(hashing.digester.finish())
}

struct ApplyState {
    root: PathBuf,
    layer: String,
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
            match entry.header().entry_type() {
                EntryType::XHeader => {
                    let data = self.read_small(&mut entry)?;
                    ext.pax = parse_pax(&data)
                        .ok_or_else(|| self.corrupt("malformed PAX extended header"))?;
                }
                EntryType::XGlobalHeader => {
                    self.read_small(&mut entry)?;
                }
                EntryType::GNULongName => {
                    ext.long_name = Some(trim_nul(self.read_small(&mut entry)?))
                }
                EntryType::GNULongLink => {
                    ext.long_link = Some(trim_nul(self.read_small(&mut entry)?))
                }
                _ => {
                    let this = std::mem::take(&mut ext);
                    self.apply_entry(&mut entry, &this)?;
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

    /// The data of a PAX or GNU extension header (refused beyond 16 MiB).
    fn read_small<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
    ) -> std::result::Result<Vec<u8>, ApplyFailure> {
        if entry.header().entry_size().unwrap_or(u64::MAX) > 16 << 20 {
            return Err(self.corrupt("extension header larger than 16 MiB").into());
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(ApplyFailure::Read)?;
        Ok(data)
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        ext: &Extensions,
    ) -> std::result::Result<(), ApplyFailure> {
        let ty = entry.header().entry_type();
        let raw = match (ext.get(b"path"), &ext.long_name) {
            (Some(p), _) => p.to_vec(),
            (None, Some(p)) => p.clone(),
            (None, None) => entry.path_bytes().into_owned(),
        };
        let link = match (ext.get(b"linkpath"), &ext.long_link) {
            (Some(p), _) => Some(p.to_vec()),
            (None, Some(p)) => Some(p.clone()),
            (None, None) => entry.link_name_bytes().map(|l| l.into_owned()),
        };
        if let Some(size) = ext.get(b"size") {
            if std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                != Some(entry.size())
            {
                return Err(self
                    .corrupt(format!(
                        "entry {:?}: PAX size disagrees with the header",
                        String::from_utf8_lossy(&raw)
                    ))
                    .into());
            }
        }
        let comps = normalize(&raw)?;
        let meta = self.meta(entry, ext)?;

        let Some((base, parents)) = comps.split_last() else {
            // The root itself ("./"): only its metadata.
            if ty == EntryType::Directory {
                let root = self.root.clone();
                self.set_meta(&root, &meta, true)?;
                self.dir_times.push((root, meta.mtime, meta.mtime_nsec));
            }
            return Ok(());
        };
        let rel_parent = parents.join(&b'/');

        if let Some(rest) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            // A whiteout under a path that is not a directory (any more) has nothing
            // to remove (umoci writes such entries after replacing a directory).
            let Some(parent) = self.existing_dir(parents, &raw)? else {
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
            } else if rest.is_empty() {
                return Err(ApplyFailure::Other(self.corrupt(format!(
                    "whiteout {:?} names nothing",
                    String::from_utf8_lossy(&raw)
                ))));
            } else {
                remove_all(&parent.join(OsStr::from_bytes(rest)))?;
            }
            return Ok(());
        }

        let parent = self.safe_dir(parents, &raw, true)?;
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
                let target = link
                    .clone()
                    .ok_or_else(|| self.corrupt("hardlink without a target"))?;
                let tcomps = normalize(&target)?;
                let Some((tbase, tparents)) = tcomps.split_last() else {
                    return Err(ApplyFailure::Other(Error::PathEscapes {
                        entry: String::from_utf8_lossy(&raw).into_owned(),
                        reason: "hardlink to the root".into(),
                    }));
                };
                let tdir = self.safe_dir(tparents, &raw, false)?;
                let tpath = tdir.join(OsStr::from_bytes(tbase));
                fs::hard_link(&tpath, &path).map_err(|e| io_err(&path, e))?;
            }
            EntryType::Char | EntryType::Block if self.rootless => {
                // An unprivileged caller cannot make device nodes: skipped.
                tracing::debug!(
                    entry = %String::from_utf8_lossy(&raw),
                    "rootless: device node skipped"
                );
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind = match ty {
                    EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                    EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                nix::sys::stat::mknod(
                    &path,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| io_err(&path, io::Error::from(e)))?;
                self.set_meta(&path, &meta, true)?;
                set_times(&path, meta.mtime, meta.mtime_nsec)?;
            }
            other => {
                return Err(ApplyFailure::Other(self.corrupt(format!(
                    "entry {:?} has unsupported type {other:?}",
                    String::from_utf8_lossy(&raw)
                ))))
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
    ) -> std::result::Result<EntryMeta, ApplyFailure> {
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
) -> std::result::Result<(), ApplyFailure> {
    use std::io::Write;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ApplyFailure::Read(e)),
        };
        f.write_all(&buf[..n]).map_err(|e| io_err(path, e))?;
    }
}

/// What extension headers said about the next entry.
#[derive(Default)]
struct Extensions {
    /// PAX records, in order.
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// A GNU long name.
    long_name: Option<Vec<u8>>,
    /// A GNU long link target.
    long_link: Option<Vec<u8>>,
}

impl Extensions {
    /// The last PAX record named `key`.
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }
}

/// A GNU long name without its trailing NULs.
fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one entry whose raw name (and link name) are written as given.
    fn raw_tar(name: &[u8], ty: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(ty);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
        out
    }

    fn escapes(tar: &[u8], root: &Path) -> bool {
        matches!(
            apply_plain(tar, root, "sha256:test"),
            Err(Error::PathEscapes { .. })
        )
    }

    #[test]
    fn entries_escaping_the_root_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        assert!(escapes(
            &raw_tar(b"../evil", EntryType::Regular, b"", b"x"),
            &root
        ));
        assert!(escapes(
            &raw_tar(b"/evil", EntryType::Regular, b"", b"x"),
            &root
        ));
        assert!(escapes(
            &raw_tar(b"a/../../evil", EntryType::Regular, b"", b"x"),
            &root
        ));
        // A hardlink pointing outside.
        assert!(escapes(
            &raw_tar(b"l", EntryType::Link, b"../outside", b""),
            &root
        ));
        // Writing through a symlinked parent.
        symlink(outer.path(), root.join("up")).unwrap();
        assert!(escapes(
            &raw_tar(b"up/evil", EntryType::Regular, b"", b"x"),
            &root
        ));
        assert!(escapes(
            &raw_tar(b"up/.wh.root", EntryType::Regular, b"", b""),
            &root
        ));
        assert!(!outer.path().join("evil").exists());
        assert!(root.exists());
    }

    #[test]
    fn truncated_and_garbage_streams_are_corrupt_layers() {
        let root = tempfile::tempdir().unwrap();
        let tar = raw_tar(b"f", EntryType::Regular, b"", &[1u8; 2000]);
        for bad in [&tar[..700], &[0x42u8; 1024][..]] {
            match apply_plain(bad, root.path(), "sha256:test") {
                Err(Error::CorruptLayer { digest, .. }) => assert_eq!(digest, "sha256:test"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn whiteouts_and_opaque_markers_remove_lower_content() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("d/sub")).unwrap();
        fs::write(root.path().join("d/sub/x"), b"x").unwrap();
        fs::write(root.path().join("gone"), b"g").unwrap();
        let mut tar = raw_tar(b".wh.gone", EntryType::Regular, b"", b"");
        tar.truncate(512);
        let mut opq = raw_tar(b"d/.wh..wh..opq", EntryType::Regular, b"", b"");
        opq.truncate(512);
        tar.extend_from_slice(&opq);
        tar.extend_from_slice(&raw_tar(b"d/new", EntryType::Regular, b"", b"n"));
        let digest = apply_plain(&tar[..], root.path(), "sha256:test").unwrap();
        assert_eq!(digest, Digest::sha256_of(&tar));
        assert!(!root.path().join("gone").exists());
        assert!(!root.path().join("d/sub").exists());
        assert_eq!(fs::read(root.path().join("d/new")).unwrap(), b"n");
    }
}
