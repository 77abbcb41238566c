//! Change detection between two trees: containerd's `fs.Changes` double walk, and the
//! overlay fast path that reads only an overlay's upperdir.
//!
//! Both produce the same [`ChangeSet`] for the same change: a list of paths to emit
//! from the upper tree, whiteouts for names that disappeared and opaque markers for
//! directories whose whole lower content was removed. The tar writer turns the set into
//! entries (adding parent directories as containerd's change writer does).
//!
//! Rules, shared by both paths so their layers are byte-identical:
//! - an entry present in both trees is emitted when
//!   [`same_file`](crate::file_metadata::same_file) says they differ
//!   (type, permission bits incl. setuid/setgid/sticky, owner, rdev, size, mtime with
//!   nanoseconds, symlink target, xattrs, and content when the mtimes carry no
//!   sub-second part and the sizes match — or, with [`ContentCheck::Exact`] (double
//!   walk only), whenever everything else matches and the two are not the same inode);
//! - an entry present only in upper is emitted with its whole subtree;
//! - a name present only in lower becomes a whiteout (one per removed subtree);
//! - a non-root directory present in both whose every lower child is gone gets one
//!   opaque marker instead of a whiteout per child (the directory was emptied or
//!   removed and recreated);
//! - every member (in upper) of a hardlink group any of whose members is emitted is
//!   emitted too, so the layer reproduces the group; the first one in the layer
//!   carries the data.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::file_metadata::{is_unsupported, read_dir_sorted, same_file, ContentCheck, Stat};

/// One item of a layer, relative to the tree root (borrowed from a [`ChangeSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// Emit the entry at this path from the upper tree.
    Entry(&'a Path),
    /// Emit a whiteout for this (removed) path.
    Whiteout(&'a Path),
    /// Emit an opaque marker in this directory.
    Opaque(&'a Path),
}

impl<'a> Change<'a> {
    /// The path the item is about.
    pub(crate) fn path(&self) -> &'a Path {
        match *self {
            Change::Entry(p) | Change::Whiteout(p) | Change::Opaque(p) => p,
        }
    }
}

/// What a stored item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Entry,
    Whiteout,
    Opaque,
}

/// A stored item: its kind and where its path lies in [`ChangeSet::paths`].
#[derive(Clone, Copy, Debug)]
struct Item {
    start: u64,
    len: u32,
    kind: Kind,
}

/// What changed from a lower tree to an upper tree, in layer order.
///
/// Stored compactly, because a layer may have millions of items: every path in one
/// byte buffer, 16 bytes of bookkeeping per item (a million-file layer takes ≈40 MB
/// instead of ≈90 MB as boxed paths, and one allocation instead of a million).
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    items: Vec<Item>,
    paths: Vec<u8>,
}

impl ChangeSet {
    fn push(&mut self, kind: Kind, path: &Path) -> Result<()> {
        let bytes = path.as_os_str().as_bytes();
        let len = u32::try_from(bytes.len())
            .map_err(|_| io_err(path, io::Error::other("path longer than 4 GiB")))?;
        self.items.push(Item {
            start: self.paths.len() as u64,
            len,
            kind,
        });
        self.paths.extend_from_slice(bytes);
        Ok(())
    }

    fn path_of<'p>(paths: &'p [u8], item: &Item) -> &'p Path {
        let start = item.start as usize;
        Path::new(OsStr::from_bytes(&paths[start..start + item.len as usize]))
    }

    fn change(&self, item: &Item) -> Change<'_> {
        let path = Self::path_of(&self.paths, item);
        match item.kind {
            Kind::Entry => Change::Entry(path),
            Kind::Whiteout => Change::Whiteout(path),
            Kind::Opaque => Change::Opaque(path),
        }
    }

    /// The items, in layer order once the set is finished.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Change<'_>> {
        self.items.iter().map(|item| self.change(item))
    }

    /// How many items.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Sorts into layer order: depth first, names in byte order, an opaque marker right
    /// after its directory and before the directory's children (as if its path had
    /// one more, empty, component). Compares in place, without allocating.
    fn sort(&mut self) {
        fn key<'p>(paths: &'p [u8], item: &Item) -> impl Iterator<Item = &'p [u8]> {
            ChangeSet::path_of(paths, item)
                .components()
                .map(|c| c.as_os_str().as_bytes())
                .chain((item.kind == Kind::Opaque).then_some(&b""[..]))
        }
        let paths = &self.paths;
        // The walks push in nearly this order already, so the sort is close to linear.
        self.items.sort_by(|a, b| key(paths, a).cmp(key(paths, b)));
    }
}

