//! Test helpers: random trees (as specs that materialize on disk), tree snapshots for
//! exact comparison, and small wrappers around the differ.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;
use strata_content::{ContentStore, MemoryStore};

/// Metadata of a generated entry.
#[derive(Clone, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub nsec: i64,
    pub xattr: Option<(String, Vec<u8>)>,
}

/// A generated tree entry.
#[derive(Clone, Debug)]
pub enum Node {
    File(Meta, Vec<u8>),
    Dir(Meta, BTreeMap<String, Node>),
    Symlink(Meta, String),
    Fifo(Meta),
}

fn meta_strategy(dir: bool) -> impl Strategy<Value = Meta> {
    let modes: Vec<u32> = if dir {
        vec![0o755, 0o700, 0o1777, 0o2775]
    } else {
        vec![0o644, 0o755, 0o600, 0o4755, 0o2711, 0o1644]
    };
    (
        prop::sample::select(modes),
        prop::sample::select(vec![0u32, 1000, 65534]),
        prop::sample::select(vec![0u32, 100, 3_000_000]),
        1_500_000_000i64..1_500_000_010,
        prop_oneof![Just(0i64), 1i64..999_999_999],
        prop::option::weighted(
            0.3,
            (
                prop::sample::select(vec!["user.a".to_string(), "user.b".to_string()]),
                prop::collection::vec(any::<u8>(), 0..8),
            ),
        ),
    )
        .prop_map(|(mode, uid, gid, mtime, nsec, xattr)| Meta {
            mode,
            uid,
            gid,
            mtime,
            nsec,
            xattr,
        })
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a".to_string(),
        "b".to_string(),
        "c d".to_string(),
        "e".to_string(),
        "f-1".to_string(),
        "zz".to_string(),
    ])
}

/// A random entry (leaves and directories up to three levels deep).
pub fn node_strategy() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => (meta_strategy(false), prop::collection::vec(any::<u8>(), 0..3000))
            .prop_map(|(m, d)| Node::File(m, d)),
        1 => (meta_strategy(false), prop::sample::select(vec!["a", "../x", "/etc", "b/c"]))
            .prop_map(|(m, t)| Node::Symlink(m, t.to_string())),
        1 => meta_strategy(false).prop_map(Node::Fifo),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            meta_strategy(true),
            prop::collection::btree_map(name_strategy(), inner, 0..4),
        )
            .prop_map(|(m, c)| Node::Dir(m, c))
    })
}

/// The children of a random root directory.
pub fn root_strategy() -> impl Strategy<Value = BTreeMap<String, Node>> {
    prop::collection::btree_map(name_strategy(), node_strategy(), 0..5)
}

/// Derives an upper tree from `lower`: each entry is kept, deleted, replaced (type
/// change), has its content, mode, owner or xattrs changed, or gets a new child, as the
/// `choices` say; replacements come from `pool`. With `hidden_rewrites`, a content
/// change keeps the file's size and mtime (`touch -r` after an edit), which only exact
/// change detection sees.
pub fn mutate(
    lower: &BTreeMap<String, Node>,
    choices: &mut impl Iterator<Item = u8>,
    pool: &mut impl Iterator<Item = Node>,
    hidden_rewrites: bool,
) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (name, node) in lower {
        let c = choices.next().unwrap_or(255) % 10;
        let new = match c {
            0 => None,
            1 => pool.next().or_else(|| Some(node.clone())),
            2 => Some(modify_content(node, hidden_rewrites)),
            3 => Some(with_meta(node, |m| {
                m.mode ^= 0o4000 | 0o011;
                m.uid = m.uid.wrapping_add(1);
            })),
            4 => Some(with_meta(node, |m| {
                m.xattr = match &m.xattr {
                    Some(_) => None,
                    None => Some(("user.x".into(), vec![1, 2])),
                }
            })),
            _ => Some(match node {
                Node::Dir(m, children) => {
                    let mut kids = mutate(children, choices, pool, hidden_rewrites);
                    if c == 5 {
                        if let Some(extra) = pool.next() {
                            kids.insert("new".into(), extra);
                        }
                    }
                    Node::Dir(m.clone(), kids)
                }
                other => other.clone(),
            }),
        };
        if let Some(n) = new {
            out.insert(name.clone(), n);
        }
    }
    if choices.next().unwrap_or(0).is_multiple_of(4) {
        if let Some(extra) = pool.next() {
            out.insert("added".into(), extra);
        }
    }
    out
}

