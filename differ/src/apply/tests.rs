//! Unit tests of the applier on plain tar streams (the hostile layers through the
//! public API are in `tests/hostile_layers.rs`).

use super::*;
use std::os::unix::fs::symlink;
use strata_oci::{Digest, Digester};

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// [`apply_tar`] for a plain stream, unbounded: read errors are
/// [`Error::CorruptLayer`]; returns the sha256 of everything read (the diffID).
fn apply_plain<R: Read>(reader: R, root: &Path, layer: &str) -> Result<Digest> {
    let (mut hashing, outcome) = apply_tar(
        HashingReader {
            inner: reader,
            digester: Digester::new(),
        },
        root,
        layer,
        u64::MAX,
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

fn refusal(tar: &[u8], root: &Path) -> Refusal {
    match apply_plain(tar, root, "sha256:test") {
        Err(Error::RefusedEntry { layer, refusal, .. }) => {
            assert_eq!(layer, "sha256:test");
            refusal
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn entries_escaping_the_root_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    let file = |name: &[u8]| raw_tar(name, EntryType::Regular, b"", b"x");
    assert_eq!(refusal(&file(b"../evil"), &root), Refusal::ParentComponent);
    assert_eq!(refusal(&file(b"/evil"), &root), Refusal::AbsoluteName);
    assert_eq!(
        refusal(&file(b"a/../../evil"), &root),
        Refusal::ParentComponent
    );
    // Writing through a symlinked parent, or whiting out under one.
    symlink(outer.path(), root.join("up")).unwrap();
    let through = Refusal::SymlinkedParent {
        parent: "up".into(),
    };
    assert_eq!(refusal(&file(b"up/evil"), &root), through);
    assert_eq!(refusal(&file(b"up/.wh.root"), &root), through);
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

#[test]
fn an_entry_past_the_tar_bound_is_refused_at_its_header() {
    let root = tempfile::tempdir().unwrap();
    let tar = raw_tar(b"big", EntryType::Regular, b"", &[7u8; 4096]);
    let (_, outcome) = apply_tar(
        &tar[..],
        root.path(),
        "sha256:test",
        2048,
        &ApplyOptions::default(),
    );
    match outcome {
        Err(ApplyFailure::Other(Error::RefusedEntry {
            entry,
            refusal: Refusal::PastTarLimit { end, limit },
            ..
        })) => {
            assert_eq!((entry.as_str(), end, limit), ("big", 512 + 4096, 2048));
        }
        Err(ApplyFailure::Other(e)) => panic!("unexpected {e:?}"),
        Err(ApplyFailure::Read(e)) => panic!("unexpected read error {e}"),
        Ok(()) => panic!("applied past the bound"),
    }
    assert!(
        !root.path().join("big").exists(),
        "nothing of it was written"
    );
}

/// Linux capability sets of one thread (`capget(2)`/`capset(2)`, version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_MKNOD: u32 = 27;

/// Runs `f` on this thread with `CAP_MKNOD` out of its effective set (capabilities
/// are per thread), as for an unprivileged process; restored after.
fn without_cap_mknod<T>(f: impl FnOnce() -> T) -> T {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: `header` and `data` are the layout capget/capset expect (version 3 takes
    // two data structs); the calls touch only this thread's capabilities.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", io::Error::last_os_error());
    let saved = data;
    data[0].effective &= !(1 << CAP_MKNOD);
    // SAFETY: as above.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", io::Error::last_os_error());
    let out = f();
    // SAFETY: as above; restores the saved sets (the permitted set still holds them).
    let restored = unsafe { libc::syscall(libc::SYS_capset, &mut header, saved.as_ptr()) };
    assert_eq!(restored, 0, "capset: {}", io::Error::last_os_error());
    out
}

fn device_tar(name: &[u8], ty: EntryType) -> Vec<u8> {
    let mut tar = raw_tar(name, ty, b"", b"");
    let mut h = tar::Header::from_byte_slice(&tar[..512]).clone();
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    tar
}

#[test]
fn devices_the_process_may_not_make_are_refused_and_fifos_made() {
    let root = tempfile::tempdir().unwrap();
    without_cap_mknod(|| {
        assert_eq!(
            refusal(&device_tar(b"dev/null", EntryType::Char), root.path()),
            Refusal::CharDevice
        );
        assert_eq!(
            refusal(&device_tar(b"dev/sda", EntryType::Block), root.path()),
            Refusal::BlockDevice
        );
        apply_plain(
            &device_tar(b"run/fifo", EntryType::Fifo)[..],
            root.path(),
            "sha256:test",
        )
        .unwrap();
    });
    assert!(!root.path().join("dev/null").exists());
    assert!(!root.path().join("dev/sda").exists());
    let fifo = fs::symlink_metadata(root.path().join("run/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
}
