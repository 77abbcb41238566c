//! [`ApplyOptions::rootless`] applied to a tar of owned entries, a read-only
//! directory and a device node.

use std::fs;

use tar::EntryType;

use super::apply_tar;
use crate::file_metadata::Stat;
use crate::ApplyOptions;

#[test]
fn rootless_maps_owners_to_the_caller_and_skips_devices() {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |path: &str, ty: EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h.set_cksum();
        h
    };
    builder
        .append(&header("ro/", EntryType::Directory, 0o555, 0), &[][..])
        .unwrap();
    builder
        .append(&header("ro/file", EntryType::Regular, 0o640, 2), &b"hi"[..])
        .unwrap();
    builder
        .append(&header("ro/null", EntryType::Char, 0o666, 0), &[][..])
        .unwrap();
    builder
        .append(&header("fifo", EntryType::Fifo, 0o600, 0), &[][..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (_, outcome) = apply_tar(
        &tar[..],
        root.path(),
        "sha256:test",
        u64::MAX,
        &ApplyOptions { rootless: true },
    );
    assert!(outcome.is_ok());
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    for path in ["ro", "ro/file", "fifo"] {
        let st = Stat::lstat(&root.path().join(path)).unwrap();
        assert_eq!((st.uid, st.gid), me, "{path}");
    }
    let st = |p: &str| Stat::lstat(&root.path().join(p)).unwrap();
    assert_eq!(st("ro").mode & 0o7777, 0o555);
    assert_eq!(st("ro/file").mode & 0o7777, 0o640);
    assert_eq!(st("ro").mtime, 1_600_000_000);
    assert_eq!(fs::read(root.path().join("ro/file")).unwrap(), b"hi");
    assert!(!root.path().join("ro/null").exists());
}
