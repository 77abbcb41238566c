//! Hostile layers through the public applier: each escape kind, a link loop, a
//! decompression bomb, oversized extension headers, names and xattrs are refused with
//! a typed error naming the layer, the entry and the refusal, and nothing outside the
//! root is touched.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::memory_store;
use strata_content::{write_blob, ContentStore};
use strata_differ::{Applier, DecompressionLimit, Error, Refusal, WalkingDiffer};
use strata_oci::{media_types, Descriptor, Digest};
use strata_snapshotter::Mount;
use tar::EntryType;

/// A tar written header by header, sizes and names exactly as given (the `tar` crate's
/// builder refuses the names these tests need).
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    /// A ustar header claiming `size` bytes of data (none written).
    fn header(&mut self, name: &[u8], ty: EntryType, link: &[u8], size: u64) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        let u = h.as_ustar_mut().expect("ustar");
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(ty);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self
    }

    /// A whole entry: header, data, padding.
    fn entry(&mut self, name: &[u8], ty: EntryType, link: &[u8], data: &[u8]) -> &mut Self {
        self.header(name, ty, link, data.len() as u64);
        self.0.extend_from_slice(data);
        self.pad()
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, b"", data)
    }

    /// A PAX extended header holding `records`.
    fn pax(&mut self, records: &[(&[u8], &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} ").as_bytes());
            data.extend_from_slice(key);
            data.push(b'=');
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.entry(b"PaxHeaders.0/x", EntryType::XHeader, b"", &data)
    }

    fn pad(&mut self) -> &mut Self {
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    /// The bytes with the end-of-archive marker.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// A root inside a directory that also holds a sentinel file: nothing a layer does
/// may touch the sentinel or add anything beside the root.
struct Sandbox {
    outer: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let outer = tempfile::tempdir().expect("tempdir");
        fs::create_dir(outer.path().join("root")).expect("root");
        fs::write(outer.path().join("sentinel"), b"untouched").expect("sentinel");
        Sandbox { outer }
    }

    fn root(&self) -> PathBuf {
        self.outer.path().join("root")
    }

    fn outer(&self) -> &Path {
        self.outer.path()
    }

    /// The sentinel is intact and the outer directory holds only it and the root.
    fn assert_untouched(&self) {
        assert_eq!(
            fs::read(self.outer().join("sentinel")).expect("sentinel"),
            b"untouched"
        );
        let mut names: Vec<_> = fs::read_dir(self.outer())
            .expect("outer")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["root", "sentinel"],
            "nothing was written beside the root"
        );
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ContentStore>,
    differ: WalkingDiffer,
}

impl Harness {
    fn new() -> Harness {
        let store = memory_store();
        Harness {
            rt: tokio::runtime::Runtime::new().expect("runtime"),
            differ: WalkingDiffer::new(Arc::clone(&store)),
            store,
        }
    }

    fn put(&self, bytes: &[u8], media_type: &str) -> Descriptor {
        let desc = Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64);
        self.rt
            .block_on(write_blob(
                &*self.store,
                "hostile",
                bytes,
                &desc,
                Default::default(),
            ))
            .expect("put blob");
        desc
    }

    fn apply(&self, desc: &Descriptor, root: &Path) -> Result<Digest, Error> {
        self.rt
            .block_on(self.differ.apply(desc, &[Mount::bind(root, false)]))
    }

    /// Applies the uncompressed `tar` onto the sandbox's root; the refusal, after
    /// checking that the error names the layer and `entry`.
    fn refusal(&self, tar: &[u8], sandbox: &Sandbox, entry: &str) -> Refusal {
        let desc = self.put(tar, media_types::OCI_LAYER);
        refusal_of(self.apply(&desc, &sandbox.root()), &desc, entry)
    }
}

