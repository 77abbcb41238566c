//! Labels on content, leases and images: the [`Labels`] map and field-path updates of
//! labels (containerd's `fieldpaths`), shared by every backend. containerd's
//! well-known label keys are `strata_oci::labels`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Labels on content, leases and images: sorted, so anything derived from them is
/// deterministic.
pub type Labels = BTreeMap<String, String>;

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