fn with_meta(node: &Node, f: impl FnOnce(&mut Meta)) -> Node {
    let mut n = node.clone();
    match &mut n {
        Node::File(m, _) | Node::Dir(m, _) | Node::Symlink(m, _) | Node::Fifo(m) => f(m),
    }
    n
}

/// A content change as a real writer makes it: with whole-second mtimes the mtime stays
/// (a same-second rewrite), otherwise it moves — unless `hidden`, where a non-empty
/// file keeps its size and its mtime with nanoseconds.
fn modify_content(node: &Node, hidden: bool) -> Node {
    match node {
        Node::File(m, d) => {
            let mut d = d.clone();
            let mut m = m.clone();
            match d.last_mut() {
                Some(b) if hidden => *b = b.wrapping_add(1),
                _ => {
                    match d.first_mut() {
                        Some(b) => *b = b.wrapping_add(1),
                        None => d.push(1),
                    }
                    if m.nsec != 0 {
                        m.mtime += 1;
                    }
                }
            }
            Node::File(m, d)
        }
        Node::Symlink(m, t) => {
            let mut m = m.clone();
            m.mtime += 1;
            Node::Symlink(m, format!("{t}x"))
        }
        Node::Dir(m, c) => {
            let mut m = m.clone();
            m.mode ^= 0o002;
            Node::Dir(m, c.clone())
        }
        Node::Fifo(m) => {
            let mut m = m.clone();
            m.mode ^= 0o020;
            Node::Fifo(m)
        }
    }
}

/// Creates `children` under `root`, then hardlinks files as `links` say (pairs of
/// indices into the sorted list of regular files), then sets directory metadata
/// bottom-up (the root's included).
pub fn materialize(root: &Path, children: &BTreeMap<String, Node>, links: &[(u8, u8)]) {
    let mut dirs = Vec::new();
    for (name, node) in children {
        create(&root.join(name), node, &mut dirs);
    }
    let mut files = Vec::new();
    collect_files(root, &mut files);
    if files.len() > 1 {
        for (a, b) in links {
            let a = &files[*a as usize % files.len()];
            let b = &files[*b as usize % files.len()];
            if a == b {
                continue;
            }
            fs::remove_file(b).unwrap();
            fs::hard_link(a, b).unwrap();
        }
    }
    for (path, meta) in dirs.iter().rev() {
        apply_meta(path, meta, true);
    }
    set_mtime(root, 1_400_000_000, 123);
}

fn create(path: &Path, node: &Node, dirs: &mut Vec<(PathBuf, Meta)>) {
    match node {
        Node::File(m, d) => {
            fs::write(path, d).unwrap();
            apply_meta(path, m, true);
        }
        Node::Symlink(m, t) => {
            symlink(t, path).unwrap();
            let mut m = m.clone();
            m.xattr = None; // user xattrs are not allowed on symlinks
            apply_meta(path, &m, false);
        }
        Node::Fifo(m) => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let mut m = m.clone();
            m.xattr = None; // user xattrs are not allowed on special files
            apply_meta(path, &m, true);
        }
        Node::Dir(m, children) => {
            fs::create_dir(path).unwrap();
            dirs.push((path.to_path_buf(), m.clone()));
            for (name, child) in children {
                create(&path.join(name), child, dirs);
            }
        }
    }
}

