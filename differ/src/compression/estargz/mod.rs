//! eStargz (containerd/stargz-snapshotter `docs/estargz.md`), written while the tar
//! streams through: a [`Write`] that reads the tar it is given as it goes (headers,
//! PAX and GNU extension records, payload sizes) and cuts the gzip stream into members
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
use toc::TocEntry;

/// The default eStargz chunk size: at most this many bytes of a file's payload in one
/// gzip member (`estargz.Writer`'s 4 MiB, BuildKit's `estargz-chunk-size` default).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

/// A tar header block.
const BLOCK: u64 = 512;

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
    /// Reading a header block.
    Header {
        block: Box<[u8; 512]>,
        filled: usize,
    },
    /// Reading an extension record's data: `size` bytes kept of `left` to read.
    Extension {
        kind: Extension,
        data: Vec<u8>,
        size: u64,
        left: u64,
    },
    /// Reading a regular file's payload.
    Payload(Box<Payload>),
    /// Passing `left` bytes through (padding, payloads of other entries).
    Skip { left: u64 },
    /// Past the end-of-archive block: everything passes through.
    End,
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

/// What extension records said about the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
    mtime: Option<i64>,
    xattrs: BTreeMap<String, String>,
}

/// A [`Write`] taking an uncompressed layer tar and writing it as eStargz.
pub(crate) struct EstargzEncoder<W: Write> {
    gz: ParallelGzEncoder<W>,
    chunk_size: u64,
    state: State,
    pending: Pending,
    entries: Vec<TocEntry>,
    /// The names last given for each uid and gid (`nameIfChanged`).
    user_names: BTreeMap<u64, String>,
    group_names: BTreeMap<u64, String>,
    /// Bytes of tar taken.
    taken: u64,
    /// Bytes written into the member now open.
    in_member: u64,
}

