//! Where an entry lands: a tar name split into components inside the root (refused
//! when it escapes or passes a limit), and the directories on its way resolved without
//! ever following a symlink.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::{ApplyState, EntryFailure};
use crate::error::{io_err, Error, Refusal};
use crate::file_metadata::Stat;

/// The longest name, in bytes (Linux `PATH_MAX`, `<linux/limits.h>`).
pub(super) const MAX_PATH_BYTES: usize = 4096;
/// The longest name component, in bytes (Linux `NAME_MAX`, `<linux/limits.h>`).
pub(super) const MAX_COMPONENT_BYTES: usize = 255;
/// The most components in a name. `PATH_MAX` alone allows 2048; no peer bounds depth,
/// real trees stay within some tens of levels (nested `node_modules`), and every
/// entry costs one `lstat` per level.
pub(super) const MAX_DEPTH: usize = 1024;

/// Splits a tar name into its components, dropping `.` and empty ones; refuses
/// absolute names, `..`, NUL bytes, and names past the length and depth limits.
pub(super) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    if raw.first() == Some(&b'/') {
        return Err(Refusal::AbsoluteName);
    }
    if raw.contains(&0) {
        return Err(Refusal::NulInName);
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Refusal::ParentComponent),
            c => {
                if c.len() > MAX_COMPONENT_BYTES {
                    return Err(Refusal::ComponentTooLong {
                        bytes: c.len(),
                        limit: MAX_COMPONENT_BYTES,
                    });
                }
                bytes += c.len() + usize::from(!out.is_empty());
                out.push(c);
            }
        }
    }
    if bytes > MAX_PATH_BYTES {
        return Err(Refusal::PathTooLong {
            bytes,
            limit: MAX_PATH_BYTES,
        });
    }
    if out.len() > MAX_DEPTH {
        return Err(Refusal::TooDeep {
            depth: out.len(),
            limit: MAX_DEPTH,
        });
    }
    Ok(out)
}

/// The refusal of a symlink met at `comps[..=i]`.
fn symlinked(comps: &[&[u8]], i: usize) -> EntryFailure {
    EntryFailure::Refused(Refusal::SymlinkedParent {
        parent: String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned(),
    })
}

impl ApplyState {
    /// The existing directory `root/comps`, `None` when a component is missing or not
    /// a directory; a symlinked component is refused.
    pub(super) fn existing_dir(&self, comps: &[&[u8]]) -> Result<Option<PathBuf>, EntryFailure> {
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            match Stat::lstat_opt(&p) {
                Ok(Some(st)) if st.is_dir() => {}
                Ok(Some(st)) if st.is_symlink() => return Err(symlinked(comps, i)),
                Ok(_) => return Ok(None),
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(p))
    }

    /// The directory `root/comps`, refusing a component that is a symlink; missing
    /// ones are created (0755) when `create`, else refused as a missing (hardlink)
    /// target.
    pub(super) fn safe_dir(
        &mut self,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<PathBuf, EntryFailure> {
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            match Stat::lstat_opt(&p)? {
                Some(st) if st.is_dir() => {}
                Some(st) if st.is_symlink() => return Err(symlinked(comps, i)),
                Some(_) => {
                    return Err(io_err(
                        &p,
                        io::Error::new(io::ErrorKind::NotADirectory, "a parent is not a directory"),
                    )
                    .into())
                }
                None if create => {
                    if let Some(up) = p.parent() {
                        let up = up.to_path_buf();
                        self.remember(&up)?;
                    }
                    fs::create_dir(&p).map_err(|e| io_err(&p, e))?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                        .map_err(|e| io_err(&p, e))?;
                }
                None => return Err(EntryFailure::Refused(Refusal::TargetMissing)),
            }
        }
        Ok(p)
    }

    /// Where the hardlink entry `comps` may link to `target`: an existing
    /// non-directory inside the root, reached through no symlink, other than the entry.
    pub(super) fn hardlink_target(
        &mut self,
        comps: &[&[u8]],
        target: &[u8],
    ) -> Result<PathBuf, EntryFailure> {
        let tcomps = normalize(target)?;
        let Some((tbase, tparents)) = tcomps.split_last() else {
            return Err(Refusal::Root.into());
        };
        if tcomps == comps {
            return Err(Refusal::TargetIsTheEntry.into());
        }
        let tpath = self
            .safe_dir(tparents, false)?
            .join(OsStr::from_bytes(tbase));
        match Stat::lstat_opt(&tpath)? {
            None => Err(Refusal::TargetMissing.into()),
            Some(st) if st.is_dir() => Err(Refusal::TargetIsDirectory.into()),
            Some(_) => Ok(tpath),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_pass_a_limit_are_refused() {
        assert_eq!(normalize(b"../x"), Err(Refusal::ParentComponent));
        assert_eq!(normalize(b"a/../../x"), Err(Refusal::ParentComponent));
        assert_eq!(normalize(b"/etc/passwd"), Err(Refusal::AbsoluteName));
        assert_eq!(normalize(b"a\0b"), Err(Refusal::NulInName));
        assert_eq!(normalize(b"./a//b/").unwrap(), vec![&b"a"[..], &b"b"[..]]);
        let long = vec![b'n'; 256];
        assert_eq!(
            normalize(&long),
            Err(Refusal::ComponentTooLong {
                bytes: 256,
                limit: 255
            })
        );
        // 17 components of 255 bytes: 4351 bytes with the slashes.
        let path = vec![vec![b'n'; 255]; 17].join(&b'/');
        assert!(matches!(
            normalize(&path),
            Err(Refusal::PathTooLong { bytes: 4351, .. })
        ));
        // Exactly at the limits: accepted.
        let mut at_limit = vec![vec![b'n'; 255]; 15].join(&b'/');
        at_limit.push(b'/');
        at_limit.extend(vec![b'n'; 254]);
        at_limit.extend_from_slice(b"/x");
        assert_eq!(at_limit.len(), MAX_PATH_BYTES);
        assert_eq!(normalize(&at_limit).unwrap().len(), 17);
        let deep = vec![&b"d"[..]; 1025].join(&b'/');
        assert_eq!(
            normalize(&deep),
            Err(Refusal::TooDeep {
                depth: 1025,
                limit: 1024
            })
        );
        assert_eq!(normalize(&deep[2..]).unwrap().len(), 1024);
    }
}
