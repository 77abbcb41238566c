//! containerd's well-known label keys, and the GC reference labels that tie a blob to
//! the blobs it references.

/// Marks content (or an image's target) as a GC root.
pub const GC_ROOT: &str = "containerd.io/gc.root";
/// `containerd.io/gc.ref.content` and any key that starts with
/// `containerd.io/gc.ref.content.` name a digest the labelled blob references.
pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// On a compressed layer blob: the digest of its uncompressed tar (the diffID).
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// On a lease: an RFC 3339 time after which the lease expires.
pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// On a lease: the lease is a flat lease (resources are not followed) when set.
pub const GC_FLAT: &str = "containerd.io/gc.flat";
/// Prefix of the content label listing, per registry host, the repositories a blob is
/// known to be in (`containerd.io/distribution.source.<host>=<repo>[,<repo>…]`), as
/// containerd's pull writes it; a push mounts from those repositories instead of
/// uploading.
pub const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source";
/// Prefix of the config label naming the snapshot an image was unpacked to, per
/// snapshotter (`containerd.io/gc.ref.snapshot.<snapshotter>=<chainID>`).
pub const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";

/// The label key by which a blob references its `i`th child
/// (`containerd.io/gc.ref.content.<i>`), numbered as BuildKit and containerd number
/// them: a manifest's config is 0 and its layers follow; an index's manifests from 0.
pub fn gc_ref_label(i: usize) -> String {
    format!("{GC_REF_CONTENT}.{i}")
}

/// The config label key naming the snapshot an image is unpacked to in `snapshotter`
/// (`containerd.io/gc.ref.snapshot.<snapshotter>`), which keeps that snapshot (and
/// its parents) from containerd's GC.
pub fn gc_ref_snapshot_label(snapshotter: &str) -> String {
    format!("{GC_REF_SNAPSHOT}.{snapshotter}")
}

/// Whether `key` is a content reference label (`containerd.io/gc.ref.content` or
/// `containerd.io/gc.ref.content.<anything>`), whose value is a digest GC follows.
pub fn is_gc_ref_content(key: &str) -> bool {
    key == GC_REF_CONTENT
        || key
            .strip_prefix(GC_REF_CONTENT)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_labels() {
        assert_eq!(gc_ref_label(3), "containerd.io/gc.ref.content.3");
        assert!(is_gc_ref_content(&gc_ref_label(0)));
        assert!(is_gc_ref_content("containerd.io/gc.ref.content.l.1"));
        assert!(is_gc_ref_content(GC_REF_CONTENT));
        assert!(!is_gc_ref_content("containerd.io/gc.ref.contents"));
        assert!(!is_gc_ref_content(GC_ROOT));
    }
}
