//! Where an entry lands: a tar name split into components inside the root, and the
//! directories on its way resolved without ever following a symlink out of the root.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::ApplyState;
use crate::error::{io_err, Error, Result};
use crate::file_metadata::Stat;

/// Splits a tar name into its components, dropping `.` and empty ones; refuses
/// absolute names and `..`.
pub(super) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>> {
    let escapes = |reason: &str| Error::PathEscapes {
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason: reason.to_string(),
    };
    if raw.first() == Some(&b'/') {
        return Err(escapes("absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(escapes("\"..\" component")),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl ApplyState {
    /// The existing directory `root/comps`, `None` when a component is missing or not
    /// a directory; a symlinked component escapes.
    pub(super) fn existing_dir(&self, comps: &[&[u8]], raw: &[u8]) -> Result<Option<PathBuf>> {
        let mut p = self.root.clone();
        for c in comps {
            p.push(OsStr::from_bytes(c));
            match Stat::lstat_opt(&p) {
                Ok(Some(st)) if st.is_dir() => {}
                Ok(Some(st)) if st.is_symlink() => {
                    return Err(Error::PathEscapes {
                        entry: String::from_utf8_lossy(raw).into_owned(),
                        reason: format!("parent {} is a symlink", p.display()),
                    })
                }
                Ok(_) => return Ok(None),
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(p))
    }

    /// The directory `root/comps`, checking that no component is a symlink or a
    /// non-directory; missing ones are created (0755) when `create`.
    pub(super) fn safe_dir(
        &mut self,
        comps: &[&[u8]],
        raw: &[u8],
        create: bool,
    ) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for c in comps {
            p.push(OsStr::from_bytes(c));
            match Stat::lstat_opt(&p)? {
                Some(st) if st.is_dir() => {}
                Some(st) if st.is_symlink() => {
                    return Err(Error::PathEscapes {
                        entry: String::from_utf8_lossy(raw).into_owned(),
                        reason: format!("parent {} is a symlink", p.display()),
                    })
                }
                Some(_) => {
                    return Err(io_err(
                        &p,
                        io::Error::new(io::ErrorKind::NotADirectory, "a parent is not a directory"),
                    ))
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
                None => {
                    return Err(io_err(
                        &p,
                        io::Error::new(io::ErrorKind::NotFound, "hardlink target missing"),
                    ))
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        assert!(matches!(normalize(b"../x"), Err(Error::PathEscapes { .. })));
        assert!(matches!(
            normalize(b"a/../../x"),
            Err(Error::PathEscapes { .. })
        ));
        assert!(matches!(
            normalize(b"/etc/passwd"),
            Err(Error::PathEscapes { .. })
        ));
        assert_eq!(normalize(b"./a//b/").unwrap(), vec![&b"a"[..], &b"b"[..]]);
    }
}
