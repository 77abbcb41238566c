//! The metadata of a zstd:chunked layer as containers/storage writes it
//! (`pkg/chunked/internal/minimal/compression.go`: `TOC`, `FileMetadata`,
//! `WriteZstdChunkedManifest`, `footerDataToBlob`), and the tar-split stream
//! (vbatts/tar-split `tar/storage`: `Entry`, the JSON packer, crc64-ISO payload sums).

use std::collections::BTreeMap;
use std::io::{self, Write};

use base64::Engine as _;
use serde::Serialize;

/// The footer's size (`FooterSizeSupported`), inside its own skippable frame.
pub(super) const FOOTER_SIZE: usize = 64;

/// The footer's magic (`ZstdChunkedFrameMagic`, "GNUlInUx").
const FOOTER_MAGIC: [u8; 8] = *b"GNUlInUx";

/// A zstd skippable frame's magic (0x184D2A50, little-endian).
const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];

/// The manifest type of a CRFS-like TOC (`ManifestTypeCRFS`).
pub(super) const MANIFEST_TYPE_CRFS: u64 = 1;

/// The TOC (`minimal.TOC`).
#[derive(Serialize)]
pub(super) struct Toc<'a> {
    pub(super) version: u32,
    pub(super) entries: &'a [FileMetadata],
    #[serde(rename = "tarSplitDigest", skip_serializing_if = "String::is_empty")]
    pub(super) tar_split_digest: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One TOC entry (`minimal.FileMetadata`), fields in its order, empty ones left out as
/// Go's `omitempty` does.
#[derive(Serialize, Default, Clone)]
pub(super) struct FileMetadata {
    /// `reg`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `chunk`.
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) name: String,
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    pub(super) link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) gid: u64,
    /// RFC 3339 with nanoseconds, as Go marshals a `time.Time`.
    #[serde(rename = "modtime", skip_serializing_if = "String::is_empty")]
    pub(super) mod_time: String,
    #[serde(rename = "accesstime", skip_serializing_if = "String::is_empty")]
    pub(super) access_time: String,
    #[serde(rename = "changetime", skip_serializing_if = "String::is_empty")]
    pub(super) change_time: String,
    #[serde(rename = "devMajor", skip_serializing_if = "is_zero")]
    pub(super) dev_major: u64,
    #[serde(rename = "devMinor", skip_serializing_if = "is_zero")]
    pub(super) dev_minor: u64,
    /// Values base64, as `NewFileMetadata` encodes them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) xattrs: BTreeMap<String, String>,
    /// sha256 of a regular file's payload; empty for an empty file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) digest: String,
    /// Where the frame holding the payload (or the chunk) begins in the blob.
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) offset: u64,
    /// Where the frame of the payload's last chunk ends.
    #[serde(rename = "endOffset", skip_serializing_if = "is_zero")]
    pub(super) end_offset: u64,
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    pub(super) chunk_size: u64,
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    pub(super) chunk_offset: u64,
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    pub(super) chunk_digest: String,
    /// `zeros` for a run of zeros; empty for data.
    #[serde(rename = "chunkType", skip_serializing_if = "str::is_empty")]
    pub(super) chunk_type: &'static str,
}

/// Go's `encoding/json` string escaping: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes
/// (HTML-safe), control characters other than `\n`, `\r`, `\t` as `\u00XX`.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Scanned as bytes: U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut from = 0;
        while let Some(found) = bytes[from..]
            .iter()
            .position(|&b| matches!(b, b'<' | b'>' | b'&' | 0xe2))
        {
            let at = from + found;
            let (escaped, len): (&[u8], usize) = match (bytes[at], bytes.get(at + 1..at + 3)) {
                (b'<', _) => (b"\\u003c", 1),
                (b'>', _) => (b"\\u003e", 1),
                (b'&', _) => (b"\\u0026", 1),
                (_, Some([0x80, 0xa8])) => (b"\\u2028", 3),
                (_, Some([0x80, 0xa9])) => (b"\\u2029", 3),
                _ => {
                    from = at + 1;
                    continue;
                }
            };
            writer.write_all(&bytes[start..at])?;
            writer.write_all(escaped)?;
            start = at + len;
            from = start;
        }
        writer.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape::*;
        let s: &[u8] = match escape {
            Quote => b"\\\"",
            ReverseSolidus => b"\\\\",
            LineFeed => b"\\n",
            CarriageReturn => b"\\r",
            Tab => b"\\t",
            Backspace => b"\\u0008",
            FormFeed => b"\\u000c",
            AsciiControl(byte) => {
                return write!(writer, "\\u{byte:04x}");
            }
            Solidus => b"/",
        };
        writer.write_all(s)
    }
}

/// `value` as Go's `json.Marshal` writes it (compact, HTML-safe).
pub(super) fn go_json<T: Serialize>(value: &T, out: &mut Vec<u8>) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, GoFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// A Unix time as Go's `time.Time` marshals in UTC: RFC 3339, fraction only when not
/// zero and without trailing zeros.
pub(super) fn go_time(seconds: i64, nanos: u32) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(seconds) else {
        return String::new();
    };
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Base64 (standard, padded), as Go's JSON encodes `[]byte`.
pub(super) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One tar-split entry (`storage.Entry`): a raw segment (type 2) or a file (type 1).
#[derive(Serialize)]
struct TarSplitEntry<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    payload: Option<String>,
    position: u64,
}

/// The tar-split stream, zstd-compressed as it is written (`tarSplitData`).
pub(super) struct TarSplit {
    zstd: zstd::stream::write::Encoder<'static, Vec<u8>>,
    position: u64,
    uncompressed: u64,
    line: Vec<u8>,
}

