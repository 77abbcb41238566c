//! Copy layers (`strata export --copy SRC[:DEST] --chown UID:GID`): the tar holds SRC
//! under DEST with the owner asked for, is the same for the same SRC, and applying it
//! onto an empty tree gives SRC's tree under DEST.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use strata_content::{read_blob, ContentStore, Filter};
use strata_differ::{
    copy_layer, Applier, CompareOptions, CopyOptions, Error, LayerBlob, WalkingDiffer,
};
use strata_oci::{labels, Compression, Digest};
use strata_snapshotter::Mount;

/// What a test checks of one tar entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn entry(path: &str, kind: tar::EntryType, mode: u32, owner: (u64, u64), mtime: u64) -> Entry {
    Entry {
        path: path.to_string(),
        kind,
        mode,
        uid: owner.0,
        gid: owner.1,
        mtime,
        link: None,
        data: Vec::new(),
        xattrs: BTreeMap::new(),
    }
}

/// The uncompressed tar of `blob`.
fn tar_of(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn ContentStore>,
    blob: &LayerBlob,
) -> Vec<u8> {
    let bytes = rt
        .block_on(read_blob(&**store, &blob.descriptor, 1 << 30))
        .unwrap();
    let mut tar = Vec::new();
    match Compression::from_layer_media_type(&blob.descriptor.media_type) {
        Some(Compression::Gzip) => {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut tar)
                .unwrap();
        }
        Some(Compression::Zstd) => tar = zstd::decode_all(&bytes[..]).unwrap(),
        _ => tar = bytes,
    }
    tar
}

/// The entries of `tar`, in order.
fn entries(tar: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path: String::from_utf8(e.path_bytes().to_vec()).unwrap(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap()),
            data,
            xattrs,
        });
    }
    out
}

fn copy(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn ContentStore>,
    src: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
    opts: &CompareOptions,
) -> Result<LayerBlob, Error> {
    let copy = CopyOptions {
        dest: dest.to_string(),
        owner,
    };
    rt.block_on(copy_layer(store.clone(), src, &copy, opts))
}

fn uncompressed() -> CompareOptions {
    CompareOptions {
        compression: Compression::Uncompressed,
        ..CompareOptions::default()
    }
}

