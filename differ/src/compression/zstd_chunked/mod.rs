//! zstd:chunked (containers/storage `pkg/chunked/compressor/compressor.go`), written
//! while the tar streams through: a [`Write`] that reads the tar it is given as it goes
//! and cuts the zstd stream into frames exactly where `writeZstdChunkedStream` does.
//! The headers (with the previous entry's padding) share a frame until a regular file
//! with a payload begins; the payload is cut into chunks by containers/storage's
//! rolling checksum (bup's rollsum, a 64-byte window, split where the low 16 bits of
//! `s2` are all ones) and around runs of at least 1 KiB of zeros (`zeros` chunks), each
//! chunk its own frame. After the tar (padding and end-of-archive in a last frame) come
//! the zstd-compressed TOC and tar-split, each in a skippable frame, and the 64-byte
//! footer in a third ([`toc`]).
//!
//! The blob decompresses as plain zstd to exactly the tar it was given (skippable
//! frames are skipped), so the diffID is the tar's. Frames are compressed in parallel
//! on the shared workers ([`frames`]); the bytes depend only on the tar and the level.

mod frames;
mod rollsum;
mod toc;

use std::collections::BTreeMap;
use std::io::{self, Write};

use strata_oci::{annotations, Digest, Digester};

use frames::FrameWriter;
use rollsum::Chunker;
use toc::{FileMetadata, TarSplit};

/// A tar header block.
const BLOCK: u64 = 512;

/// The kind of an extension record (its data applies to the next entry).
#[derive(Clone, Copy)]
enum Extension {
    Pax,
    GlobalPax,
    LongName,
    LongLink,
}

/// Where the tar being read is.
enum State {
    /// Reading a header block (`filled` bytes of it so far).
    Header { filled: usize },
    /// Reading an extension record's data: `size` bytes kept of `left` to read.
    Extension {
        kind: Extension,
        data: Vec<u8>,
        size: u64,
        left: u64,
    },
    /// Reading a regular file's payload.
    Payload(Box<Payload>),
    /// Passing `left` bytes of padding (or an unknown entry's data) through.
    Skip { left: u64 },
    /// Past the first end-of-archive block.
    End,
}

/// The regular file whose payload is being read.
struct Payload {
    /// Its TOC entry.
    entry: usize,
    /// Its name as the tar has it (tar-split's entry name).
    name: Vec<u8>,
    left: u64,
    size: u64,
    chunker: Chunker,
    digest: Digester,
    crc: toc::Crc64,
}

/// What extension records said about the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    records: BTreeMap<String, Vec<u8>>,
}

/// A TOC entry and the frames its payload went into.
struct Entry {
    meta: FileMetadata,
    /// The payload's chunks: (payload offset, size, frame, zeros).
    chunks: Vec<rollsum::ChunkRecord>,
}

/// A [`Write`] taking an uncompressed layer tar and writing it as zstd:chunked.
pub(crate) struct ZstdChunkedEncoder<W: Write> {
    frames: FrameWriter<W>,
    level: i32,
    state: State,
    block: Box<[u8; 512]>,
    pending: Pending,
    entries: Vec<Entry>,
    /// Raw tar bytes since the last payload (tar-split's next segment).
    segment: Vec<u8>,
    /// Where in `segment` the end-of-archive blocks begin, once seen.
    end_of_archive: Option<usize>,
    tar_split: TarSplit,
}

fn bad_tar(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd:chunked: {what}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// A numeric header field as Go's `archive/tar` reads it (empty is 0).
fn numeric(block: &[u8; 512], range: std::ops::Range<usize>, what: &str) -> io::Result<u64> {
    let field = &block[range];
    if field.iter().all(|&b| b == 0 || b == b' ') {
        return Ok(0);
    }
    if field[0] & 0x80 != 0 {
        // Base-256.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| bad_tar(format!("the {what} field overflows")))?;
        }
        return Ok(v);
    }
    let s = String::from_utf8_lossy(field);
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(s, 8).map_err(|e| bad_tar(format!("the {what} field {s:?}: {e}")))
}

/// A PAX time (`seconds[.fraction]`) as seconds and nanoseconds.
fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let v = std::str::from_utf8(value).ok()?;
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = whole.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if secs < 0 && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

