//! The rpm database, `rpmdb.sqlite` (rpm ≥ 4.16's sqlite backend): table
//! `Packages(hnum, blob)`, each blob one package's header.
//!
//! The header is parsed here by hand: the crates that read rpm headers read whole
//! `.rpm` files (lead, signature, then header with its magic), not the magic-less
//! header blobs the database holds, and none checks a hostile blob's counts. The blob
//! is `il` (entry count, u32 BE), `dl` (data length, u32 BE), `il` 16-byte entries
//! (tag, type, offset, count; BE) and `dl` bytes of data. Every count and offset is
//! checked against the blob before use ([`RpmHeaderError`]). BerkeleyDB (`Packages`)
//! and ndb (`Packages.db`) databases are not read.

use rusqlite::{Connection, OpenFlags, MAIN_DB};
use strata_oci::Digest;

use crate::error::{RpmHeaderError, SbomError};
use crate::package::{Package, PackageKind};

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_VENDOR: u32 = 1011;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's `HEADER_TAGS_MAX`.
const MAX_ENTRIES: u32 = 0xffff;
/// rpm's `HEADER_DATA_MAX` (256 MiB).
const MAX_DATA: u32 = 0x0fff_ffff;

/// The fields of one header strata reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RpmHeader {
    pub name: String,
    pub version: String,
    pub release: Option<String>,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub license: Option<String>,
    pub vendor: Option<String>,
    pub source_rpm: Option<String>,
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

/// Parses a header blob (see the module docs), refusing anything inconsistent.
pub(crate) fn parse_header(blob: &[u8]) -> Result<RpmHeader, RpmHeaderError> {
    let len = blob.len() as u64;
    if blob.len() < 8 {
        return Err(RpmHeaderError::Truncated { needed: 8, len });
    }
    let entries = be32(blob, 0);
    let data_len = be32(blob, 4);
    if entries > MAX_ENTRIES {
        return Err(RpmHeaderError::TooManyEntries(entries));
    }
    if data_len > MAX_DATA {
        return Err(RpmHeaderError::DataTooLarge(data_len));
    }
    let data_start = 8 + 16 * entries as u64;
    let needed = data_start + data_len as u64;
    if len < needed {
        return Err(RpmHeaderError::Truncated { needed, len });
    }
    let data = &blob[data_start as usize..needed as usize];
    let mut header = RpmHeader::default();
    let (mut name, mut version) = (None, None);
    for i in 0..entries as usize {
        let at = 8 + 16 * i;
        let (tag, ty, offset, count) = (
            be32(blob, at),
            be32(blob, at + 4),
            be32(blob, at + 8),
            be32(blob, at + 12),
        );
        let slot = match tag {
            TAG_NAME => &mut name,
            TAG_VERSION => &mut version,
            TAG_RELEASE => &mut header.release,
            TAG_ARCH => &mut header.arch,
            TAG_LICENSE => &mut header.license,
            TAG_VENDOR => &mut header.vendor,
            TAG_SOURCERPM => &mut header.source_rpm,
            TAG_EPOCH => {
                expect_type(tag, ty, TYPE_INT32)?;
                let bytes = value_bytes(data, tag, offset, 4)?;
                header.epoch = (count >= 1).then(|| be32(bytes, 0));
                continue;
            }
            _ => continue,
        };
        // rpm writes these as STRING; SUMMARY-like tags may be I18NSTRING (first
        // string is the C locale's).
        if ty != TYPE_STRING && ty != TYPE_I18NSTRING {
            return Err(RpmHeaderError::WrongType {
                tag,
                found: ty,
                expected: TYPE_STRING,
            });
        }
        *slot = Some(string_at(data, tag, offset)?);
    }
    header.name = name.ok_or(RpmHeaderError::MissingTag(TAG_NAME))?;
    header.version = version.ok_or(RpmHeaderError::MissingTag(TAG_VERSION))?;
    Ok(header)
}

fn expect_type(tag: u32, found: u32, expected: u32) -> Result<(), RpmHeaderError> {
    if found == expected {
        Ok(())
    } else {
        Err(RpmHeaderError::WrongType {
            tag,
            found,
            expected,
        })
    }
}

fn value_bytes(data: &[u8], tag: u32, offset: u32, len: usize) -> Result<&[u8], RpmHeaderError> {
    let start = offset as usize;
    let bad = RpmHeaderError::BadOffset {
        tag,
        offset,
        data_len: data.len() as u32,
    };
    let end = start.checked_add(len).ok_or(bad.clone())?;
    data.get(start..end).ok_or(bad)
}

