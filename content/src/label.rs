//! Labels on content, leases and images: the [`Labels`] map, containerd's well-known
//! label keys, and field-path updates of labels (containerd's `fieldpaths`), shared by
//! every backend.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Labels on content, leases and images: sorted, so anything derived from them is
/// deterministic.
pub type Labels = BTreeMap<String, String>;

/// Well-known label keys (containerd's), re-exported as `strata_content::labels`.
pub mod well_known {
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
}

/// Applies containerd's label field paths: `labels` (or no paths at all) replaces every
/// label; `labels.<key>` sets that key from `new`, or removes it when `new` lacks it.
/// `extra` lists other paths the caller handles itself (they are skipped here).
/// Any other path is an `InvalidArgument` naming it.
pub(crate) fn apply_label_paths(
    current: &mut Labels,
    new: &Labels,
    fieldpaths: &[String],
    extra: &[&str],
) -> Result<()> {
    if fieldpaths.is_empty() {
        *current = new.clone();
        return Ok(());
    }
    for path in fieldpaths {
        if path == "labels" {
            *current = new.clone();
        } else if let Some(key) = path.strip_prefix("labels.") {
            if key.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "field path {path:?} names no label key"
                )));
            }
            match new.get(key) {
                Some(v) => {
                    current.insert(key.to_string(), v.clone());
                }
                None => {
                    current.remove(key);
                }
            }
        } else if !extra.contains(&path.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "cannot update field path {path:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_paths() {
        let mut cur: Labels = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let new: Labels = [("b".into(), "3".into()), ("c".into(), "4".into())].into();
        apply_label_paths(&mut cur, &new, &["labels.a".into(), "labels.c".into()], &[]).unwrap();
        assert_eq!(
            cur,
            [("b".into(), "2".into()), ("c".into(), "4".into())].into()
        );
        assert!(matches!(
            apply_label_paths(&mut cur, &new, &["size".into()], &[]),
            Err(Error::InvalidArgument(m)) if m.contains("size")
        ));
    }
}