/// Collects changes and the hardlink groups of the upper tree while walking.
#[derive(Default)]
struct Collector {
    set: ChangeSet,
    /// `(dev, ino)` → every path of a hardlinked regular file seen in upper.
    link_groups: BTreeMap<(u64, u64), Vec<PathBuf>>,
    /// How regular files with the same metadata are compared.
    check: ContentCheck,
}

impl Collector {
    fn saw_upper(&mut self, rel: &Path, st: &Stat) {
        if st.is_hardlinked() {
            self.link_groups
                .entry((st.dev, st.ino))
                .or_default()
                .push(rel.to_path_buf());
        }
    }

    /// Completes hardlink groups, sorts into layer order.
    fn finish(mut self) -> Result<ChangeSet> {
        // A hardlinked file emitted means its whole group is (the links must resolve
        // within the layer). Only group members are looked up, so memory stays
        // proportional to the hardlinked paths, not to the layer.
        let grouped: BTreeSet<&Path> = self
            .link_groups
            .values()
            .filter(|members| members.len() >= 2)
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        let emitted: BTreeSet<&Path> = self
            .set
            .iter()
            .filter_map(|c| match c {
                Change::Entry(p) if grouped.contains(p) => Some(p),
                _ => None,
            })
            .collect();
        let mut extra = BTreeSet::new();
        for members in self.link_groups.values() {
            if members.len() >= 2 && members.iter().any(|m| emitted.contains(m.as_path())) {
                extra.extend(members.iter().filter(|m| !emitted.contains(m.as_path())));
            }
        }
        let extra: Vec<PathBuf> = extra.into_iter().cloned().collect();
        for path in &extra {
            self.set.push(Kind::Entry, path)?;
        }
        self.set.sort();
        Ok(self.set)
    }

    /// Emits `rel` and everything under it (all of it is new).
    fn add_subtree(&mut self, upper_root: &Path, rel: &Path, st: &Stat) -> Result<()> {
        self.saw_upper(rel, st);
        self.set.push(Kind::Entry, rel)?;
        if st.is_dir() {
            let dir = upper_root.join(rel);
            for name in read_dir_sorted(&dir)? {
                let child = rel.join(&name);
                let cst = Stat::lstat(&upper_root.join(&child))?;
                self.add_subtree(upper_root, &child, &cst)?;
            }
        }
        Ok(())
    }

