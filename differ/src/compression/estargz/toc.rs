//! The eStargz table of contents (`stargz.index.json`), its tar entry and the footer,
//! as containerd/stargz-snapshotter's `estargz` package writes them (`types.go`:
//! `JTOC`, `TOCEntry`, `FooterSize`; `gzip.go`: `WriteTOCAndFooter`,
//! `gzipFooterBytes`).

use std::collections::BTreeMap;
use std::io;

use base64::Engine as _;
use serde::Serialize;

/// The name of the TOC's tar entry (`estargz.TOCTarName`).
pub(super) const TOC_TAR_NAME: &str = "stargz.index.json";

/// The footer's size: an empty gzip member whose Extra field holds the TOC's offset.
pub(super) const FOOTER_SIZE: usize = 51;

/// The TOC (`estargz.JTOC`).
#[derive(Serialize)]
pub(super) struct Toc<'a> {
    pub(super) version: u32,
    pub(super) entries: &'a [TocEntry],
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One TOC entry (`estargz.TOCEntry`), fields in its order, empty ones left out as Go's
/// `omitempty` does.
#[derive(Serialize, Default)]
pub(super) struct TocEntry {
    /// The tar entry's name, as in the tar.
    pub(super) name: String,
    /// `dir`, `reg`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `chunk`.
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    /// A regular file's size.
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) size: u64,
    /// Modification time, UTC RFC 3339 to the second; empty for 0.
    #[serde(rename = "modtime", skip_serializing_if = "String::is_empty")]
    pub(super) mod_time: String,
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    pub(super) link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) gid: u64,
    /// Only on the first entry of a uid with this name (`nameIfChanged`).
    #[serde(rename = "userName", skip_serializing_if = "String::is_empty")]
    pub(super) user_name: String,
    #[serde(rename = "groupName", skip_serializing_if = "String::is_empty")]
    pub(super) group_name: String,
    /// Where the gzip member holding the chunk's first byte begins in the blob.
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) offset: u64,
    #[serde(rename = "devMajor", skip_serializing_if = "is_zero")]
    pub(super) dev_major: u64,
    #[serde(rename = "devMinor", skip_serializing_if = "is_zero")]
    pub(super) dev_minor: u64,
    /// Extended attributes, values base64 as Go encodes `[]byte`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) xattrs: BTreeMap<String, String>,
    /// sha256 of a regular file's whole payload.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) digest: String,
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    pub(super) chunk_offset: u64,
    /// The chunk's size; left out (0) for the last chunk of a file, which runs to its end.
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    pub(super) chunk_size: u64,
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    pub(super) chunk_digest: String,
    /// The index of the gzip member `offset` is the start of (resolved at the end).
    #[serde(skip)]
    pub(super) member: Option<usize>,
}

/// Base64 (standard, padded) of an xattr value, as Go's JSON encodes `[]byte`.
pub(super) fn xattr_value(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `formatModtime`: empty for the epoch, else UTC RFC 3339 to the second.
pub(super) fn mod_time(seconds: i64) -> String {
    if seconds == 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The TOC JSON as Go's `json.MarshalIndent(toc, "", "\t")` lays it out.
pub(super) fn toc_json(entries: &[TocEntry]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.len() * 200);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    Toc {
        version: 1,
        entries,
    }
    .serialize(&mut ser)
    .map_err(io::Error::other)?;
    Ok(out)
}

/// The TOC's tar entry (`stargz.index.json`, a regular file holding `json`) followed by
/// the end-of-archive blocks, as `WriteTOCAndFooter` writes it.
pub(super) fn toc_tar(json: &[u8]) -> io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(TOC_TAR_NAME)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(json.len() as u64);
    header.set_mode(0);
    header.set_mtime(0);
    header.set_cksum();
    let padded = json.len().div_ceil(512) * 512;
    let mut out = Vec::with_capacity(512 + padded + 1024);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(json);
    out.resize(512 + padded + 1024, 0);
    Ok(out)
}

/// The 51-byte footer (`gzipFooterBytes`): an empty, stored gzip member whose Extra
/// field is subfield `SG` holding `%016xSTARGZ` of the TOC member's offset.
pub(super) fn footer(toc_offset: u64) -> [u8; FOOTER_SIZE] {
    let mut out = [0u8; FOOTER_SIZE];
    // Magic, deflate, FEXTRA, mtime 0, XFL 0, OS 255 (as Go's compress/gzip).
    out[..10].copy_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255]);
    out[10..12].copy_from_slice(&26u16.to_le_bytes());
    out[12] = b'S';
    out[13] = b'G';
    out[14..16].copy_from_slice(&22u16.to_le_bytes());
    out[16..38].copy_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
    // An empty final stored block; CRC-32 and ISIZE of nothing are 0.
    out[38..43].copy_from_slice(&[1, 0, 0, 0xff, 0xff]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn footer_is_an_empty_gzip_member_naming_the_offset() {
        let f = footer(0x1234);
        let mut d = flate2::read::GzDecoder::new(&f[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("valid gzip");
        assert!(out.is_empty());
        let extra = d.header().and_then(|h| h.extra()).expect("extra field");
        assert_eq!(&extra[..4], b"SG\x16\x00");
        assert_eq!(&extra[4..], b"0000000000001234STARGZ");
    }

    #[test]
    fn mod_times_are_utc_seconds_or_nothing() {
        assert_eq!(mod_time(0), "");
        assert_eq!(mod_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn empty_fields_are_left_out_in_go_order() {
        let e = TocEntry {
            name: "a".into(),
            kind: "reg",
            size: 3,
            mode: 0o644,
            digest: "sha256:x".into(),
            ..TocEntry::default()
        };
        let json = String::from_utf8(toc_json(&[e]).expect("json")).expect("utf-8");
        assert_eq!(
            json,
            "{\n\t\"version\": 1,\n\t\"entries\": [\n\t\t{\n\t\t\t\"name\": \"a\",\n\t\t\t\"type\": \"reg\",\n\t\t\t\"size\": 3,\n\t\t\t\"mode\": 420,\n\t\t\t\"digest\": \"sha256:x\"\n\t\t}\n\t]\n}"
        );
    }
}