fn bad_tar(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("estargz: {what}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

impl<W: Write> EstargzEncoder<W> {
    /// An encoder at gzip `level` on `threads` threads, payload chunks of `chunk_size`
    /// bytes (at least 1).
    pub(crate) fn new(out: W, level: u32, threads: usize, chunk_size: u64) -> Self {
        EstargzEncoder {
            gz: ParallelGzEncoder::new(out, level, threads),
            chunk_size: chunk_size.max(1),
            state: State::Header {
                block: Box::new([0; 512]),
                filled: 0,
            },
            pending: Pending::default(),
            entries: Vec::new(),
            user_names: BTreeMap::new(),
            group_names: BTreeMap::new(),
            taken: 0,
            in_member: 0,
        }
    }

    /// Ends the member now open; the next byte begins the member returned.
    fn cut(&mut self) -> io::Result<usize> {
        self.in_member = 0;
        self.gz.end_member()
    }

    fn pass(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.in_member += bytes.len() as u64;
        self.gz.write_all(bytes)
    }

    /// Takes as much of `buf` as the current state wants; returns how much.
    fn take(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            State::Header { block, filled } => {
                let n = (512 - *filled).min(buf.len());
                block[*filled..*filled + n].copy_from_slice(&buf[..n]);
                *filled += n;
                let full = *filled == 512;
                self.pass(&buf[..n])?;
                if full {
                    let block = match std::mem::replace(&mut self.state, State::End) {
                        State::Header { block, .. } => block,
                        _ => return Err(bad_tar("lost its header".into())),
                    };
                    self.header(&block)?;
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
                        std::mem::replace(&mut self.state, Self::next_header())
                    {
                        self.extension(kind, &data)?;
                    }
                }
                Ok(n)
            }
            State::Payload(p) => {
                if p.in_chunk == self.chunk_size {
                    // A new chunk: its own member and TOC entry.
                    let name = self.entries[p.entry].name.clone();
                    let offset = p.done;
                    self.finish_chunk()?;
                    let member = self.cut()?;
                    self.entries.push(TocEntry {
                        name,
                        kind: "chunk",
                        chunk_offset: offset,
                        member: Some(member),
                        ..TocEntry::default()
                    });
                    if let State::Payload(p) = &mut self.state {
                        p.chunk_entry = self.entries.len() - 1;
                        p.in_chunk = 0;
                        p.chunk = Some(Digester::new());
                    }
                    return Ok(0);
                }
                let n = (self.chunk_size - p.in_chunk)
                    .min(p.size - p.done)
                    .min(buf.len() as u64) as usize;
                let bytes = &buf[..n];
                p.file.update(bytes);
                if let Some(c) = &mut p.chunk {
                    c.update(bytes);
                }
                p.done += n as u64;
                p.in_chunk += n as u64;
                let finished = p.done == p.size;
                self.pass(bytes)?;
                if finished {
                    self.finish_chunk()?;
                    let State::Payload(p) =
                        std::mem::replace(&mut self.state, State::Skip { left: 0 })
                    else {
                        return Err(bad_tar("lost its payload".into()));
                    };
                    self.entries[p.entry].digest = p.file.finish().to_string();
                    self.state = match padded(p.size) - p.size {
                        0 => Self::next_header(),
                        left => State::Skip { left },
                    };
                }
                Ok(n)
            }
            State::Skip { left } => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.state = Self::next_header();
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

    fn next_header() -> State {
        State::Header {
            block: Box::new([0; 512]),
            filled: 0,
        }
    }

    /// Sets the chunk's size and digest in its TOC entry.
    fn finish_chunk(&mut self) -> io::Result<()> {
        let State::Payload(p) = &mut self.state else {
            return Ok(());
        };
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

    /// A header block has been read.
    fn header(&mut self, block: &[u8; 512]) -> io::Result<()> {
        if block.iter().all(|&b| b == 0) {
            self.state = State::End;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(block);
        let pending = std::mem::take(&mut self.pending);
        let path = pending
            .path
            .clone()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let shown = text(&path);
        // An empty numeric field is 0, as Go's archive/tar reads it.
        let field = |what: &str, range: std::ops::Range<usize>, r: io::Result<u64>| {
            if block[range].iter().all(|&b| b == 0 || b == b' ') {
                return Ok(0);
            }
            r.map_err(|e| bad_tar(format!("the {what} of tar entry {shown:?}: {e}")))
        };
        let size = match pending.size {
            Some(s) => s,
            None => field("size", 124..136, header.entry_size())?,
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
            // Records before the same entry accumulate.
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
        let type_name = match kind {
            tar::EntryType::Regular => "reg",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            // Not an entry the TOC names (nor one Go's writer accepts): passed through.
            _ => {
                self.state = match padded(size) {
                    0 => Self::next_header(),
                    left => State::Skip { left },
                };
                return Ok(());
            }
        };
        let uid = match pending.uid {
            Some(u) => u,
            None => field("uid", 108..116, header.uid())?,
        };
        let gid = match pending.gid {
            Some(g) => g,
            None => field("gid", 116..124, header.gid())?,
        };
        let uname = pending
            .uname
            .or_else(|| header.username_bytes().map(<[u8]>::to_vec))
            .map(|n| text(&n))
            .unwrap_or_default();
        let gname = pending
            .gname
            .or_else(|| header.groupname_bytes().map(<[u8]>::to_vec))
            .map(|n| text(&n))
            .unwrap_or_default();
        let mtime = match pending.mtime {
            Some(m) => m,
            None => field("mtime", 136..148, header.mtime())? as i64,
        };
        let mut entry = TocEntry {
            name: text(&path),
            kind: type_name,
            mod_time: toc::mod_time(mtime),
            mode: field("mode", 100..108, header.mode().map(u64::from))?,
            uid,
            gid,
            user_name: name_if_changed(&mut self.user_names, uid, uname),
            group_name: name_if_changed(&mut self.group_names, gid, gname),
            xattrs: pending.xattrs,
            ..TocEntry::default()
        };
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                entry.link_name = pending
                    .link
                    .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
                    .map(|l| text(&l))
                    .unwrap_or_default();
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let dev = |range, r: io::Result<Option<u32>>| {
                    field("device number", range, r.map(|d| u64::from(d.unwrap_or(0))))
                };
                entry.dev_major = dev(329..337, header.device_major())?;
                entry.dev_minor = dev(337..345, header.device_minor())?;
            }
            _ => {}
        }
        if type_name != "reg" {
            self.entries.push(entry);
            self.state = match padded(size) {
                0 => Self::next_header(),
                left => State::Skip { left },
            };
            return Ok(());
        }
        entry.size = size;
        if size == 0 {
            entry.digest = Digester::new().finish().to_string();
            self.entries.push(entry);
            self.state = Self::next_header();
            return Ok(());
        }
        // The header ends its member; the payload starts a new one.
        entry.member = Some(self.cut()?);
        self.entries.push(entry);
        let index = self.entries.len() - 1;
        self.state = State::Payload(Box::new(Payload {
            entry: index,
            chunk_entry: index,
            size,
            done: 0,
            in_chunk: 0,
            file: Digester::new(),
            chunk: (size > self.chunk_size).then(Digester::new),
        }));
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
                    let key = record.key_bytes();
                    let value = record.value_bytes();
                    let number = || {
                        std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| {
                                bad_tar(format!("PAX record {}: {}", text(key), text(value)))
                            })
                    };
                    match key {
                        b"path" => self.pending.path = Some(value.to_vec()),
                        b"linkpath" => self.pending.link = Some(value.to_vec()),
                        b"size" => self.pending.size = Some(number()?),
                        b"uid" => self.pending.uid = Some(number()?),
                        b"gid" => self.pending.gid = Some(number()?),
                        b"uname" => self.pending.uname = Some(value.to_vec()),
                        b"gname" => self.pending.gname = Some(value.to_vec()),
                        b"mtime" => self.pending.mtime = pax_seconds(value),
                        _ => {
                            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                                self.pending
                                    .xattrs
                                    .insert(text(name), toc::xattr_value(value));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the layer: the last member, the TOC member and the footer.
    pub(crate) fn finish(mut self) -> io::Result<EstargzEnd<W>> {
        match &self.state {
            State::Header { filled: 0, .. } | State::End | State::Skip { .. } => {}
            _ => return Err(bad_tar("the tar ended inside an entry".into())),
        }
        if self.in_member > 0 {
            self.cut()?;
        }
        let toc_member = self.gz.current_member();
        self.gz.sync()?;
        let offsets = self.gz.member_offsets();
        for entry in &mut self.entries {
            if let Some(m) = entry.member {
                entry.offset = *offsets
                    .get(m)
                    .ok_or_else(|| io::Error::other("estargz: a member was not written"))?;
            }
        }
        let json = toc::toc_json(&self.entries)?;
        let toc_digest = Digest::sha256_of(&json);
        let appended = toc::toc_tar(&json)?;
        self.gz.write_all(&appended)?;
        let (mut out, offsets) = self.gz.finish_members()?;
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

/// A PAX time (`seconds[.fraction]`) rounded to the second, as Go's `Round(time.Second)`.
fn pax_seconds(value: &[u8]) -> Option<i64> {
    let v = std::str::from_utf8(value).ok()?;
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let mut secs: i64 = whole.parse().ok()?;
    let negative = whole.starts_with('-');
    if frac.as_bytes().first().is_some_and(|d| *d >= b'5') {
        secs += if negative { -1 } else { 1 };
    }
    Some(secs)
}

impl<W: Write> Write for EstargzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.take(rest)?;
            rest = &rest[n..];
        }
        self.taken += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