/// The finished tar-split: compressed bytes and the uncompressed length.
pub(super) struct TarSplitEnd {
    pub(super) compressed: Vec<u8>,
    pub(super) uncompressed: u64,
}

impl TarSplit {
    /// A tar-split stream compressed at zstd `level`.
    pub(super) fn new(level: i32) -> io::Result<Self> {
        let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), level)?;
        zstd.include_checksum(true)?;
        Ok(TarSplit {
            zstd,
            position: 0,
            uncompressed: 0,
            line: Vec::with_capacity(4096),
        })
    }

    fn add(&mut self, entry: TarSplitEntry<'_>) -> io::Result<()> {
        self.line.clear();
        go_json(&entry, &mut self.line)?;
        self.line.push(b'\n');
        self.uncompressed += self.line.len() as u64;
        self.position += 1;
        self.zstd.write_all(&self.line)
    }

    /// A raw segment of the tar (headers, padding, the end of the archive).
    pub(super) fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let position = self.position;
        self.add(TarSplitEntry {
            kind: 2,
            name: "",
            name_raw: None,
            size: 0,
            payload: Some(base64(bytes)),
            position,
        })
    }

    /// A tar entry: its name, size and (for a payload) the crc64-ISO of the payload.
    pub(super) fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) -> io::Result<()> {
        let position = self.position;
        let (name, name_raw) = match std::str::from_utf8(name) {
            Ok(n) => (n, None),
            Err(_) => ("", Some(base64(name))),
        };
        self.add(TarSplitEntry {
            kind: 1,
            name,
            name_raw,
            size,
            payload: crc.map(|c| base64(&c.to_be_bytes())),
            position,
        })
    }

    /// Ends the stream.
    pub(super) fn finish(self) -> io::Result<TarSplitEnd> {
        Ok(TarSplitEnd {
            compressed: self.zstd.finish()?,
            uncompressed: self.uncompressed,
        })
    }
}

/// CRC-64 with the ISO polynomial as Go's `hash/crc64` computes it (reflected,
/// initial and final value all ones), the tar-split payload checksum. `crc-fast`
/// computes it with carry-less multiplication, ten times the speed of a table.
pub(super) struct Crc64(crc_fast::Digest);

impl Crc64 {
    /// A checksum of nothing yet.
    pub(super) fn new() -> Self {
        Crc64(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso))
    }

    /// Adds `bytes`.
    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The checksum.
    pub(super) fn value(&self) -> u64 {
        self.0.finalize()
    }
}

/// `bytes` in a zstd skippable frame (`appendZstdSkippableFrame`).
pub(super) fn skippable_frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&SKIPPABLE_MAGIC);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Where the TOC and the tar-split are, as the footer and the annotations say.
pub(super) struct Positions {
    pub(super) manifest_offset: u64,
    pub(super) manifest_length: u64,
    pub(super) manifest_uncompressed: u64,
    pub(super) tar_split_offset: u64,
    pub(super) tar_split_length: u64,
    pub(super) tar_split_uncompressed: u64,
}

/// The 64-byte footer (`footerDataToBlob`): seven little-endian u64s and the magic.
pub(super) fn footer(p: &Positions) -> [u8; FOOTER_SIZE] {
    let mut out = [0u8; FOOTER_SIZE];
    let fields = [
        p.manifest_offset,
        p.manifest_length,
        p.manifest_uncompressed,
        MANIFEST_TYPE_CRFS,
        p.tar_split_offset,
        p.tar_split_length,
        p.tar_split_uncompressed,
    ];
    for (i, v) in fields.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    out[56..].copy_from_slice(&FOOTER_MAGIC);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_go_iso() {
        // CRC-64/GO-ISO check value.
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xb909_56c7_75a4_1001);
        // The same, however the bytes are handed over.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut whole = Crc64::new();
        whole.update(&data);
        let mut pieces = Crc64::new();
        for piece in data.chunks(3) {
            pieces.update(piece);
        }
        assert_eq!(whole.value(), pieces.value());
    }

    #[test]
    fn times_are_go_rfc3339_nano() {
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            go_time(1_700_000_000, 500_000_000),
            "2023-11-14T22:13:20.5Z"
        );
    }

    #[test]
    fn json_escapes_like_go() {
        let mut out = Vec::new();
        go_json(
            &"a<b>&c\u{8}\u{1}\u{2028}\u{2029}\u{2027}\u{20ac}>",
            &mut out,
        )
        .expect("json");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\"a\\u003cb\\u003e\\u0026c\\u0008\\u0001\\u2028\\u2029\u{2027}\u{20ac}\\u003e\""
        );
    }

    #[test]
    fn tar_split_lines_are_tar_splits() {
        let mut ts = TarSplit::new(3).expect("tar-split");
        ts.segment(b"hdr").expect("segment");
        ts.file(b"a/b", 3, Some(1)).expect("file");
        ts.file(b"d/", 0, None).expect("file");
        let end = ts.finish().expect("finish");
        let text = zstd::decode_all(&end.compressed[..]).expect("zstd");
        assert_eq!(end.uncompressed, text.len() as u64);
        assert_eq!(
            String::from_utf8(text).expect("utf-8"),
            "{\"type\":2,\"payload\":\"aGRy\",\"position\":0}\n\
             {\"type\":1,\"name\":\"a/b\",\"size\":3,\"payload\":\"AAAAAAAAAAE=\",\"position\":1}\n\
             {\"type\":1,\"name\":\"d/\",\"payload\":null,\"position\":2}\n"
        );
    }
}
