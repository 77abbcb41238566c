//! apply(compare(lower, upper)) onto a copy of lower reproduces upper exactly, for
//! random pairs of trees; and the same trees always give the same layer.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;
use proptest::prelude::*;
use strata_differ::{Applier, CompareOptions, Comparer, WalkingDiffer};
use strata_oci::Compression;
use strata_snapshotter::Mount;

/// Builds lower and upper, diffs them, applies the layer onto a copy of lower and
/// compares with upper. Returns the layer's (diffID, digest).
fn roundtrip(
    lower: &BTreeMap<String, Node>,
    upper: &BTreeMap<String, Node>,
    lower_links: &[(u8, u8)],
    upper_links: &[(u8, u8)],
    compression: Compression,
    exact_content: bool,
) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (l, u, target) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("target"),
    );
    fs::create_dir(&l).unwrap();
    fs::create_dir(&u).unwrap();
    materialize(&l, lower, lower_links);
    materialize(&u, upper, upper_links);
    copy_tree(&l, &target);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let differ = WalkingDiffer::new(memory_store()).with_exact_content(exact_content);
    let opts = CompareOptions {
        compression,
        ..CompareOptions::default()
    };
    let blob = rt
        .block_on(differ.compare(&[Mount::bind(&l, true)], &[Mount::bind(&u, true)], &opts))
        .unwrap();
    let diff_id = rt
        .block_on(differ.apply(&blob.descriptor, &[Mount::bind(&target, false)]))
        .unwrap();
    assert_eq!(diff_id, blob.diff_id);
    assert_same_tree(&u, &target);
    (blob.diff_id.to_string(), blob.descriptor.digest.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn applying_the_diff_onto_lower_gives_upper(
        lower in root_strategy(),
        choices in prop::collection::vec(any::<u8>(), 0..64),
        pool in prop::collection::vec(node_strategy(), 0..6),
        lower_links in prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
        upper_links in prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
        same_links in any::<bool>(),
        exact_content in any::<bool>(),
    ) {
        // Rewrites that keep size and mtime only when the differ compares content:
        // containerd's rule misses them by design.
        let upper = mutate(&lower, &mut choices.into_iter(), &mut pool.into_iter(), exact_content);
        let upper_links = if same_links { lower_links.clone() } else { upper_links };
        roundtrip(&lower, &upper, &lower_links, &upper_links, Compression::Gzip, exact_content);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn a_base_layer_reproduces_the_tree(
        upper in root_strategy(),
        links in prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
    ) {
        roundtrip(&BTreeMap::new(), &upper, &[], &links, Compression::Zstd, false);
    }
}

/// A fixed tree exercising every entry kind, built twice.
fn fixed_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("dir/file"), vec![42u8; 100_000]).unwrap();
    fs::write(root.join("dir/sub/other"), b"other").unwrap();
    fs::hard_link(root.join("dir/file"), root.join("link")).unwrap();
    std::os::unix::fs::symlink("dir/file", root.join("sym")).unwrap();
    let long = "n".repeat(150);
    fs::write(root.join(&long), b"long name").unwrap();
    xattr::set(root.join("dir/file"), "user.k", b"v").unwrap();
    for p in ["dir/file", "dir/sub/other", &long, "dir/sub", "dir"] {
        set_mtime(&root.join(p), 1_700_000_000, 5);
    }
    set_mtime(&root.join("sym"), 1_700_000_000, 5);
}

#[test]
fn the_same_trees_give_the_same_layer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    for threads in [1, 2] {
        let tmp = tempfile::tempdir().unwrap();
        fixed_tree(tmp.path());
        let differ = WalkingDiffer::new(memory_store());
        let opts = CompareOptions {
            threads: Some(threads),
            ..CompareOptions::default()
        };
        let blob = rt
            .block_on(differ.compare(&[], &[Mount::bind(tmp.path(), true)], &opts))
            .unwrap();
        results.push((blob.diff_id, blob.descriptor.digest));
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fixed_tree(&src);
    fs::write(src.join("old"), b"old").unwrap();
    set_mtime(&src.join("old"), 1_000, 7);
    let store = memory_store();
    let differ = WalkingDiffer::new(store.clone());
    let opts = CompareOptions {
        source_date_epoch: Some(1_600_000_000),
        compression: Compression::Uncompressed,
        ..CompareOptions::default()
    };
    let blob = rt
        .block_on(differ.compare(&[], &[Mount::bind(&src, true)], &opts))
        .unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    rt.block_on(differ.apply(&blob.descriptor, &[Mount::bind(&target, false)]))
        .unwrap();
    let state = tree_state(&target);
    assert_eq!(
        state.entries[std::path::Path::new("dir/file")].mtime,
        (1_600_000_000, 0)
    );
    assert_eq!(state.entries[std::path::Path::new("old")].mtime, (1_000, 7));
    // Clamping is done while writing, so the layer is reproducible from the tree alone.
    let again = rt
        .block_on(differ.compare(&[], &[Mount::bind(&src, true)], &opts))
        .unwrap();
    assert_eq!(again.diff_id, blob.diff_id);
}

#[test]
fn special_entries_round_trip() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, target) = (tmp.path().join("src"), tmp.path().join("target"));
    fs::create_dir_all(src.join("dev")).unwrap();
    fs::create_dir(&target).unwrap();
    // A name that is not UTF-8, a link target longer than 100 bytes.
    fs::write(src.join(OsStr::from_bytes(b"caf\xe9-\xff")), b"latin1").unwrap();
    std::os::unix::fs::symlink("t/".repeat(80), src.join("longlink")).unwrap();
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o660);
    nix::sys::stat::mknod(
        &src.join("dev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        mode,
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &src.join("dev/loop9"),
        nix::sys::stat::SFlag::S_IFBLK,
        mode,
        nix::sys::stat::makedev(7, 9),
    )
    .unwrap();
    // A file capability (VFS_CAP_REVISION_2, effective, cap_net_bind_service).
    fs::write(src.join("ping"), b"#!").unwrap();
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    xattr::set(src.join("ping"), "security.capability", &cap).unwrap();
    // Sockets are not layer content.
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    for p in ["ping", "dev/null", "dev/loop9", "dev", "longlink"] {
        set_mtime(&src.join(p), 1_690_000_000, 42);
    }

    let differ = WalkingDiffer::new(memory_store());
    let blob = rt
        .block_on(differ.compare(&[], &[Mount::bind(&src, true)], &CompareOptions::default()))
        .unwrap();
    rt.block_on(differ.apply(&blob.descriptor, &[Mount::bind(&target, false)]))
        .unwrap();
    fs::remove_file(src.join("sock")).unwrap();
    assert_same_tree(&src, &target);
}