fn refusal_of(result: Result<Digest, Error>, desc: &Descriptor, want_entry: &str) -> Refusal {
    match result {
        Err(Error::RefusedEntry {
            layer,
            entry,
            refusal,
        }) => {
            assert_eq!(layer, desc.digest.to_string(), "the error names the layer");
            assert_eq!(entry, want_entry, "the error names the entry");
            refusal
        }
        other => panic!("expected a refused entry {want_entry:?}, got {other:?}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[test]
fn names_escaping_the_root_are_refused() {
    let h = Harness::new();
    for (name, want) in [
        (&b"../sentinel"[..], Refusal::ParentComponent),
        (b"a/../../sentinel", Refusal::ParentComponent),
        (b"/tmp/sentinel", Refusal::AbsoluteName),
    ] {
        let sandbox = Sandbox::new();
        let tar = Tar::default().file(name, b"evil").finish();
        let entry = String::from_utf8_lossy(name);
        assert_eq!(h.refusal(&tar, &sandbox, &entry), want);
        sandbox.assert_untouched();
    }
    // A NUL inside a PAX name.
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .pax(&[(b"path", b"a\0b")])
        .file(b"short", b"x")
        .finish();
    assert_eq!(h.refusal(&tar, &sandbox, "a\0b"), Refusal::NulInName);
}

#[test]
fn writing_through_a_symlinked_parent_is_refused() {
    let h = Harness::new();
    // A symlink from a lower layer pointing out of the root.
    let sandbox = Sandbox::new();
    symlink(sandbox.outer(), sandbox.root().join("up")).expect("symlink");
    let tar = Tar::default().file(b"up/sentinel", b"evil").finish();
    let through_up = Refusal::SymlinkedParent {
        parent: "up".into(),
    };
    assert_eq!(h.refusal(&tar, &sandbox, "up/sentinel"), through_up);
    sandbox.assert_untouched();

    // A symlink made by the layer itself, then a file through it.
    let sandbox = Sandbox::new();
    let outer = sandbox.outer().as_os_str().as_encoded_bytes().to_vec();
    let tar = Tar::default()
        .entry(b"d/l", EntryType::Symlink, &outer, b"")
        .file(b"d/l/evil", b"evil")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, "d/l/evil"),
        Refusal::SymlinkedParent {
            parent: "d/l".into()
        }
    );
    sandbox.assert_untouched();
    assert!(
        sandbox.root().join("d/l").is_symlink(),
        "the symlink itself is fine"
    );
}

#[test]
fn a_symlink_loop_used_as_a_parent_is_refused() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .entry(b"a", EntryType::Symlink, b"b", b"")
        .entry(b"b", EntryType::Symlink, b"a", b"")
        .file(b"a/x", b"x")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, "a/x"),
        Refusal::SymlinkedParent { parent: "a".into() }
    );
    sandbox.assert_untouched();
}

#[test]
fn hardlinks_out_of_the_root_or_to_what_cannot_be_linked_are_refused() {
    let h = Harness::new();
    let hardlink_to = |target: &[u8]| {
        Tar::default()
            .file(b"in", b"inside")
            .entry(b"dir/", EntryType::Directory, b"", b"")
            .entry(b"h", EntryType::Link, target, b"")
            .finish()
    };
    let refused = |target: &str, refusal: Refusal| Refusal::HardlinkTarget {
        target: target.into(),
        refusal: Box::new(refusal),
    };
    let sandbox = Sandbox::new();
    let absolute = sandbox.outer().join("sentinel");
    let absolute = absolute.to_str().expect("utf-8 temp path");
    for (target, want) in [
        ("../sentinel", Refusal::ParentComponent),
        ("dir/../../sentinel", Refusal::ParentComponent),
        (absolute, Refusal::AbsoluteName),
        ("h", Refusal::TargetIsTheEntry),
        ("dir", Refusal::TargetIsDirectory),
        ("missing", Refusal::TargetMissing),
        ("nodir/missing", Refusal::TargetMissing),
        (".", Refusal::Root),
    ] {
        let sandbox = Sandbox::new();
        let tar = hardlink_to(target.as_bytes());
        assert_eq!(h.refusal(&tar, &sandbox, "h"), refused(target, want));
        sandbox.assert_untouched();
        assert!(!sandbox.root().join("h").exists());
    }
    // Through a symlink the layer made.
    let sandbox = Sandbox::new();
    let outer = sandbox.outer().as_os_str().as_encoded_bytes().to_vec();
    let tar = Tar::default()
        .entry(b"s", EntryType::Symlink, &outer, b"")
        .entry(b"h", EntryType::Link, b"s/sentinel", b"")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, "h"),
        refused(
            "s/sentinel",
            Refusal::SymlinkedParent { parent: "s".into() }
        )
    );
    sandbox.assert_untouched();
    // A hardlink inside the root still works, and one to a symlink links the symlink.
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .file(b"in", b"inside")
        .entry(b"s", EntryType::Symlink, &outer, b"")
        .entry(b"h", EntryType::Link, b"in", b"")
        .entry(b"hs", EntryType::Link, b"s", b"")
        .finish();
    h.apply(&h.put(&tar, media_types::OCI_LAYER), &sandbox.root())
        .expect("inner hardlinks apply");
    assert_eq!(fs::read(sandbox.root().join("h")).expect("h"), b"inside");
    assert!(sandbox.root().join("hs").is_symlink());
    sandbox.assert_untouched();
}

