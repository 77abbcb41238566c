//! Writes a [`ChangeSet`] as an OCI layer tar (containerd's `ChangeWriter` semantics).
//!
//! Headers are built with the `tar` crate's [`tar::Header`]; the stream itself (PAX
//! records, data, padding) is written here because we need control the `tar` crate's
//! `Builder` does not give: PAX (not GNU) records for long and non-UTF-8 names and link
//! targets, large ids and sizes, sub-second mtimes and `SCHILY.xattr.*`; an exact data
//! length check that turns a file changing under us into [`Error::TreeChanged`]; and
//! mtime clamping for `source_date_epoch`.
//!
//! Normalization, as containerd: numeric uid/gid with empty user and group names, no
//! atime/ctime, permission bits (incl. setuid/setgid/sticky) kept, sockets skipped,
//! never sparse, symlinks never followed, parent directories before children.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::changes::{Change, ChangeSet};
use crate::error::{io_err, Error, Result};
use crate::file_metadata::{xattrs, Stat};
use crate::pax::{format_pax_time, pax_header_name, pax_record};

/// The prefix of whiteout names.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque marker.
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The eStargz landmark ending the files to prefetch (`estargz.PrefetchLandmark`).
pub(crate) const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// The eStargz landmark saying not to prefetch (`estargz.NoPrefetchLandmark`).
pub(crate) const NO_PREFETCH_LANDMARK: &str = ".no.prefetch.landmark";
/// A landmark's one byte (`estargz`'s `landmarkContents`).
const LANDMARK_CONTENTS: u8 = 0xf;

const BLOCK: usize = 512;
/// The largest value a 12-byte octal field holds.
const MAX_OCTAL_12: u64 = 0o77777777777;
/// The largest value an 8-byte octal field holds.
const MAX_OCTAL_8: u64 = 0o7777777;

/// Writes layer entries to `W`.
pub(crate) struct LayerTarWriter<W: Write> {
    out: W,
    source_date_epoch: Option<i64>,
    /// Directories already in the layer.
    dirs: HashSet<PathBuf>,
    /// `(dev, ino)` of hardlinked files already in the layer → their layer name.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The `(uid, gid)` every entry read from a tree gets instead of its own.
    owner: Option<(u32, u32)>,
    buf: Vec<u8>,
}

impl<W: Write> LayerTarWriter<W> {
    /// A writer onto `out`, clamping mtimes to `source_date_epoch` when given.
    pub(crate) fn new(out: W, source_date_epoch: Option<i64>) -> Self {
        LayerTarWriter {
            out,
            source_date_epoch,
            dirs: HashSet::new(),
            links: HashMap::new(),
            owner: None,
            buf: vec![0u8; 128 * 1024],
        }
    }

    /// Gives every entry read from a tree the owner `uid:gid` instead of its own (a
    /// copy layer's `--chown`).
    pub(crate) fn owned_by(mut self, owner: (u32, u32)) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Writes every change of `set`, reading entries from `source_root`, then the
    /// end-of-archive marker. Returns the sink.
    pub(crate) fn write_all(mut self, source_root: &Path, set: &ChangeSet) -> Result<W> {
        for change in set.iter() {
            self.write_change(source_root, change)?;
        }
        self.finish()
    }

    /// [`LayerTarWriter::write_all`] for an eStargz layer with prefetch landmarks, as
    /// stargz-snapshotter's `estargz.Build` (`WithPrioritizedFiles`) and `ctr-remote
    /// optimize` place them: the entries of `prioritized` that are in `set` first, in
    /// the list's order, each after its parent directories, then `.prefetch.landmark`;
    /// when none of them is in the layer (or the list is empty), `.no.prefetch.landmark`
    /// first. Then the rest of `set` in layer order. Names are relative to the layer
    /// root (a leading `/` or `./` is ignored); landmarks already in the tree are left
    /// out, as `estargz.Build` drops them.
    pub(crate) fn write_all_prioritized(
        mut self,
        source_root: &Path,
        set: &ChangeSet,
        prioritized: &[String],
    ) -> Result<W> {
        let entries: HashSet<&Path> = set
            .iter()
            .filter_map(|c| match c {
                Change::Entry(p) => Some(p),
                _ => None,
            })
            .collect();
        let mut first: HashSet<&Path> = HashSet::new();
        for name in prioritized {
            let Some(rel) = entries.get(layer_relative(name)).copied() else {
                continue;
            };
            if is_landmark(rel) || !first.insert(rel) {
                continue;
            }
            check_reserved(rel)?;
            self.ensure_parents(source_root, rel)?;
            if !self.dirs.contains(rel) {
                self.write_entry(source_root, rel)?;
            }
        }
        let landmark = match first.is_empty() {
            true => NO_PREFETCH_LANDMARK,
            false => PREFETCH_LANDMARK,
        };
        self.write_landmark(landmark)?;
        for change in set.iter() {
            if let Change::Entry(p) = change {
                if first.contains(p) || is_landmark(p) {
                    continue;
                }
            }
            self.write_change(source_root, change)?;
        }
        self.finish()
    }