fn string_at(data: &[u8], tag: u32, offset: u32) -> Result<String, RpmHeaderError> {
    let rest = data
        .get(offset as usize..)
        .filter(|r| !r.is_empty())
        .ok_or(RpmHeaderError::BadOffset {
            tag,
            offset,
            data_len: data.len() as u32,
        })?;
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or(RpmHeaderError::UnterminatedString(tag))?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The packages of an `rpmdb.sqlite` whose bytes are `db` (read from `path` of the
/// layer `layer`, which errors name). `gpg-pubkey` pseudo-packages (imported signing
/// keys, no architecture) are left out.
pub(crate) fn read_database(
    db: &[u8],
    path: &str,
    layer: &Digest,
) -> Result<Vec<Package>, SbomError> {
    let sqlite = |source| SbomError::RpmDatabase {
        layer: layer.clone(),
        path: path.to_string(),
        source,
    };
    let mut bytes = db.to_vec();
    // A WAL-mode database (file format bytes 18 and 19 = 2) cannot be opened from
    // memory; as rollback-journal mode (1) its pages read the same.
    if bytes.len() >= 20 && bytes[18] == 2 && bytes[19] == 2 {
        bytes[18] = 1;
        bytes[19] = 1;
    }
    let mut conn = Connection::open_with_flags(
        ":memory:",
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.deserialize_read_exact(MAIN_DB, &bytes[..], bytes.len(), true)
        .map_err(sqlite)?;
    let mut statement = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    let mut packages = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let hnum: i64 = row.get(0).map_err(sqlite)?;
        let blob = row.get_ref(1).map_err(sqlite)?;
        let blob = blob.as_blob().map_err(|e| sqlite(e.into()))?;
        let header = parse_header(blob).map_err(|source| SbomError::RpmHeader {
            layer: layer.clone(),
            path: path.to_string(),
            hnum,
            source,
        })?;
        if header.name == "gpg-pubkey" && header.arch.is_none() {
            continue;
        }
        let version = match &header.release {
            Some(release) => format!("{}-{release}", header.version),
            None => header.version.clone(),
        };
        packages.push(Package {
            kind: PackageKind::Rpm,
            name: header.name,
            version,
            epoch: header.epoch,
            arch: header.arch,
            license: header.license,
            source: header.source_rpm,
            supplier: header.vendor,
            layer: layer.clone(),
        });
    }
    Ok(packages)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header blob with `strings` (tag, value) and an optional epoch.
    pub(crate) fn header_blob(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut entries = Vec::new();
        let mut data = Vec::new();
        if let Some(epoch) = epoch {
            entries.push((TAG_EPOCH, TYPE_INT32, data.len() as u32, 1u32));
            data.extend_from_slice(&epoch.to_be_bytes());
        }
        for (tag, value) in strings {
            entries.push((*tag, TYPE_STRING, data.len() as u32, 1));
            data.extend_from_slice(value.as_bytes());
            data.push(0);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (tag, ty, offset, count) in entries {
            for word in [tag, ty, offset, count] {
                blob.extend_from_slice(&word.to_be_bytes());
            }
        }
        blob.extend_from_slice(&data);
        blob
    }

    #[test]
    fn a_header_is_read() {
        let blob = header_blob(
            &[
                (TAG_NAME, "bash"),
                (TAG_VERSION, "5.2.26"),
                (TAG_RELEASE, "1.fc40"),
                (TAG_ARCH, "x86_64"),
                (TAG_LICENSE, "GPL-3.0-or-later"),
            ],
            Some(2),
        );
        let header = parse_header(&blob).expect("header");
        assert_eq!(header.name, "bash");
        assert_eq!(header.release.as_deref(), Some("1.fc40"));
        assert_eq!(header.epoch, Some(2));
        assert_eq!(header.license.as_deref(), Some("GPL-3.0-or-later"));
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let blob = header_blob(&[(TAG_NAME, "bash"), (TAG_VERSION, "1")], None);
        for cut in [0, 7, 8, 20, blob.len() - 1] {
            assert!(
                matches!(
                    parse_header(&blob[..cut]),
                    Err(RpmHeaderError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut huge = blob.clone();
        huge[0..4].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        assert_eq!(
            parse_header(&huge),
            Err(RpmHeaderError::TooManyEntries(0x0100_0000))
        );
        let mut huge = blob.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse_header(&huge),
            Err(RpmHeaderError::DataTooLarge(u32::MAX))
        );
        // The first entry's offset points past the data.
        let mut bad = blob.clone();
        bad[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            parse_header(&bad),
            Err(RpmHeaderError::BadOffset { tag: TAG_NAME, .. })
        ));
        // The last string loses its NUL.
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] = b'x';
        assert_eq!(
            parse_header(&bad),
            Err(RpmHeaderError::UnterminatedString(TAG_VERSION))
        );
        let no_version = header_blob(&[(TAG_NAME, "bash")], None);
        assert_eq!(
            parse_header(&no_version),
            Err(RpmHeaderError::MissingTag(TAG_VERSION))
        );
    }
}