/// A source tree with every kind of entry, owned by root, with fixed mtimes; its root
/// has mtime `1_750_000_000`.
fn sample_source(root: &Path) {
    fs::create_dir(root.join("bin")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-link")).unwrap();
    fs::set_permissions(root.join("bin"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(root.join("etc/conf"), b"key=value\n").unwrap();
    fs::set_permissions(root.join("etc/conf"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr::set(root.join("etc/conf"), "user.origin", b"test").unwrap();
    symlink("../bin/tool", root.join("etc/link")).unwrap();
    nix::unistd::mkfifo(
        &root.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    for p in ["bin/tool", "etc/link", "pipe"] {
        set_mtime(&root.join(p), 1_600_000_000, 0);
    }
    set_mtime(&root.join("etc/conf"), 1_800_000_000, 5);
    set_mtime(&root.join("bin"), 1_600_000_001, 0);
    set_mtime(&root.join("etc"), 1_600_000_002, 0);
    set_mtime(root, 1_750_000_000, 0);
}

#[test]
fn a_directory_lands_under_dest_owned_as_asked_with_modes_links_and_clamped_mtimes() {
    use tar::EntryType::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    sample_source(tmp.path());
    let store = memory_store();
    let opts = CompareOptions {
        source_date_epoch: Some(1_700_000_000),
        ..uncompressed()
    };
    let blob = copy(
        &rt,
        &store,
        tmp.path(),
        "/opt/app",
        Some((1000, 1001)),
        &opts,
    )
    .unwrap();
    let got = entries(&tar_of(&rt, &store, &blob));

    let me = (1000, 1001);
    let clamped = 1_700_000_000;
    // No entries for DEST or its parents: a base's directories keep their metadata.
    let mut expected = vec![
        entry("opt/app/bin/", Directory, 0o750, me, 1_600_000_001),
        entry("opt/app/bin/tool", Regular, 0o4755, me, 1_600_000_000),
        entry("opt/app/bin/tool-link", Link, 0o4755, me, 1_600_000_000),
        entry("opt/app/etc/", Directory, 0o755, me, 1_600_000_002),
        entry("opt/app/etc/conf", Regular, 0o600, me, clamped),
        entry("opt/app/etc/link", Symlink, 0o777, me, 1_600_000_000),
        entry("opt/app/pipe", Fifo, 0o640, me, 1_600_000_000),
    ];
    expected[1].data = b"#!/bin/sh\n".to_vec();
    expected[2].link = Some("opt/app/bin/tool".into());
    expected[4].data = b"key=value\n".to_vec();
    expected[4]
        .xattrs
        .insert("user.origin".into(), b"test".to_vec());
    expected[5].link = Some("../bin/tool".into());
    assert_eq!(got, expected);

    // Without an epoch mtimes are the source's; without an owner, 0:0.
    let blob = copy(&rt, &store, tmp.path(), "/opt/app/", None, &uncompressed()).unwrap();
    let got = entries(&tar_of(&rt, &store, &blob));
    assert_eq!(got[0].path, "opt/app/bin/");
    assert!(got.iter().all(|e| (e.uid, e.gid) == (0, 0)), "{got:?}");
    assert_eq!(got[4].mtime, 1_800_000_000);
}

#[test]
fn a_directory_copied_to_the_root_has_no_root_entry() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    sample_source(tmp.path());
    let store = memory_store();
    let blob = copy(&rt, &store, tmp.path(), "/", Some((5, 6)), &uncompressed()).unwrap();
    let paths: Vec<String> = entries(&tar_of(&rt, &store, &blob))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        paths,
        [
            "bin/",
            "bin/tool",
            "bin/tool-link",
            "etc/",
            "etc/conf",
            "etc/link",
            "pipe"
        ]
    );
}

#[test]
fn a_file_goes_at_dest_or_into_a_dest_ending_with_a_slash() {
    use tar::EntryType::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("app.conf");
    fs::write(&src, b"conf").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&src, 1_650_000_000, 0);
    let store = memory_store();
    let owner = Some((7, 8));
    let t = 1_650_000_000;

    let named = entries(&tar_of(
        &rt,
        &store,
        &copy(
            &rt,
            &store,
            &src,
            "/etc/app/main.conf",
            owner,
            &uncompressed(),
        )
        .unwrap(),
    ));
    let mut file = entry("etc/app/main.conf", Regular, 0o640, (7, 8), t);
    file.data = b"conf".to_vec();
    assert_eq!(named, [file]);

    let into = entries(&tar_of(
        &rt,
        &store,
        &copy(&rt, &store, &src, "/etc/app/", owner, &uncompressed()).unwrap(),
    ));
    let mut file = entry("etc/app/app.conf", Regular, 0o640, (7, 8), t);
    file.data = b"conf".to_vec();
    assert_eq!(into, [file]);

    let root = entries(&tar_of(
        &rt,
        &store,
        &copy(&rt, &store, &src, "/", None, &uncompressed()).unwrap(),
    ));
    let paths: Vec<&str> = root.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["app.conf"]);
}

#[test]
fn a_symlink_source_is_copied_as_the_symlink_never_followed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("dir")).unwrap();
    fs::write(tmp.path().join("dir/inside"), b"x").unwrap();
    let src = tmp.path().join("to-dir");
    symlink("dir", &src).unwrap();
    set_mtime(&src, 1_650_000_000, 0);
    let store = memory_store();
    let got = entries(&tar_of(
        &rt,
        &store,
        &copy(&rt, &store, &src, "/srv/current", None, &uncompressed()).unwrap(),
    ));
    let mut link = entry(
        "srv/current",
        tar::EntryType::Symlink,
        0o777,
        (0, 0),
        1_650_000_000,
    );
    link.link = Some("dir".into());
    assert_eq!(got, [link]);
}

#[test]
fn the_same_source_gives_the_same_blob_every_run_for_every_compression() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    sample_source(tmp.path());
    let mut diff_ids = Vec::new();
    for compression in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        let mut digests = Vec::new();
        for threads in [1, 2, 1] {
            let store = memory_store();
            let opts = CompareOptions {
                compression,
                threads: Some(threads),
                source_date_epoch: Some(1_700_000_000),
                ..CompareOptions::default()
            };
            let blob = copy(&rt, &store, tmp.path(), "/app", Some((1, 2)), &opts).unwrap();
            assert_eq!(
                blob.descriptor.media_type,
                compression.layer_media_type(true).unwrap(),
                "{compression}"
            );
            let info = rt.block_on(store.info(&blob.descriptor.digest)).unwrap();
            assert_eq!(
                info.labels.get(labels::UNCOMPRESSED),
                Some(&blob.diff_id.to_string()),
                "{compression}"
            );
            let tar = tar_of(&rt, &store, &blob);
            assert_eq!(Digest::sha256_of(&tar), blob.diff_id, "{compression}");
            assert_eq!(tar.len() as u64, blob.uncompressed_size);
            digests.push(blob.descriptor.digest.clone());
            diff_ids.push(blob.diff_id.clone());
        }
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "{compression}: {digests:?}"
        );
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
}