    /// A landmark: a regular file at the root holding the byte 0x0f, mode 0, owner 0,
    /// mtime 0 (what `estargz.Build` writes).
    fn write_landmark(&mut self, name: &str) -> Result<()> {
        let st = Stat {
            mode: libc::S_IFREG,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 1,
            mtime: 0,
            mtime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
        };
        let header = name.as_bytes();
        self.write_header(header, None, EntryType::Regular, &st, 1, &BTreeMap::new())?;
        self.out.write_all(&[LANDMARK_CONTENTS]).map_err(sink_err)?;
        self.pad(1)
    }

    /// Writes the end-of-archive marker and returns the sink.
    pub(crate) fn finish(mut self) -> Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(sink_err)?;
        self.out.flush().map_err(sink_err)?;
        Ok(self.out)
    }

    fn write_change(&mut self, root: &Path, change: Change<'_>) -> Result<()> {
        let rel = change.path();
        check_reserved(rel)?;
        match change {
            Change::Entry(p) => {
                self.ensure_parents(root, p)?;
                if !self.dirs.contains(p) {
                    self.write_entry(root, p)?;
                }
            }
            Change::Whiteout(p) => {
                self.ensure_parents(root, p)?;
                let name = p.file_name().unwrap_or_default();
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(name);
                self.write_marker(&p.with_file_name(wh))?;
            }
            Change::Opaque(dir) => {
                self.ensure_parents(root, &dir.join("x"))?;
                self.write_marker(&dir.join(OPAQUE_MARKER))?;
            }
        }
        Ok(())
    }

    /// Writes the directories above `rel` that are not in the layer yet.
    fn ensure_parents(&mut self, root: &Path, rel: &Path) -> Result<()> {
        let mut ancestors: Vec<&Path> = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect();
        ancestors.reverse();
        for a in ancestors {
            if !self.dirs.contains(a) {
                self.write_entry(root, a)?;
            }
        }
        Ok(())
    }

    /// A whiteout or opaque marker: an empty regular file, mode 0644, mtime 0.
    fn write_marker(&mut self, rel: &Path) -> Result<()> {
        let st = Stat {
            mode: libc::S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
        };
        let name = rel.as_os_str().as_bytes().to_vec();
        self.write_header(&name, None, EntryType::Regular, &st, 0, &BTreeMap::new())
    }

    /// Writes the entry at `root/rel`.
    fn write_entry(&mut self, root: &Path, rel: &Path) -> Result<()> {
        self.write_entry_as(&root.join(rel), rel)
    }

    /// Writes the entry at `path` (never following a final symlink) under the layer
    /// name `rel`; its parents must be in the layer already. A hardlinked file whose
    /// inode is in the layer already becomes a link to the first name; a socket is
    /// skipped.
    pub(crate) fn write_entry_as(&mut self, path: &Path, rel: &Path) -> Result<()> {
        let path = path.to_path_buf();
        let mut st = Stat::lstat(&path)?;
        if let Some((uid, gid)) = self.owner {
            st.uid = uid;
            st.gid = gid;
        }
        let mut name = rel.as_os_str().as_bytes().to_vec();
        let kind = st.kind();
        if kind == libc::S_IFSOCK {
            return Ok(());
        }
        let xa = xattrs(&path)?;
        match kind {
            libc::S_IFDIR => {
                name.push(b'/');
                self.write_header(&name, None, EntryType::Directory, &st, 0, &xa)?;
                self.dirs.insert(rel.to_path_buf());
            }
            libc::S_IFLNK => {
                let target = fs::read_link(&path).map_err(|e| io_err(&path, e))?;
                let target = target.as_os_str().as_bytes().to_vec();
                self.write_header(&name, Some(&target), EntryType::Symlink, &st, 0, &xa)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let ty = match kind {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                self.write_header(&name, None, ty, &st, 0, &xa)?;
            }
            libc::S_IFREG => {
                if st.nlink > 1 {
                    if let Some(first) = self.links.get(&(st.dev, st.ino)).cloned() {
                        return self.write_header(
                            &name,
                            Some(&first),
                            EntryType::Link,
                            &st,
                            0,
                            &xa,
                        );
                    }
                    self.links.insert((st.dev, st.ino), name.clone());
                }
                self.write_file(&path, &name, &st, &xa)?;
            }
            _ => {
                return Err(Error::Io {
                    path,
                    source: io::Error::new(io::ErrorKind::Unsupported, "unknown file type"),
                })
            }
        }
        Ok(())
    }

    /// A regular file with its data; the size read must be exactly the size stat'ed.
    fn write_file(
        &mut self,
        path: &Path,
        name: &[u8],
        st: &Stat,
        xa: &BTreeMap<OsString, Vec<u8>>,
    ) -> Result<()> {
        let mut file = fs::File::open(path).map_err(|e| io_err(path, e))?;
        let opened = Stat::from_metadata(&file.metadata().map_err(|e| io_err(path, e))?);
        if opened.ino != st.ino || opened.size != st.size {
            return Err(changed(path, "replaced or resized before it was read"));
        }
        self.write_header(name, None, EntryType::Regular, st, st.size, xa)?;
        let mut remaining = st.size;
        while remaining > 0 {
            let want = remaining.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(changed(
                        path,
                        &format!("shrank: {} of {} bytes missing", remaining, st.size),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(path, e)),
            };
            self.out.write_all(&self.buf[..n]).map_err(sink_err)?;
            remaining -= n as u64;
        }
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => return Err(changed(path, &format!("grew past {} bytes", st.size))),
            Err(e) => return Err(io_err(path, e)),
        }
        let after = Stat::from_metadata(&file.metadata().map_err(|e| io_err(path, e))?);
        if after.mtime != st.mtime || after.mtime_nsec != st.mtime_nsec {
            return Err(changed(path, "modified while it was read"));
        }
        self.pad(st.size)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; BLOCK][..BLOCK - rem])
                .map_err(sink_err)?;
        }
        Ok(())
    }

    /// Writes a header (preceded by a PAX header when needed) for an entry of `size`
    /// data bytes.
    fn write_header(
        &mut self,
        name: &[u8],
        link: Option<&[u8]>,
        ty: EntryType,
        st: &Stat,
        size: u64,
        xa: &BTreeMap<OsString, Vec<u8>>,
    ) -> Result<()> {
        let (mut mtime, mut nsec) = (st.mtime, st.mtime_nsec);
        if let Some(epoch) = self.source_date_epoch {
            if mtime > epoch || (mtime == epoch && nsec > 0) {
                mtime = epoch;
                nsec = 0;
            }
        }
        let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if name.len() > 100 || !name.is_ascii() {
            pax.insert(b"path".to_vec(), name.to_vec());
        }
        if let Some(l) = link {
            if l.len() > 100 || !l.is_ascii() {
                pax.insert(b"linkpath".to_vec(), l.to_vec());
            }
        }
        if u64::from(st.uid) > MAX_OCTAL_8 {
            pax.insert(b"uid".to_vec(), st.uid.to_string().into_bytes());
        }
        if u64::from(st.gid) > MAX_OCTAL_8 {
            pax.insert(b"gid".to_vec(), st.gid.to_string().into_bytes());
        }
        if size > MAX_OCTAL_12 {
            pax.insert(b"size".to_vec(), size.to_string().into_bytes());
        }
        if nsec != 0 || mtime < 0 || mtime as u64 > MAX_OCTAL_12 {
            pax.insert(b"mtime".to_vec(), format_pax_time(mtime, nsec).into_bytes());
        }
        if !pax.is_empty() || !xa.is_empty() {
            // Standard keys first, xattrs last (each sorted): readers that split
            // records at newlines (the `tar` crate) still get names and sizes right
            // when an xattr value holds a newline.
            let mut records = Vec::new();
            for (k, v) in &pax {
                records.extend_from_slice(&pax_record(k, v));
            }
            for (k, v) in xa {
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend_from_slice(k.as_bytes());
                records.extend_from_slice(&pax_record(&key, v));
            }
            let mut h = Header::new_ustar();
            set_bytes(&mut h.as_ustar_mut().unwrap().name, &pax_header_name(name));
            h.set_entry_type(EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(records.len() as u64);
            h.set_cksum();
            self.out.write_all(h.as_bytes()).map_err(sink_err)?;
            self.out.write_all(&records).map_err(sink_err)?;
            self.pad(records.len() as u64)?;
        }

        let mut h = Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("a ustar header");
            set_bytes(&mut u.name, name);
            if let Some(l) = link {
                set_bytes(&mut u.linkname, l);
            }
        }
        h.set_entry_type(ty);
        h.set_mode(st.mode & 0o7777);
        h.set_uid(u64::from(st.uid));
        h.set_gid(u64::from(st.gid));
        h.set_size(size); // base-256 beyond the octal range, as GNU and Go write it
        h.set_mtime(mtime.clamp(0, MAX_OCTAL_12 as i64) as u64);
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let (major, minor) = (libc::major(st.rdev), libc::minor(st.rdev));
            h.set_device_major(major).map_err(sink_err)?;
            h.set_device_minor(minor).map_err(sink_err)?;
        } else {
            h.set_device_major(0).map_err(sink_err)?;
            h.set_device_minor(0).map_err(sink_err)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(sink_err)
    }
}