fn apply_meta(path: &Path, m: &Meta, chmod: bool) {
    lchown(path, Some(m.uid), Some(m.gid)).unwrap();
    if chmod {
        fs::set_permissions(path, fs::Permissions::from_mode(m.mode)).unwrap();
    }
    if let Some((k, v)) = &m.xattr {
        xattr::set(path, k, v).unwrap();
    }
    set_mtime(path, m.mtime, m.nsec);
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(n);
        let st = fs::symlink_metadata(&p).unwrap();
        if st.is_dir() {
            collect_files(&p, out);
        } else if st.is_file() {
            out.push(p);
        }
    }
}

/// Sets the mtime (and atime) of `path`, not following symlinks.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
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
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Everything a user can observe about one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct EntryState {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub mtime: (i64, i64),
    pub content: Option<Vec<u8>>,
    pub target: Option<PathBuf>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A tree as path → state, plus its hardlink groups (sorted path lists).
#[derive(Debug, PartialEq, Eq)]
pub struct TreeState {
    pub entries: BTreeMap<PathBuf, EntryState>,
    pub link_groups: Vec<Vec<PathBuf>>,
}

/// Reads the tree at `root` (the root directory's own metadata excluded).
pub fn tree_state(root: &Path) -> TreeState {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    walk(root, Path::new(""), &mut entries, &mut inodes);
    let mut link_groups: Vec<Vec<PathBuf>> = inodes.into_values().filter(|g| g.len() > 1).collect();
    link_groups.sort();
    TreeState {
        entries,
        link_groups,
    }
}

fn walk(
    root: &Path,
    rel: &Path,
    out: &mut BTreeMap<PathBuf, EntryState>,
    inodes: &mut BTreeMap<(u64, u64), Vec<PathBuf>>,
) {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let p = root.join(&r);
        let st = fs::symlink_metadata(&p).unwrap();
        let kind = st.mode() & libc::S_IFMT;
        let mut xattrs = BTreeMap::new();
        for k in xattr::list(&p).unwrap() {
            if k.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Some(v) = xattr::get(&p, &k).unwrap() {
                xattrs.insert(k.as_bytes().to_vec(), v);
            }
        }
        if st.is_file() {
            inodes
                .entry((st.dev(), st.ino()))
                .or_default()
                .push(r.clone());
        }
        out.insert(
            r.clone(),
            EntryState {
                kind,
                mode: st.mode() & 0o7777,
                uid: st.uid(),
                gid: st.gid(),
                rdev: st.rdev(),
                mtime: (st.mtime(), st.mtime_nsec()),
                content: st.is_file().then(|| fs::read(&p).unwrap()),
                target: st
                    .file_type()
                    .is_symlink()
                    .then(|| fs::read_link(&p).unwrap()),
                xattrs,
            },
        );
        if st.is_dir() {
            walk(root, &r, out, inodes);
        }
    }
}

/// Asserts two trees are the same, listing the first differences.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = tree_state(expected);
    let b = tree_state(actual);
    if a == b {
        return;
    }
    let mut diffs = Vec::new();
    for (p, e) in &a.entries {
        match b.entries.get(p) {
            None => diffs.push(format!("missing {}", p.display())),
            Some(x) if x != e => diffs.push(format!("{}: expected {e:?}, got {x:?}", p.display())),
            _ => {}
        }
    }
    for p in b.entries.keys() {
        if !a.entries.contains_key(p) {
            diffs.push(format!("unexpected {}", p.display()));
        }
    }
    if a.link_groups != b.link_groups {
        diffs.push(format!(
            "hardlink groups: expected {:?}, got {:?}",
            a.link_groups, b.link_groups
        ));
    }
    diffs.truncate(10);
    panic!(
        "{} and {} differ:\n{}",
        expected.display(),
        actual.display(),
        diffs.join("\n")
    );
}

/// `cp -a src/. dst/` (keeps owners, modes, xattrs, hardlinks, nanosecond mtimes).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst)
        .status()
        .expect("cp is installed");
    assert!(status.success(), "cp -a failed");
}

/// A fresh in-memory content store.
pub fn memory_store() -> Arc<dyn ContentStore> {
    Arc::new(MemoryStore::new())
}
