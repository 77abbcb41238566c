//! Field-path updates of labels (containerd's `fieldpaths`), shared by every backend.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::store::Labels;

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

/// Nanoseconds since the Unix epoch (saturating), for storage.
pub(crate) fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_nanos`].
pub(crate) fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// The id of a lease being created, by the rules every backend follows: `requested`,
/// or a new UUID when none is requested; an empty id is an `InvalidArgument`. For
/// [`LeaseManager::create_lease`](crate::LeaseManager::create_lease) implementations
/// outside this crate (the containerd backend).
pub fn new_lease_id(requested: Option<&str>) -> Result<String> {
    match requested {
        Some("") => Err(Error::InvalidArgument("empty lease id".into())),
        Some(id) => Ok(id.to_string()),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// Whether labels carry `containerd.io/gc.expire` with an RFC 3339 time before `now`.
/// A value that does not parse never expires (containerd ignores it too).
pub(crate) fn lease_expired(labels: &Labels, now: SystemTime) -> bool {
    let Some(v) = labels.get(crate::store::labels::GC_EXPIRE) else {
        return false;
    };
    match time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let now = time::OffsetDateTime::from(now);
            t < now
        }
        Err(_) => false,
    }
}

/// Applies image field paths (`target`, `labels`, `labels.<key>`; none means all) of
/// `new` onto a copy of `current`, stamping `updated_at`.
pub(crate) fn apply_image_paths(
    current: &crate::store::Image,
    new: &crate::store::Image,
    fieldpaths: &[String],
) -> Result<crate::store::Image> {
    let mut out = current.clone();
    if fieldpaths.is_empty() {
        out.target = new.target.clone();
        out.labels = new.labels.clone();
    } else {
        apply_label_paths(&mut out.labels, &new.labels, fieldpaths, &["target"])?;
        if fieldpaths.iter().any(|p| p == "target") {
            out.target = new.target.clone();
        }
    }
    out.updated_at = SystemTime::now();
    Ok(out)
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

    #[test]
    fn expiry() {
        let mut l = Labels::new();
        assert!(!lease_expired(&l, SystemTime::now()));
        l.insert(
            crate::store::labels::GC_EXPIRE.into(),
            "2001-02-03T04:05:06Z".into(),
        );
        assert!(lease_expired(&l, SystemTime::now()));
        l.insert(
            crate::store::labels::GC_EXPIRE.into(),
            "2999-02-03T04:05:06+02:00".into(),
        );
        assert!(!lease_expired(&l, SystemTime::now()));
    }
}
