//! eStargz (containerd/stargz-snapshotter `docs/estargz.md`), written while the tar
//! streams through: a [`Write`] that reads the tar it is given as it goes
//! ([`super::tar_stream`]) and cuts the gzip stream into members
//! exactly where stargz-snapshotter's `estargz.Writer` does (`estargz.go`,
//! `appendTar`): the member open when a non-empty regular file's header has been
//! written ends, the payload goes in members of at most the chunk size each (4 MiB by
//! default, `estargz.Writer.ChunkSize`), and the last chunk's member goes on with the
//! tar's padding and the next headers. At the end, the table of contents
//! (`stargz.index.json`, a tar entry and the end-of-archive blocks) is its own member,
//! then the 51-byte footer naming its offset ([`toc`]).
//!
//! The tar's own end-of-archive blocks stay where they are, before the TOC entry, as
//! BuildKit's `compression=estargz` (`AppendTarLossLess`) leaves them: ordinary tar
//! readers stop there and never see `stargz.index.json`.
//!
//! Members are compressed by [`ParallelGzEncoder`] on the shared workers, in blocks as
//! plain gzip is; the bytes depend only on the tar, the level and the chunk size.

mod toc;

use std::collections::BTreeMap;
use std::io::{self, Write};

use strata_oci::{Digest, Digester};

use super::gzip::ParallelGzEncoder;
use super::tar_stream::{Data, TarEntry, TarStream, TarVisitor};
use toc::TocEntry;

/// The default eStargz chunk size: at most this many bytes of a file's payload in one
/// gzip member (`estargz.Writer`'s 4 MiB, BuildKit's `estargz-chunk-size` default).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

/// What an [`EstargzEncoder`] adds to the layer when it ends.
pub(crate) struct EstargzEnd<W> {
    /// The inner writer, footer written.
    pub(crate) out: W,
    /// The uncompressed bytes appended to the tar (the TOC's entry and the
    /// end-of-archive): part of the decompressed stream, so of the diffID.
    pub(crate) appended: Vec<u8>,
    /// The digest of the TOC JSON (the `containerd.io/snapshot/stargz/toc.digest`
    /// annotation).
    pub(crate) toc_digest: Digest,
    /// The size of the whole decompressed stream.
    pub(crate) uncompressed_size: u64,
}

/// The regular file whose payload is being read.
struct Payload {
    /// Its TOC entry ("reg").
    entry: usize,
    /// The TOC entry of the chunk being read.
    chunk_entry: usize,
    size: u64,
    done: u64,
    /// Bytes read of the current chunk.
    in_chunk: u64,
    file: Digester,
    /// The chunk's own digest, when the file has more than one chunk.
    chunk: Option<Digester>,
}

/// A [`Write`] taking an uncompressed layer tar and writing it as eStargz.
pub(crate) struct EstargzEncoder<W: Write> {
    tar: TarStream,
    layer: Layer<W>,
    /// Bytes of tar taken.
    taken: u64,
}

/// What the tar becomes: gzip members and TOC entries.
struct Layer<W: Write> {
    gz: ParallelGzEncoder<W>,
    chunk_size: u64,
    entries: Vec<TocEntry>,
    payload: Option<Box<Payload>>,
    /// The names last given for each uid and gid (`nameIfChanged`).
    user_names: BTreeMap<u64, String>,
    group_names: BTreeMap<u64, String>,
    /// Bytes written into the member now open.
    in_member: u64,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lost_payload() -> io::Error {
    io::Error::other("estargz: a payload without its entry")
}

impl<W: Write> Layer<W> {
    /// Ends the member now open; the next byte begins the member returned.
    fn cut(&mut self) -> io::Result<usize> {
        self.in_member = 0;
        self.gz.end_member()
    }

    /// Sets the chunk's size and digest in its TOC entry.
    fn finish_chunk(&mut self) -> io::Result<()> {
        let p = self.payload.as_mut().ok_or_else(lost_payload)?;
        let multi = p.size > self.chunk_size;
        let entry = &mut self.entries[p.chunk_entry];
        // Go records the size of every full chunk; the last, shorter one runs to the
        // end of the file (chunkSize 0).
        if p.in_chunk == self.chunk_size {
            entry.chunk_size = p.in_chunk;
        }
        entry.chunk_digest = match p.chunk.take() {
            Some(c) if multi => c.finish().to_string(),
            _ => p.file.digest().to_string(),
        };
        Ok(())
    }

