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

use super::tar_stream::{Data, TarEntry, TarStream, TarVisitor, Time};

use frames::FrameWriter;
use rollsum::Chunker;
use toc::{FileMetadata, TarSplit};

/// The regular file whose payload is being read.
struct Payload {
    /// Its TOC entry.
    entry: usize,
    /// Its name as the tar has it (tar-split's entry name).
    name: Vec<u8>,
    size: u64,
    chunker: Chunker,
    digest: Digester,
    crc: toc::Crc64,
}

/// A TOC entry and the frames its payload went into.
struct Entry {
    meta: FileMetadata,
    /// The payload's chunks: (payload offset, size, frame, zeros).
    chunks: Vec<rollsum::ChunkRecord>,
}

/// A [`Write`] taking an uncompressed layer tar and writing it as zstd:chunked.
pub(crate) struct ZstdChunkedEncoder<W: Write> {
    tar: TarStream,
    layer: Layer<W>,
}

/// What the tar becomes: frames, TOC entries and the tar-split.
struct Layer<W: Write> {
    frames: FrameWriter<W>,
    level: i32,
    entries: Vec<Entry>,
    payload: Option<Box<Payload>>,
    /// Raw tar bytes since the last payload (tar-split's next segment).
    segment: Vec<u8>,
    /// Where in `segment` the end-of-archive blocks begin, once seen.
    end_of_archive: Option<usize>,
    tar_split: TarSplit,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl<W: Write> TarVisitor for Layer<W> {
    /// Raw tar bytes go into the current frame and the tar-split segment.
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.segment.extend_from_slice(bytes);
        self.frames.write(bytes)
    }

    fn entry(&mut self, entry: TarEntry) -> io::Result<Data> {
        // The raw bytes before a real entry are a tar-split segment.
        self.tar_split.segment(&self.segment)?;
        self.segment.clear();
        let type_name = match entry.kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            _ => "",
        };
        let time = |t: Option<Time>| t.map_or_else(String::new, |(s, n)| toc::go_time(s, n));
        let data = entry.data_size();
        let meta = FileMetadata {
            kind: type_name,
            name: text(&entry.path),
            link_name: text(&entry.link),
            mode: entry.mode,
            size: entry.size,
            uid: entry.uid,
            gid: entry.gid,
            mod_time: time(Some(entry.mtime)),
            access_time: time(entry.atime),
            change_time: time(entry.ctime),
            dev_major: entry.dev_major,
            dev_minor: entry.dev_minor,
            xattrs: entry
                .xattrs
                .iter()
                .map(|(name, value)| (name.clone(), toc::base64(value)))
                .collect(),
            ..FileMetadata::default()
        };
        if !type_name.is_empty() {
            self.entries.push(Entry {
                meta,
                chunks: Vec::new(),
            });
        }
        if type_name == "reg" && data > 0 {
            // The headers' frame ends where the payload begins.
            self.frames.end_frame(false)?;
            self.payload = Some(Box::new(Payload {
                entry: self.entries.len() - 1,
                name: entry.path,
                size: data,
                chunker: Chunker::new(data),
                digest: Digester::new(),
                crc: toc::Crc64::new(),
            }));
            return Ok(Data::Payload);
        }
        let crc = (data > 0).then(|| toc::Crc64::new().value());
        self.tar_split.file(&entry.path, entry.size, crc)?;
        Ok(Data::Raw)
    }

    fn payload(&mut self, bytes: &[u8]) -> io::Result<()> {
        let p = self
            .payload
            .as_mut()
            .ok_or_else(|| io::Error::other("zstd:chunked: a payload without its entry"))?;
        p.digest.update(bytes);
        p.crc.update(bytes);
        p.chunker.feed(bytes, &mut self.frames)
    }

    /// The payload's last chunk, digest and tar-split entry.
    fn payload_end(&mut self) -> io::Result<()> {
        let p = *self
            .payload
            .take()
            .ok_or_else(|| io::Error::other("zstd:chunked: a payload without its entry"))?;
        let chunks = p.chunker.finish(&mut self.frames)?;
        let entry = &mut self.entries[p.entry];
        entry.meta.digest = p.digest.finish().to_string();
        entry.chunks = chunks;
        self.tar_split.file(&p.name, p.size, Some(p.crc.value()))
    }

    fn end_of_archive(&mut self) -> io::Result<()> {
        self.end_of_archive = Some(self.segment.len() - 512);
        Ok(())
    }
}

impl<W: Write> ZstdChunkedEncoder<W> {
    /// An encoder at zstd `level` on `threads` threads.
    pub(crate) fn new(out: W, level: i32, threads: usize) -> io::Result<Self> {
        Ok(ZstdChunkedEncoder {
            tar: TarStream::new("zstd:chunked"),
            layer: Layer {
                frames: FrameWriter::new(out, level, threads),
                level,
                entries: Vec::new(),
                payload: None,
                segment: Vec::new(),
                end_of_archive: None,
                tar_split: TarSplit::new(level)?,
            },
        })
    }

    /// Ends the layer: the last frame, the TOC, the tar-split and the footer. Returns
    /// the inner writer and the descriptor's annotations.
    pub(crate) fn finish(self) -> io::Result<(W, BTreeMap<String, String>)> {
        self.tar.finish()?;
        let Layer {
            frames,
            level,
            entries,
            segment,
            end_of_archive,
            mut tar_split,
            ..
        } = self.layer;
        // tar-split's last segment ends with the end-of-archive blocks; what follows
        // comes in pieces of at most 1 MiB (`NewInputTarStream`).
        let first = end_of_archive.map_or(segment.len(), |e| (e + 1024).min(segment.len()));
        tar_split.segment(&segment[..first])?;
        for piece in segment[first..].chunks(1 << 20) {
            tar_split.segment(piece)?;
        }
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
        self.tar.write(buf, &mut self.layer)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