#[test]
fn whiteouts_that_climb_are_refused() {
    let h = Harness::new();
    for (name, want) in [
        (&b".wh..."[..], Refusal::InvalidWhiteout),
        (b"d/.wh..", Refusal::InvalidWhiteout),
        (b".wh.", Refusal::InvalidWhiteout),
        (b"../.wh.sentinel", Refusal::ParentComponent),
        (
            b"up/.wh.sentinel",
            Refusal::SymlinkedParent {
                parent: "up".into(),
            },
        ),
        (
            b"up/.wh..wh..opq",
            Refusal::SymlinkedParent {
                parent: "up".into(),
            },
        ),
    ] {
        let sandbox = Sandbox::new();
        fs::create_dir(sandbox.root().join("d")).expect("d");
        fs::write(sandbox.root().join("d/kept"), b"kept").expect("kept");
        symlink(sandbox.outer(), sandbox.root().join("up")).expect("symlink");
        let tar = Tar::default().file(name, b"").finish();
        let entry = String::from_utf8_lossy(name);
        assert_eq!(h.refusal(&tar, &sandbox, &entry), want);
        sandbox.assert_untouched();
        assert_eq!(
            fs::read(sandbox.root().join("d/kept")).expect("kept"),
            b"kept"
        );
    }
}

#[test]
fn a_1_gib_pax_header_is_refused_before_it_is_read() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    // The header claims 1 GiB; only a few bytes follow. Reading it would fail as a
    // truncated layer, so the refusal shows it was never read.
    let mut tar = Tar::default();
    tar.header(b"PaxHeaders.0/f", EntryType::XHeader, b"", 1 << 30);
    tar.0.extend_from_slice(b"20 path=short-body\n");
    tar.pad().file(b"f", b"x");
    let tar = tar.finish();
    let want = Refusal::ExtensionHeaderTooLarge {
        size: 1 << 30,
        limit: 1 << 20,
    };
    let started = Instant::now();
    assert_eq!(h.refusal(&tar, &sandbox, "PaxHeaders.0/f"), want);
    // Compressed, where the stream could hold it.
    let desc = h.put(&gzip(&tar), media_types::OCI_LAYER_GZIP);
    let refusal = refusal_of(h.apply(&desc, &sandbox.root()), &desc, "PaxHeaders.0/f");
    assert_eq!(refusal, want);
    assert!(started.elapsed() < Duration::from_secs(10));
    sandbox.assert_untouched();
}

#[test]
fn a_gnu_long_name_over_1_mib_is_refused() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    let long = vec![b'n'; (1 << 20) + 1];
    let tar = Tar::default()
        .entry(b"././@LongLink", EntryType::GNULongName, b"", &long)
        .file(b"f", b"x")
        .finish();
    let desc = h.put(&gzip(&tar), media_types::OCI_LAYER_GZIP);
    let refusal = refusal_of(h.apply(&desc, &sandbox.root()), &desc, "././@LongLink");
    assert_eq!(
        refusal,
        Refusal::ExtensionHeaderTooLarge {
            size: (1 << 20) + 1,
            limit: 1 << 20
        }
    );
}

#[test]
fn names_and_xattrs_past_linux_limits_are_refused() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    // 17 components of NAME_MAX bytes: 4351 bytes with the slashes.
    let name = vec!["n".repeat(255); 17].join("/");
    let long = name.as_bytes().to_vec();
    let tar = Tar::default()
        .pax(&[(b"path", &long)])
        .file(b"f", b"")
        .finish();
    assert!(matches!(
        h.refusal(&tar, &sandbox, &name),
        Refusal::PathTooLong { limit: 4096, .. }
    ));
    let deep = vec!["d"; 1025].join("/");
    let tar = Tar::default()
        .pax(&[(b"path", deep.as_bytes())])
        .file(b"f", b"")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, &deep),
        Refusal::TooDeep {
            depth: 1025,
            limit: 1024
        }
    );
    let long_xattr = format!("user.{}", "x".repeat(251));
    let key = format!("SCHILY.xattr.{long_xattr}");
    let tar = Tar::default()
        .pax(&[(key.as_bytes(), b"v")])
        .file(b"f", b"")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, "f"),
        Refusal::XattrNameTooLong {
            name: long_xattr,
            limit: 255
        }
    );
    let big = vec![b'v'; (64 << 10) + 1];
    let tar = Tar::default()
        .pax(&[(b"SCHILY.xattr.user.big", &big)])
        .file(b"f", b"")
        .finish();
    assert_eq!(
        h.refusal(&tar, &sandbox, "f"),
        Refusal::XattrValueTooLarge {
            name: "user.big".into(),
            bytes: (64 << 10) + 1,
            limit: 64 << 10
        }
    );
    assert!(!sandbox.root().join("f").exists());
    sandbox.assert_untouched();
}