    /// The double walk of directory `rel`, present as a directory in both trees.
    fn double_walk(&mut self, lower_root: &Path, upper_root: &Path, rel: &Path) -> Result<()> {
        let lnames = read_dir_sorted(&lower_root.join(rel))?;
        let unames = read_dir_sorted(&upper_root.join(rel))?;
        let mut removed = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < lnames.len() || j < unames.len() {
            let order = match (lnames.get(i), unames.get(j)) {
                (Some(l), Some(u)) => l.as_bytes().cmp(u.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    removed.push(rel.join(&lnames[i]));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let child = rel.join(&unames[j]);
                    let st = Stat::lstat(&upper_root.join(&child))?;
                    self.add_subtree(upper_root, &child, &st)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let child = rel.join(&unames[j]);
                    self.compare_both(lower_root, upper_root, &child)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        self.push_removals(rel, lnames.len(), removed)?;
        Ok(())
    }

    /// Whiteouts for `removed`, or one opaque marker when every lower child of `rel`
    /// (which has `lower_children` of them) is gone.
    fn push_removals(
        &mut self,
        rel: &Path,
        lower_children: usize,
        removed: Vec<PathBuf>,
    ) -> Result<()> {
        if removed.is_empty() {
            return Ok(());
        }
        if !rel.as_os_str().is_empty() && removed.len() == lower_children {
            self.set.push(Kind::Opaque, rel)?;
        } else {
            for path in &removed {
                self.set.push(Kind::Whiteout, path)?;
            }
        }
        Ok(())
    }

    /// `rel` exists in both trees.
    fn compare_both(&mut self, lower_root: &Path, upper_root: &Path, rel: &Path) -> Result<()> {
        let lpath = lower_root.join(rel);
        let upath = upper_root.join(rel);
        let l = Stat::lstat(&lpath)?;
        let u = Stat::lstat(&upath)?;
        self.saw_upper(rel, &u);
        if !same_file(&lpath, &l, &upath, &u, self.check)? {
            self.set.push(Kind::Entry, rel)?;
        }
        if u.is_dir() {
            if l.is_dir() {
                self.double_walk(lower_root, upper_root, rel)?;
            } else {
                for name in read_dir_sorted(&upath)? {
                    let child = rel.join(&name);
                    let cst = Stat::lstat(&upper_root.join(&child))?;
                    self.add_subtree(upper_root, &child, &cst)?;
                }
            }
        }
        Ok(())
    }

    /// The overlay fast path for directory `rel` of an upperdir whose merged lower tree
    /// is `lower_root` (where `rel` is a directory).
    fn overlay_walk(&mut self, lower_root: &Path, upperdir: &Path, rel: &Path) -> Result<()> {
        let mut removed = Vec::new();
        for name in read_dir_sorted(&upperdir.join(rel))? {
            let child = rel.join(&name);
            let upath = upperdir.join(&child);
            let u = Stat::lstat(&upath)?;
            let lpath = lower_root.join(&child);
            let l = Stat::lstat_opt(&lpath)?;
            if u.is_overlay_whiteout() {
                if l.is_some() {
                    removed.push(child);
                }
                continue;
            }
            let Some(l) = l else {
                self.add_subtree(upperdir, &child, &u)?;
                continue;
            };
            self.saw_upper(&child, &u);
            if !same_file(&lpath, &l, &upath, &u, self.check)? {
                self.set.push(Kind::Entry, &child)?;
            }
            if !u.is_dir() {
                continue;
            }
            if !l.is_dir() {
                for name in read_dir_sorted(&upath)? {
                    let c = child.join(&name);
                    let cst = Stat::lstat(&upperdir.join(&c))?;
                    self.add_subtree(upperdir, &c, &cst)?;
                }
            } else if is_opaque_dir(&upath)? {
                // The upperdir holds the whole merged directory: walk it against lower.
                self.double_walk(lower_root, upperdir, &child)?;
            } else {
                self.overlay_walk(lower_root, upperdir, &child)?;
            }
        }
        if !removed.is_empty() {
            let lower_children = read_dir_sorted(&lower_root.join(rel))?.len();
            self.push_removals(rel, lower_children, removed)?;
        }
        Ok(())
    }
}

/// Whether an upperdir directory is marked opaque by overlayfs.
pub(crate) fn is_opaque_dir(path: &Path) -> Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        match xattr::get(path, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if is_unsupported(&e) => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    Ok(false)
}

/// Whether an upperdir uses overlay features the fast path cannot read (redirected
/// directories, metadata-only copy-ups): then the caller walks the merged trees.
pub(crate) fn upperdir_is_plain(upperdir: &Path) -> Result<bool> {
    fn visit(p: &Path) -> Result<bool> {
        for name in ["trusted.overlay.redirect", "trusted.overlay.metacopy"] {
            match xattr::get(p, name) {
                Ok(Some(_)) => return Ok(false),
                Ok(None) => {}
                Err(e) if is_unsupported(&e) => {}
                Err(e) => return Err(io_err(p, e)),
            }
        }
        let st = Stat::lstat(p)?;
        if st.is_dir() {
            for name in read_dir_sorted(p)? {
                if !visit(&p.join(name))? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
    visit(upperdir)
}

/// The changes from the tree at `lower_root` (`None`: empty) to the tree at
/// `upper_root`, by walking both; `check` says how regular files whose metadata match
/// are compared.
pub(crate) fn double_walk(
    lower_root: Option<&Path>,
    upper_root: &Path,
    check: ContentCheck,
) -> Result<ChangeSet> {
    let mut c = Collector {
        check,
        ..Collector::default()
    };
    let root = Path::new("");
    match lower_root {
        Some(lower) => c.double_walk(lower, upper_root, root)?,
        None => {
            for name in read_dir_sorted(upper_root)? {
                let child = root.join(&name);
                let st = Stat::lstat(&upper_root.join(&child))?;
                c.add_subtree(upper_root, &child, &st)?;
            }
        }
    }
    c.finish()
}

/// The changes an overlay's `upperdir` makes over the merged lower tree at
/// `lower_root`, reading only the upperdir (and the lower entries it shadows).
///
/// Always by containerd's rule ([`ContentCheck::Metadata`]), as containerd's own
/// overlay differ: this path serves snapshots that containerd's tools wrote, whose
/// layers should be the ones containerd computes.
pub(crate) fn overlay_changes(lower_root: &Path, upperdir: &Path) -> Result<ChangeSet> {
    let mut c = Collector::default();
    c.overlay_walk(lower_root, upperdir, Path::new(""))?;
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn set_mtime(p: &Path, sec: i64, nsec: i64) {
        let ts = [
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        ];
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(rc, 0);
    }

    #[test]
    fn same_size_rewrite_in_the_same_second_is_found() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::write(lower.path().join("f"), b"aaaa").unwrap();
        fs::write(upper.path().join("f"), b"bbbb").unwrap();
        for d in [lower.path(), upper.path()] {
            set_mtime(&d.join("f"), 1_600_000_000, 0);
            set_mtime(d, 1_600_000_000, 0);
        }
        let set = double_walk(Some(lower.path()), upper.path(), ContentCheck::Metadata).unwrap();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Change::Entry(Path::new("f"))]
        );
        // Same content, same metadata: no change at all.
        fs::write(upper.path().join("f"), b"aaaa").unwrap();
        set_mtime(&upper.path().join("f"), 1_600_000_000, 0);
        let set = double_walk(Some(lower.path()), upper.path(), ContentCheck::Metadata).unwrap();
        assert!(set.len() == 0, "{:?}", set.iter().collect::<Vec<_>>());
    }

    /// How many content comparisons `f` made on this thread.
    fn comparisons_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        use crate::file_metadata::CONTENT_COMPARISONS;
        let before = CONTENT_COMPARISONS.with(|c| c.get());
        let out = f();
        (out, CONTENT_COMPARISONS.with(|c| c.get()) - before)
    }

    #[test]
    fn exact_check_finds_a_rewrite_that_keeps_size_and_nanosecond_mtime() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        // Larger than one comparison block, differing only in the last byte.
        let mut data = vec![7u8; 300_000];
        fs::write(lower.path().join("f"), &data).unwrap();
        *data.last_mut().unwrap() = 8;
        fs::write(upper.path().join("f"), &data).unwrap();
        for d in [lower.path(), upper.path()] {
            set_mtime(&d.join("f"), 1_600_000_000, 123_456_789);
        }
        // containerd's rule: same size and mtime with nanoseconds → unchanged.
        let (set, reads) = comparisons_during(|| {
            double_walk(Some(lower.path()), upper.path(), ContentCheck::Metadata).unwrap()
        });
        assert_eq!(set.len(), 0, "{:?}", set.iter().collect::<Vec<_>>());
        assert_eq!(reads, 0);
        let (set, reads) = comparisons_during(|| {
            double_walk(Some(lower.path()), upper.path(), ContentCheck::Exact).unwrap()
        });
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Change::Entry(Path::new("f"))]
        );
        assert_eq!(reads, 1);
        // Same bytes: read, and unchanged.
        fs::copy(lower.path().join("f"), upper.path().join("f")).unwrap();
        set_mtime(&upper.path().join("f"), 1_600_000_000, 123_456_789);
        let set = double_walk(Some(lower.path()), upper.path(), ContentCheck::Exact).unwrap();
        assert_eq!(set.len(), 0, "{:?}", set.iter().collect::<Vec<_>>());
    }

    #[test]
    fn exact_check_does_not_read_the_same_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(lower.join("d/shared"), vec![1u8; 10_000]).unwrap();
        set_mtime(&lower.join("d/shared"), 1_600_000_000, 5);
        // A hardlinked copy of the tree: the same inode under both roots.
        fs::hard_link(lower.join("d/shared"), upper.join("d/shared")).unwrap();
        // And a whole-second mtime, where even containerd's rule reads the bytes.
        fs::write(lower.join("coarse"), b"same").unwrap();
        fs::hard_link(lower.join("coarse"), upper.join("coarse")).unwrap();
        set_mtime(&lower.join("coarse"), 1_600_000_000, 0);
        for d in [&lower, &upper] {
            set_mtime(&d.join("d"), 1_600_000_000, 5);
        }
        let (set, reads) =
            comparisons_during(|| double_walk(Some(&lower), &upper, ContentCheck::Exact).unwrap());
        assert_eq!(set.len(), 0, "{:?}", set.iter().collect::<Vec<_>>());
        assert_eq!(
            reads, 0,
            "a file was read although both names are one inode"
        );
    }

    #[test]
    fn removed_names_and_emptied_dirs() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        for d in [lower.path(), upper.path()] {
            fs::create_dir_all(d.join("d/sub")).unwrap();
            fs::create_dir_all(d.join("e")).unwrap();
            fs::write(d.join("e/keep"), b"k").unwrap();
        }
        fs::write(lower.path().join("d/x"), b"x").unwrap();
        fs::write(lower.path().join("e/gone"), b"g").unwrap();
        fs::remove_dir(upper.path().join("d/sub")).unwrap();
        symlink("target", upper.path().join("d/new")).unwrap();
        for d in [lower.path(), upper.path()] {
            for p in ["", "d", "e", "e/keep"] {
                set_mtime(&d.join(p), 1_600_000_000, 5);
            }
            if d.join("d/sub").exists() {
                set_mtime(&d.join("d/sub"), 1_600_000_000, 5);
            }
        }
        let set = double_walk(Some(lower.path()), upper.path(), ContentCheck::Metadata).unwrap();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![
                Change::Opaque(Path::new("d")),
                Change::Entry(Path::new("d/new")),
                Change::Whiteout(Path::new("e/gone")),
            ]
        );
    }
}