    /// Starts the file's next chunk: its own member and TOC entry.
    fn next_chunk(&mut self) -> io::Result<()> {
        self.finish_chunk()?;
        let member = self.cut()?;
        let p = self.payload.as_mut().ok_or_else(lost_payload)?;
        self.entries.push(TocEntry {
            name: self.entries[p.entry].name.clone(),
            kind: "chunk",
            chunk_offset: p.done,
            member: Some(member),
            ..TocEntry::default()
        });
        p.chunk_entry = self.entries.len() - 1;
        p.in_chunk = 0;
        p.chunk = Some(Digester::new());
        Ok(())
    }
}

impl<W: Write> TarVisitor for Layer<W> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.in_member += bytes.len() as u64;
        self.gz.write_all(bytes)
    }

    fn entry(&mut self, e: TarEntry) -> io::Result<Data> {
        let type_name = match e.kind {
            tar::EntryType::Regular => "reg",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            // Not an entry the TOC names (nor one Go's writer accepts): passed through.
            _ => return Ok(Data::Raw),
        };
        // Go's `Round(time.Second)`: halves round up.
        let (seconds, nanos) = e.mtime;
        let mtime = seconds + i64::from(nanos >= 500_000_000);
        let mut entry = TocEntry {
            name: text(&e.path),
            kind: type_name,
            mod_time: toc::mod_time(mtime),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            user_name: name_if_changed(&mut self.user_names, e.uid, text(&e.user_name)),
            group_name: name_if_changed(&mut self.group_names, e.gid, text(&e.group_name)),
            xattrs: e
                .xattrs
                .iter()
                .map(|(name, value)| (name.clone(), toc::xattr_value(value)))
                .collect(),
            ..TocEntry::default()
        };
        match e.kind {
            tar::EntryType::Symlink | tar::EntryType::Link => entry.link_name = text(&e.link),
            tar::EntryType::Char | tar::EntryType::Block => {
                entry.dev_major = e.dev_major;
                entry.dev_minor = e.dev_minor;
            }
            _ => {}
        }
        if type_name != "reg" {
            self.entries.push(entry);
            return Ok(Data::Raw);
        }
        entry.size = e.size;
        if e.size == 0 {
            entry.digest = Digester::new().finish().to_string();
            self.entries.push(entry);
            return Ok(Data::Raw);
        }
        // The header ends its member; the payload starts a new one.
        entry.member = Some(self.cut()?);
        self.entries.push(entry);
        let index = self.entries.len() - 1;
        self.payload = Some(Box::new(Payload {
            entry: index,
            chunk_entry: index,
            size: e.size,
            done: 0,
            in_chunk: 0,
            file: Digester::new(),
            chunk: (e.size > self.chunk_size).then(Digester::new),
        }));
        Ok(Data::Payload)
    }

    /// Payload bytes, in members of at most the chunk size.
    fn payload(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let p = self.payload.as_mut().ok_or_else(lost_payload)?;
            if p.in_chunk == self.chunk_size {
                self.next_chunk()?;
                continue;
            }
            let n = (self.chunk_size - p.in_chunk).min(bytes.len() as u64) as usize;
            let (now, rest) = bytes.split_at(n);
            p.file.update(now);
            if let Some(c) = &mut p.chunk {
                c.update(now);
            }
            p.done += n as u64;
            p.in_chunk += n as u64;
            self.raw(now)?;
            bytes = rest;
        }
        Ok(())
    }

    fn payload_end(&mut self) -> io::Result<()> {
        self.finish_chunk()?;
        let p = self.payload.take().ok_or_else(lost_payload)?;
        self.entries[p.entry].digest = p.file.finish().to_string();
        Ok(())
    }

    fn end_of_archive(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> EstargzEncoder<W> {
    /// An encoder at gzip `level` on `threads` threads, payload chunks of `chunk_size`
    /// bytes (at least 1).
    pub(crate) fn new(out: W, level: u32, threads: usize, chunk_size: u64) -> Self {
        EstargzEncoder {
            tar: TarStream::new("estargz"),
            layer: Layer {
                gz: ParallelGzEncoder::new(out, level, threads),
                chunk_size: chunk_size.max(1),
                entries: Vec::new(),
                payload: None,
                user_names: BTreeMap::new(),
                group_names: BTreeMap::new(),
                in_member: 0,
            },
            taken: 0,
        }
    }

    /// Ends the layer: the last member, the TOC member and the footer.
    pub(crate) fn finish(self) -> io::Result<EstargzEnd<W>> {
        self.tar.finish()?;
        let mut layer = self.layer;
        if layer.in_member > 0 {
            layer.cut()?;
        }
        let toc_member = layer.gz.current_member();
        layer.gz.sync()?;
        let offsets = layer.gz.member_offsets();
        for entry in &mut layer.entries {
            if let Some(m) = entry.member {
                entry.offset = *offsets
                    .get(m)
                    .ok_or_else(|| io::Error::other("estargz: a member was not written"))?;
            }
        }
        let json = toc::toc_json(&layer.entries)?;
        let toc_digest = Digest::sha256_of(&json);
        let appended = toc::toc_tar(&json)?;
        layer.gz.write_all(&appended)?;
        let (mut out, offsets) = layer.gz.finish_members()?;
        let toc_offset = *offsets
            .get(toc_member)
            .ok_or_else(|| io::Error::other("estargz: the TOC member was not written"))?;
        out.write_all(&toc::footer(toc_offset))?;
        out.flush()?;
        Ok(EstargzEnd {
            out,
            uncompressed_size: self.taken + appended.len() as u64,
            appended,
            toc_digest,
        })
    }
}

/// `nameIfChanged`: the name, unless it is the one last recorded for `id`.
fn name_if_changed(names: &mut BTreeMap<u64, String>, id: u64, name: String) -> String {
    if name.is_empty() || names.get(&id) == Some(&name) {
        return String::new();
    }
    names.insert(id, name.clone());
    name
}

impl<W: Write> Write for EstargzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tar.write(buf, &mut self.layer)?;
        self.taken += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