impl<W: Write> ZstdChunkedEncoder<W> {
    /// An encoder at zstd `level` on `threads` threads.
    pub(crate) fn new(out: W, level: i32, threads: usize) -> io::Result<Self> {
        Ok(ZstdChunkedEncoder {
            frames: FrameWriter::new(out, level, threads),
            level,
            state: State::Header { filled: 0 },
            block: Box::new([0; 512]),
            pending: Pending::default(),
            entries: Vec::new(),
            segment: Vec::new(),
            end_of_archive: None,
            tar_split: TarSplit::new(level)?,
        })
    }

    /// Raw tar bytes outside payloads: the current frame and the tar-split segment.
    fn pass(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.segment.extend_from_slice(bytes);
        self.frames.write(bytes)
    }

    /// Takes as much of `buf` as the current state wants; returns how much.
    fn take(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            State::Header { filled } => {
                let start = *filled;
                let n = (512 - start).min(buf.len());
                self.block[start..start + n].copy_from_slice(&buf[..n]);
                *filled += n;
                let full = *filled == 512;
                self.pass(&buf[..n])?;
                if full {
                    self.header()?;
                }
                Ok(n)
            }
            State::Extension {
                kind,
                data,
                size,
                left,
            } => {
                let n = (*left).min(buf.len() as u64) as usize;
                let keep = (*size - data.len() as u64).min(n as u64) as usize;
                data.extend_from_slice(&buf[..keep]);
                *left -= n as u64;
                let finished = *left == 0;
                let kind = *kind;
                self.pass(&buf[..n])?;
                if finished {
                    if let State::Extension { data, .. } =
                        std::mem::replace(&mut self.state, State::Header { filled: 0 })
                    {
                        self.extension(kind, &data)?;
                    }
                }
                Ok(n)
            }
            State::Payload(p) => {
                let n = p.left.min(buf.len() as u64) as usize;
                let bytes = &buf[..n];
                p.digest.update(bytes);
                p.crc.update(bytes);
                p.chunker.feed(bytes, &mut self.frames)?;
                p.left -= n as u64;
                if p.left == 0 {
                    self.end_payload()?;
                }
                Ok(n)
            }
            State::Skip { left } => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Header { filled: 0 };
                }
                self.pass(&buf[..n])?;
                Ok(n)
            }
            State::End => {
                self.pass(buf)?;
                Ok(buf.len())
            }
        }
    }

    /// The payload has been read: its last chunk, digest and tar-split entry.
    fn end_payload(&mut self) -> io::Result<()> {
        let State::Payload(p) = std::mem::replace(&mut self.state, State::Header { filled: 0 })
        else {
            return Err(bad_tar("lost its payload".into()));
        };
        let p = *p;
        let chunks = p.chunker.finish(&mut self.frames)?;
        let entry = &mut self.entries[p.entry];
        entry.meta.digest = p.digest.finish().to_string();
        entry.chunks = chunks;
        self.tar_split.file(&p.name, p.size, Some(p.crc.value()))?;
        let pad = padded(p.size) - p.size;
        if pad > 0 {
            self.state = State::Skip { left: pad };
        }
        Ok(())
    }

    /// A header block has been read.
    fn header(&mut self) -> io::Result<()> {
        let block = *self.block;
        if block.iter().all(|&b| b == 0) {
            self.end_of_archive = Some(self.segment.len() - 512);
            self.state = State::End;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&block);
        let pending = std::mem::take(&mut self.pending);
        let path = pending
            .path
            .clone()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let shown = text(&path);
        let record_number = |key: &str| -> io::Result<Option<u64>> {
            match pending.records.get(key) {
                None => Ok(None),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Some)
                    .ok_or_else(|| bad_tar(format!("PAX record {key} of {shown:?}: {v:?}"))),
            }
        };
        let size = match record_number("size")? {
            Some(s) => s,
            None => numeric(&block, 124..136, "size")?,
        };
        let kind = header.entry_type();
        let extension = match kind {
            tar::EntryType::XHeader => Some(Extension::Pax),
            tar::EntryType::XGlobalHeader => Some(Extension::GlobalPax),
            tar::EntryType::GNULongName => Some(Extension::LongName),
            tar::EntryType::GNULongLink => Some(Extension::LongLink),
            _ => None,
        };
        if let Some(kind) = extension {
            self.pending = pending;
            if size > 1 << 20 {
                return Err(bad_tar(format!("an extension header of {size} bytes")));
            }
            self.state = State::Extension {
                kind,
                data: Vec::with_capacity(size as usize),
                size,
                left: padded(size),
            };
            return Ok(());
        }
        // A real entry: the raw bytes before it are a tar-split segment.
        self.tar_split.segment(&self.segment)?;
        self.segment.clear();
        let type_name = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            _ => "",
        };
        let header_only = type_name != "reg" && !type_name.is_empty();
        let time = |key: &str, range: Option<std::ops::Range<usize>>| -> io::Result<String> {
            if let Some((s, n)) = pending.records.get(key).and_then(|v| pax_time(v)) {
                return Ok(toc::go_time(s, n));
            }
            match range {
                Some(r) => Ok(toc::go_time(numeric(&block, r, key)? as i64, 0)),
                None => Ok(String::new()),
            }
        };
        let gnu = &block[257..265] == b"ustar  \0";
        let gnu_time = |r: std::ops::Range<usize>| (gnu && block[r.start] != 0).then_some(r);
        let xattrs = pending
            .records
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("SCHILY.xattr.")
                    .map(|name| (name.to_string(), toc::base64(v)))
            })
            .collect();
        let link = pending
            .link
            .clone()
            .or_else(|| pending.records.get("linkpath").cloned())
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
            .unwrap_or_default();
        let meta = FileMetadata {
            kind: type_name,
            name: shown.clone(),
            link_name: text(&link),
            mode: numeric(&block, 100..108, "mode")?,
            size,
            uid: record_number("uid")?.map_or_else(|| numeric(&block, 108..116, "uid"), Ok)?,
            gid: record_number("gid")?.map_or_else(|| numeric(&block, 116..124, "gid"), Ok)?,
            mod_time: time("mtime", Some(136..148))?,
            access_time: time("atime", gnu_time(345..357))?,
            change_time: time("ctime", gnu_time(357..369))?,
            dev_major: numeric(&block, 329..337, "devmajor")?,
            dev_minor: numeric(&block, 337..345, "devminor")?,
            xattrs,
            ..FileMetadata::default()
        };
        let payload = if header_only { 0 } else { size };
        if !type_name.is_empty() {
            self.entries.push(Entry {
                meta,
                chunks: Vec::new(),
            });
        }
        if type_name == "reg" && payload > 0 {
            // The headers' frame ends where the payload begins.
            self.frames.end_frame(false)?;
            self.state = State::Payload(Box::new(Payload {
                entry: self.entries.len() - 1,
                name: path,
                left: payload,
                size: payload,
                chunker: Chunker::new(payload),
                digest: Digester::new(),
                crc: toc::Crc64::new(),
            }));
            return Ok(());
        }
        let crc = (payload > 0).then(|| toc::Crc64::new().value());
        self.tar_split.file(&path, size, crc)?;
        self.state = match padded(payload) {
            0 => State::Header { filled: 0 },
            left => State::Skip { left },
        };
        Ok(())
    }

    /// An extension record has been read: what it says applies to the next entry.
    fn extension(&mut self, kind: Extension, data: &[u8]) -> io::Result<()> {
        let trimmed = |d: &[u8]| {
            let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
            d[..end].to_vec()
        };
        match kind {
            Extension::GlobalPax => {}
            Extension::LongName => self.pending.path = Some(trimmed(data)),
            Extension::LongLink => self.pending.link = Some(trimmed(data)),
            Extension::Pax => {
                for record in tar::PaxExtensions::new(data) {
                    let record = record.map_err(|e| bad_tar(format!("a PAX record: {e}")))?;
                    let key = text(record.key_bytes());
                    let value = record.value_bytes().to_vec();
                    if key == "path" {
                        self.pending.path = Some(value.clone());
                    }
                    self.pending.records.insert(key, value);
                }
            }
        }
        Ok(())
    }

    /// Ends the layer: the last frame, the TOC, the tar-split and the footer. Returns
    /// the inner writer and the descriptor's annotations.
    pub(crate) fn finish(mut self) -> io::Result<(W, BTreeMap<String, String>)> {
        match &self.state {
            State::Header { filled: 0 } | State::End | State::Skip { .. } => {}
            _ => return Err(bad_tar("the tar ended inside an entry".into())),
        }
        // tar-split's last segment ends with the end-of-archive blocks; what follows
        // comes in pieces of at most 1 MiB (`NewInputTarStream`).
        let segment = std::mem::take(&mut self.segment);
        let first = self
            .end_of_archive
            .map_or(segment.len(), |e| (e + 1024).min(segment.len()));
        self.tar_split.segment(&segment[..first])?;
        for piece in segment[first..].chunks(1 << 20) {
            self.tar_split.segment(piece)?;
        }
        let ZstdChunkedEncoder {
            frames,
            level,
            entries,
            tar_split,
            ..
        } = self;
        let end = frames.finish()?;
        let metadata = toc_entries(entries, &end.offsets, &end.digests)?;
        let tar_split = tar_split.finish()?;
        let mut json = Vec::with_capacity(metadata.len() * 256);
        toc::go_json(
            &toc::Toc {
                version: 1,
                entries: &metadata,
                tar_split_digest: Digest::sha256_of(&tar_split.compressed).to_string(),
            },
            &mut json,
        )?;
        let manifest = zstd::bulk::Compressor::new(level).and_then(|mut c| {
            c.include_checksum(true)?;
            c.compress(&json)
        })?;
        let frames_end = end.offsets.last().copied().unwrap_or(0);
        let positions = toc::Positions {
            manifest_offset: frames_end + 8,
            manifest_length: manifest.len() as u64,
            manifest_uncompressed: json.len() as u64,
            tar_split_offset: frames_end + 8 + manifest.len() as u64 + 8,
            tar_split_length: tar_split.compressed.len() as u64,
            tar_split_uncompressed: tar_split.uncompressed,
        };
        let mut tail = Vec::with_capacity(manifest.len() + tar_split.compressed.len() + 96);
        toc::skippable_frame(&mut tail, &manifest);
        toc::skippable_frame(&mut tail, &tar_split.compressed);
        toc::skippable_frame(&mut tail, &toc::footer(&positions));
        let mut out = end.out;
        out.write_all(&tail)?;
        out.flush()?;
        let p = &positions;
        let annotations = BTreeMap::from([
            (
                annotations::ZSTD_CHUNKED_MANIFEST_CHECKSUM.to_string(),
                Digest::sha256_of(&manifest).to_string(),
            ),
            (
                annotations::ZSTD_CHUNKED_MANIFEST_POSITION.to_string(),
                format!(
                    "{}:{}:{}:{}",
                    p.manifest_offset,
                    p.manifest_length,
                    p.manifest_uncompressed,
                    toc::MANIFEST_TYPE_CRFS
                ),
            ),
            (
                annotations::ZSTD_CHUNKED_TARSPLIT_POSITION.to_string(),
                format!(
                    "{}:{}:{}",
                    p.tar_split_offset, p.tar_split_length, p.tar_split_uncompressed
                ),
            ),
        ]);
        Ok((out, annotations))
    }
}