/// Copies `src` into a fixed field, truncating (the full value is in a PAX record).
/// `name` as a path relative to the layer root (`cleanEntryName`: leading `/` and `./`
/// dropped, as trailing `/`).
fn layer_relative(name: &str) -> &Path {
    let mut rel = name.trim_end_matches('/');
    loop {
        let before = rel;
        rel = rel.trim_start_matches('/');
        rel = rel.strip_prefix("./").unwrap_or(rel);
        if rel == before {
            break;
        }
    }
    Path::new(if rel == "." { "" } else { rel })
}

/// A landmark's name at the layer root.
fn is_landmark(rel: &Path) -> bool {
    rel == Path::new(PREFETCH_LANDMARK) || rel == Path::new(NO_PREFETCH_LANDMARK)
}

fn set_bytes(field: &mut [u8], src: &[u8]) {
    let n = src.len().min(field.len());
    field[..n].copy_from_slice(&src[..n]);
    for b in &mut field[n..] {
        *b = 0;
    }
}

/// Whether a file name looks like a whiteout or opaque marker (`.wh.` prefix).
pub(crate) fn is_reserved_name(name: &std::ffi::OsStr) -> bool {
    name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// Refuses a layer path any of whose names looks like a whiteout.
fn check_reserved(rel: &Path) -> Result<()> {
    if rel.components().any(|c| is_reserved_name(c.as_os_str())) {
        return Err(Error::ReservedName {
            path: rel.to_path_buf(),
        });
    }
    Ok(())
}

fn changed(path: &Path, reason: &str) -> Error {
    Error::TreeChanged {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// An error of the sink the tar is written to.
fn sink_err(e: io::Error) -> Error {
    Error::Io {
        path: PathBuf::from("<layer stream>"),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prioritized_names_are_taken_from_the_layer_root() {
        for (name, rel) in [
            ("/bin/sh", "bin/sh"),
            ("./bin/sh", "bin/sh"),
            ("bin/sh", "bin/sh"),
            ("//./etc/", "etc"),
            ("/", ""),
            ("./", ""),
        ] {
            assert_eq!(layer_relative(name), Path::new(rel), "{name}");
        }
        assert!(is_landmark(Path::new(".prefetch.landmark")));
        assert!(!is_landmark(Path::new("etc/.prefetch.landmark")));
    }

    #[test]
    fn a_file_that_shrinks_after_stat_is_tree_changed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, vec![7u8; 10_000]).unwrap();
        let st = Stat::lstat(&p).unwrap();
        fs::write(&p, vec![7u8; 10]).unwrap();
        let mut w = LayerTarWriter::new(Vec::new(), None);
        let err = w.write_file(&p, b"f", &st, &BTreeMap::new()).unwrap_err();
        match err {
            Error::TreeChanged { path, .. } => assert_eq!(path, p),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_vanished_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"data").unwrap();
        let set = crate::changes::double_walk(None, dir.path(), Default::default()).unwrap();
        fs::remove_file(dir.path().join("f")).unwrap();
        let err = LayerTarWriter::new(Vec::new(), None)
            .write_all(dir.path(), &set)
            .unwrap_err();
        match err {
            Error::Io { path, .. } => assert_eq!(path, dir.path().join("f")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn whiteout_names_in_a_tree_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/.wh.x"), b"").unwrap();
        let set = crate::changes::double_walk(None, dir.path(), Default::default()).unwrap();
        let err = LayerTarWriter::new(Vec::new(), None)
            .write_all(dir.path(), &set)
            .unwrap_err();
        assert!(matches!(err, Error::ReservedName { ref path } if path == Path::new("d/.wh.x")));
    }
}