async fn nothing_committed(store: &Arc<dyn ContentStore>) {
    assert!(store.walk(&Filter::All).await.unwrap().is_empty());
    assert!(store.list_statuses().await.unwrap().is_empty());
}

#[test]
fn whiteout_names_missing_sources_and_bad_destinations_are_typed_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/.wh.passwd"), b"").unwrap();
    let store = memory_store();

    let err = copy(&rt, &store, &src, "/", None, &CompareOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::ReservedName { path } if *path == src.join("etc/.wh.passwd")),
        "{err:?}"
    );
    rt.block_on(nothing_committed(&store));

    let wh_file = src.join("etc/.wh.passwd");
    let err = copy(
        &rt,
        &store,
        &wh_file,
        "/etc/",
        None,
        &CompareOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::ReservedName { path } if *path == wh_file),
        "{err:?}"
    );
    // Renamed by DEST, the file deletes nothing: it may be copied.
    copy(
        &rt,
        &store,
        &wh_file,
        "/etc/passwd.bak",
        None,
        &CompareOptions::default(),
    )
    .unwrap();

    let store = memory_store();
    let missing = tmp.path().join("no-such-dir");
    let err = copy(&rt, &store, &missing, "/", None, &CompareOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::CopySourceMissing { path } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    rt.block_on(nothing_committed(&store));

    fs::remove_file(&wh_file).unwrap();
    for dest in ["app", "/app/../etc", "/app/.wh.x"] {
        let err = copy(&rt, &store, &src, dest, None, &CompareOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCopyDestination { dest: named, .. } if named == dest),
            "{dest}: {err:?}"
        );
        rt.block_on(nothing_committed(&store));
    }
}

/// The directories of `dest` (relative, in order) and whether the last is DEST itself.
fn dest_dirs(dest: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut p = PathBuf::new();
    for c in Path::new(dest).components().skip(1) {
        p.push(c);
        out.push(p.clone());
    }
    out
}

/// Copies a random tree to `dest` as `owner`, applies the layer onto an empty tree and
/// checks SRC's tree is under DEST (owned by `owner`), and the DEST directories the
/// applier created are 0755 (the layer has no entries of its own for them).
fn copy_then_apply(
    tree: &BTreeMap<String, Node>,
    links: &[(u8, u8)],
    dest: &str,
    owner: Option<(u32, u32)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, target) = (tmp.path().join("src"), tmp.path().join("target"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&target).unwrap();
    materialize(&src, tree, links);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = memory_store();
    let blob = copy(&rt, &store, &src, dest, owner, &CompareOptions::default()).unwrap();
    let diff_id = rt
        .block_on(WalkingDiffer::new(store).apply(&blob.descriptor, &[Mount::bind(&target, false)]))
        .unwrap();
    assert_eq!(diff_id, blob.diff_id);

    let (uid, gid) = owner.unwrap_or((0, 0));
    let mut expected = tree_state(&src);
    for e in expected.entries.values_mut() {
        e.uid = uid;
        e.gid = gid;
    }
    let dirs = dest_dirs(dest);
    if expected.entries.is_empty() {
        // An empty source is an empty layer: nothing, not even DEST, is created.
        assert!(fs::read_dir(&target).unwrap().next().is_none(), "{dest}");
        return;
    }
    let under = target.join(dirs.last().cloned().unwrap_or_default());
    assert_eq!(tree_state(&under), expected, "{dest}");

    let root = tree_state(&target);
    for dir in &dirs {
        let state = &root.entries[dir];
        assert_eq!(state.kind, libc::S_IFDIR, "{}", dir.display());
        assert_eq!(state.mode, 0o755, "{}", dir.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn applying_a_copy_layer_onto_an_empty_tree_gives_the_source_under_dest(
        tree in root_strategy(),
        links in prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
        dest in prop::sample::select(vec!["/", "/app", "/usr/local/share/", "/a b/c d"]),
        owner in prop::sample::select(vec![None, Some((1000u32, 1000u32)), Some((0, 65534)), Some((3_000_000, 7))]),
    ) {
        copy_then_apply(&tree, &links, dest, owner);
    }
}