/// The TOC's entries: each regular file's offsets from its chunks' frames, and a
/// `chunk` entry after it for every chunk past the first when it has several.
fn toc_entries(
    entries: Vec<Entry>,
    offsets: &[u64],
    digests: &BTreeMap<usize, [u8; 32]>,
) -> io::Result<Vec<FileMetadata>> {
    let missing = || io::Error::other("zstd:chunked: a chunk's frame was not written");
    let offset = |frame: usize| offsets.get(frame).copied().ok_or_else(missing);
    let mut out = Vec::with_capacity(entries.len());
    for Entry { mut meta, chunks } in entries {
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            out.push(meta);
            continue;
        };
        meta.offset = offset(first.frame)?;
        meta.end_offset = offset(last.frame + 1)?;
        if chunks.len() == 1 {
            out.push(meta);
            continue;
        }
        let name = meta.name.clone();
        for (i, chunk) in chunks.iter().enumerate() {
            let digest = digests.get(&chunk.frame).ok_or_else(missing)?;
            let mut entry = if i == 0 {
                std::mem::take(&mut meta)
            } else {
                FileMetadata {
                    kind: "chunk",
                    name: name.clone(),
                    chunk_offset: chunk.offset,
                    ..FileMetadata::default()
                }
            };
            entry.chunk_size = chunk.size;
            entry.offset = offset(chunk.frame)?;
            entry.chunk_digest = format!("sha256:{}", hex(digest));
            entry.chunk_type = if chunk.zeros { "zeros" } else { "" };
            out.push(entry);
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<W: Write> Write for ZstdChunkedEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.take(rest)?;
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