#[test]
fn a_gzip_bomb_is_refused_at_the_header_of_its_entry() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    // 5 GiB of zeros in ~5 MB: gzip members concatenate, so one member of 64 MiB of
    // zeros repeated 80 times follows a member holding the entry's header.
    let claimed: u64 = 80 << 26;
    let mut head = Tar::default();
    head.header(b"bomb", EntryType::Regular, b"", claimed);
    let mut blob = gzip(&head.0);
    let zeros = gzip(&vec![0u8; 64 << 20]);
    for _ in 0..80 {
        blob.extend_from_slice(&zeros);
    }
    blob.extend_from_slice(&gzip(&[0u8; 1024]));
    let desc = h.put(&blob, media_types::OCI_LAYER_GZIP);
    let started = Instant::now();
    let refusal = refusal_of(h.apply(&desc, &sandbox.root()), &desc, "bomb");
    assert_eq!(
        refusal,
        Refusal::PastTarLimit {
            end: 512 + claimed,
            limit: DecompressionLimit::DEFAULT.floor
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once"
    );
    assert!(
        !sandbox.root().join("bomb").exists(),
        "no byte of it was written"
    );
    sandbox.assert_untouched();
}

#[test]
fn a_stream_past_its_decompression_limit_is_refused() {
    let store = memory_store();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let limit = DecompressionLimit {
        ratio: 10,
        floor: 1 << 20,
    };
    let differ = WalkingDiffer::new(Arc::clone(&store)).with_decompression_limit(limit);
    let h = Harness { rt, store, differ };
    // Many small entries of zeros: the one whose data would pass 1 MiB is refused
    // at its header.
    let mut tar = Tar::default();
    for i in 0..64 {
        tar.file(format!("f{i:02}").as_bytes(), &[0u8; 64 << 10]);
    }
    let desc = h.put(&gzip(&tar.finish()), media_types::OCI_LAYER_GZIP);
    let sandbox = Sandbox::new();
    let refusal = refusal_of(h.apply(&desc, &sandbox.root()), &desc, "f15");
    assert!(
        matches!(refusal, Refusal::PastTarLimit { limit, .. } if limit == 1 << 20),
        "{refusal:?}"
    );
    assert!(sandbox.root().join("f14").exists() && !sandbox.root().join("f15").exists());
    // Zeros after the end-of-archive marker are read, and bounded, too.
    let mut tar = Tar::default().file(b"f", b"x").finish();
    tar.extend(vec![0u8; 8 << 20]);
    let desc = h.put(&gzip(&tar), media_types::OCI_LAYER_GZIP);
    let sandbox = Sandbox::new();
    match h.apply(&desc, &sandbox.root()) {
        Err(Error::TarTooLarge { layer, limit }) => {
            assert_eq!((layer, limit), (desc.digest.to_string(), 1 << 20))
        }
        other => panic!("expected TarTooLarge, got {other:?}"),
    }
    // The same layer within the default bound applies.
    let default = WalkingDiffer::new(Arc::clone(&h.store));
    let sandbox = Sandbox::new();
    h.rt.block_on(default.apply(&desc, &[Mount::bind(sandbox.root(), false)]))
        .expect("within the default bound");
}

#[test]
fn a_blob_longer_than_its_descriptor_is_not_read_past_its_size() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    // Data that does not compress, so the blob is far longer than the 4096 bytes
    // its descriptor will claim.
    let mut x: u32 = 1;
    let noise: Vec<u8> = (0..600 << 10)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    let tar = Tar::default().file(b"f", &noise).finish();
    let full = h.put(&gzip(&tar), media_types::OCI_LAYER_GZIP);
    let mut short = full.clone();
    short.size = 4096;
    match h.apply(&short, &sandbox.root()) {
        Err(Error::Content(strata_content::Error::SizeMismatch { expected, .. })) => {
            assert_eq!(expected, 4096)
        }
        other => panic!("expected the size to be enforced, got {other:?}"),
    }
    assert!(
        fs::metadata(sandbox.root().join("f")).map_or(true, |m| m.len() <= 4096),
        "no byte past the declared size was applied"
    );
}

#[test]
fn a_non_directory_entry_naming_the_root_is_refused() {
    let h = Harness::new();
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .entry(b"./", EntryType::Symlink, b"/", b"")
        .finish();
    assert_eq!(h.refusal(&tar, &sandbox, "./"), Refusal::Root);
    assert!(sandbox.root().is_dir() && !sandbox.root().is_symlink());
}
