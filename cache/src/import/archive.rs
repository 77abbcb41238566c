//! [`TarArchive`]: a tar file indexed once (entry name → byte range), whose entries are
//! then read in place as bounded readers over the file — no extraction to disk. The
//! `oci-archive` and `docker-archive` sources are both served from one.

use std::collections::BTreeMap;
use std::io::{self, SeekFrom};
use std::path::{Component, Path, PathBuf};

use strata_oci::{Compression, Digest, Digester};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

/// How many symlinks a name may go through before it is refused (loops).
const MAX_LINK_HOPS: usize = 8;

/// A tar file's regular entries by normalized name (no `./` or leading `/`), each a
/// byte range of the file. Symlinks and hardlinks to entries inside the archive are
/// followed (older `docker save` links repeated layers); anything else is not served.
#[derive(Clone, Debug)]
pub(crate) struct TarArchive {
    file: PathBuf,
    files: BTreeMap<String, Range>,
    links: BTreeMap<String, String>,
}

/// Where an entry's data is in the archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub offset: u64,
    pub size: u64,
}

impl TarArchive {
    /// Indexes `file` by reading its headers (seeking over the data). Blocking: call it
    /// on a blocking thread. The error says which entry of the file is malformed.
    pub(crate) fn index(file: &Path) -> Result<TarArchive, String> {
        let reader = std::fs::File::open(file)
            .map_err(|e| format!("opening archive {}: {e}", file.display()))?;
        let mut archive = tar::Archive::new(io::BufReader::new(reader));
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| format!("reading archive {}: {e}", file.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading archive {}: {e}", file.display()))?;
            let raw = entry
                .path()
                .map_err(|e| format!("archive {}: an entry name: {e}", file.display()))?;
            let Some(name) = normalize(&raw) else {
                return Err(format!(
                    "archive {}: entry {} escapes the archive",
                    file.display(),
                    raw.display()
                ));
            };
            let kind = entry.header().entry_type();
            if kind.is_file() || kind.is_contiguous() {
                files.insert(
                    name,
                    Range {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().and_then(|target| {
                    if kind.is_symlink() {
                        // Relative to the link's directory.
                        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                        normalize(&dir.join(target))
                    } else {
                        normalize(&target)
                    }
                });
                if let Some(target) = target {
                    links.insert(name, target);
                }
            }
        }
        Ok(TarArchive {
            file: file.to_path_buf(),
            files,
            links,
        })
    }

    /// The archive file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Where the regular file `name` (following links inside the archive) is.
    pub(crate) fn entry(&self, name: &str) -> Option<Range> {
        let mut name = normalize(Path::new(name))?;
        for _ in 0..=MAX_LINK_HOPS {
            if let Some(range) = self.files.get(&name) {
                return Some(*range);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// A reader of the entry's bytes (at most its size); `None` when there is no such
    /// entry.
    pub(crate) async fn open(
        &self,
        name: &str,
    ) -> io::Result<Option<(Range, Box<dyn AsyncRead + Send + Unpin>)>> {
        let Some(range) = self.entry(name) else {
            return Ok(None);
        };
        let mut file = tokio::fs::File::open(&self.file).await?;
        file.seek(SeekFrom::Start(range.offset)).await?;
        Ok(Some((range, Box::new(file.take(range.size)))))
    }

    /// The entry `name`'s compression (from its first bytes: gzip or zstd magic, else a
    /// plain tar) and, for a compressed entry, its digest (hashed while streaming over
    /// the file). Blocking: call it on a blocking thread.
    pub(crate) fn sniff(&self, name: &str) -> io::Result<Option<(Compression, Option<Digest>)>> {
        use std::io::{Read, Seek};
        let Some(range) = self.entry(name) else {
            return Ok(None);
        };
        let mut file = std::fs::File::open(&self.file)?;
        file.seek(SeekFrom::Start(range.offset))?;
        let mut entry = file.take(range.size);
        let mut magic = [0u8; 4];
        let mut seen = 0;
        while seen < magic.len() {
            let n = entry.read(&mut magic[seen..])?;
            if n == 0 {
                break;
            }
            seen += n;
        }
        let compression = match &magic[..seen] {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => return Ok(Some((Compression::Uncompressed, None))),
        };
        let mut digester = Digester::new();
        digester.update(&magic[..seen]);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
        }
        Ok(Some((compression, Some(digester.finish()))))
    }

    /// The whole entry `name`, refused when larger than `limit`; `Ok(None)` when there
    /// is no such entry, `Err` naming it when it is too large or unreadable.
    pub(crate) async fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let opened = self
            .open(name)
            .await
            .map_err(|e| format!("reading {name} in archive {}: {e}", self.file.display()))?;
        let Some((range, mut reader)) = opened else {
            return Ok(None);
        };
        if range.size > limit {
            return Err(format!(
                "{name} in archive {} is {} bytes, more than the limit of {limit}",
                self.file.display(),
                range.size
            ));
        }
        let mut bytes = Vec::with_capacity(range.size as usize);
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("reading {name} in archive {}: {e}", self.file.display()))?;
        if bytes.len() as u64 != range.size {
            return Err(format!(
                "{name} in archive {} is truncated ({} of {} bytes)",
                self.file.display(),
                bytes.len(),
                range.size
            ));
        }
        Ok(Some(bytes))
    }
}

/// `path` as a name relative to the archive root (`./a/../b` → `b`); `None` when it
/// climbs out of the root.
pub(crate) fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_string()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_inside_the_root() {
        assert_eq!(normalize(Path::new("./a/b")).as_deref(), Some("a/b"));
        assert_eq!(normalize(Path::new("/a/./c/../b")).as_deref(), Some("a/b"));
        assert_eq!(normalize(Path::new("a/../../etc/passwd")), None);
    }

    #[tokio::test]
    async fn entries_are_read_in_place_and_links_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, name, data).unwrap();
        };
        add("./first/layer.tar", b"one");
        add("second", &vec![7u8; 3000]);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        builder
            .append_link(&mut h, "again/layer.tar", "../first/layer.tar")
            .unwrap();
        builder.into_inner().unwrap();

        let archive = TarArchive::index(&path).unwrap();
        assert_eq!(
            archive.read("first/layer.tar", 10).await.unwrap().unwrap(),
            b"one"
        );
        assert_eq!(
            archive.read("again/layer.tar", 10).await.unwrap().unwrap(),
            b"one"
        );
        assert_eq!(
            archive.read("second", 4096).await.unwrap().unwrap(),
            vec![7u8; 3000]
        );
        assert!(archive
            .read("second", 10)
            .await
            .unwrap_err()
            .contains("limit"));
        assert!(archive.read("missing", 10).await.unwrap().is_none());
    }
}
