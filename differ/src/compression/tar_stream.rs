//! A tar read as it streams through an encoder, for the lazy-pull formats (eStargz,
//! zstd:chunked), which cut their compressed stream where the tar's entries and
//! payloads are and describe each entry in a table of contents. [`TarStream`] takes
//! the tar in pieces of any size and tells a [`TarVisitor`] what each byte is: raw
//! bytes (headers, extension records, padding, the end of the archive), an entry (its
//! header with the PAX and GNU extension records before it applied, as Go's
//! `archive/tar` reads it), and the entry's payload.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;

/// A tar header block.
const BLOCK: u64 = 512;

/// The size of `size` bytes of data with their padding.
pub(super) fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// A time as seconds and nanoseconds since the epoch (`nanos` < 10⁹, also before it).
pub(super) type Time = (i64, u32);

/// An entry of the tar: its header with the extension records before it applied.
pub(super) struct TarEntry {
    pub(super) kind: tar::EntryType,
    /// The name as the tar has it (PAX `path`, else a GNU long name, else the header's).
    pub(super) path: Vec<u8>,
    /// The link target (PAX `linkpath`, else a GNU long link, else the header's).
    pub(super) link: Vec<u8>,
    /// The size of the entry's data (PAX `size`, else the header's).
    pub(super) size: u64,
    pub(super) mode: u64,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) user_name: Vec<u8>,
    pub(super) group_name: Vec<u8>,
    pub(super) mtime: Time,
    /// PAX `atime`, else a GNU header's (when set).
    pub(super) atime: Option<Time>,
    /// PAX `ctime`, else a GNU header's (when set).
    pub(super) ctime: Option<Time>,
    pub(super) dev_major: u64,
    pub(super) dev_minor: u64,
    /// The PAX `SCHILY.xattr.` records: names without the prefix, raw values.
    pub(super) xattrs: BTreeMap<String, Vec<u8>>,
}

impl TarEntry {
    /// The size of the entry's data in the stream: Go's `archive/tar` reads none for
    /// links, directories, devices and FIFOs, whatever size their header gives.
    pub(super) fn data_size(&self) -> u64 {
        use tar::EntryType::*;
        match self.kind {
            Link | Symlink | Char | Block | Directory | Fifo => 0,
            _ => self.size,
        }
    }
}

/// What becomes of an entry's data, as the visitor decides when it sees the entry.
pub(super) enum Data {
    /// Handed to [`TarVisitor::payload`], then [`TarVisitor::payload_end`] (neither
    /// is called for an entry without data).
    Payload,
    /// Handed to [`TarVisitor::raw`] like padding.
    Raw,
}

/// What a [`TarStream`] tells about the tar, in the tar's order.
pub(super) trait TarVisitor {
    /// Bytes outside any payload: header blocks (before the entry they begin is
    /// told), extension records, padding, data of entries told [`Data::Raw`], the
    /// end-of-archive blocks and whatever follows them.
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// An entry, after its header block went to [`TarVisitor::raw`]; says what its
    /// data (if it has any) is.
    fn entry(&mut self, entry: TarEntry) -> io::Result<Data>;

    /// The next bytes of the payload of the last entry told.
    fn payload(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// The payload has ended (its padding comes next, as raw bytes).
    fn payload_end(&mut self) -> io::Result<()>;

    /// The first end-of-archive block has gone to [`TarVisitor::raw`].
    fn end_of_archive(&mut self) -> io::Result<()>;
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
    /// Reading a header block (`filled` bytes of it so far).
    Header { filled: usize },
    /// Reading an extension record's data: `size` bytes kept of `left` to read.
    Extension {
        kind: Extension,
        data: Vec<u8>,
        size: u64,
        left: u64,
    },
    /// Reading a payload: `left` bytes of `size`.
    Payload { left: u64, size: u64 },
    /// Passing `left` raw bytes (padding, data told raw).
    Skip { left: u64 },
    /// Past the first end-of-archive block.
    End,
}

/// What extension records said about the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    records: BTreeMap<String, Vec<u8>>,
}

/// Reads a tar streaming through an encoder named `format` (in errors).
pub(super) struct TarStream {
    format: &'static str,
    state: State,
    block: Box<[u8; 512]>,
    pending: Pending,
}

impl TarStream {
    /// A reader at the start of a tar.
    pub(super) fn new(format: &'static str) -> Self {
        TarStream {
            format,
            state: State::Header { filled: 0 },
            block: Box::new([0; 512]),
            pending: Pending::default(),
        }
    }

    fn bad_tar(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", self.format),
        )
    }

    /// Reads the next bytes of the tar, telling `visitor` what they are.
    pub(super) fn write<V: TarVisitor>(
        &mut self,
        mut buf: &[u8],
        visitor: &mut V,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.take(buf, visitor)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Checks the tar did not end inside an entry.
    pub(super) fn finish(&self) -> io::Result<()> {
        match &self.state {
            State::Header { filled: 0 } | State::End | State::Skip { .. } => Ok(()),
            _ => Err(self.bad_tar("the tar ended inside an entry".into())),
        }
    }

    /// Takes as much of `buf` as the current state wants; returns how much.
    fn take<V: TarVisitor>(&mut self, buf: &[u8], visitor: &mut V) -> io::Result<usize> {
        match &mut self.state {
            State::Header { filled } => {
                let start = *filled;
                let n = (512 - start).min(buf.len());
                self.block[start..start + n].copy_from_slice(&buf[..n]);
                *filled += n;
                let full = *filled == 512;
                visitor.raw(&buf[..n])?;
                if full {
                    self.header(visitor)?;
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
                let kind = *kind;
                visitor.raw(&buf[..n])?;
                if let State::Extension { left: 0, .. } = self.state {
                    if let State::Extension { data, .. } =
                        std::mem::replace(&mut self.state, State::Header { filled: 0 })
                    {
                        self.extension(kind, &data)?;
                    }
                }
                Ok(n)
            }
            State::Payload { left, size } => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                let (left, size) = (*left, *size);
                visitor.payload(&buf[..n])?;
                if left == 0 {
                    visitor.payload_end()?;
                    self.state = Self::skip(padded(size) - size);
                }
                Ok(n)
            }
            State::Skip { left } => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Header { filled: 0 };
                }
                visitor.raw(&buf[..n])?;
                Ok(n)
            }
            State::End => {
                visitor.raw(buf)?;
                Ok(buf.len())
            }
        }
    }

    /// Passing `left` raw bytes, then the next header.
    fn skip(left: u64) -> State {
        match left {
            0 => State::Header { filled: 0 },
            left => State::Skip { left },
        }
    }

    /// A numeric header field as Go's `archive/tar` reads it (empty is 0).
    fn numeric(&self, range: Range<usize>, what: &str) -> io::Result<u64> {
        let field = &self.block[range];
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
                    .ok_or_else(|| self.bad_tar(format!("the {what} field overflows")))?;
            }
            return Ok(v);
        }
        let s = String::from_utf8_lossy(field);
        let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
        u64::from_str_radix(s, 8).map_err(|e| self.bad_tar(format!("the {what} field {s:?}: {e}")))
    }

    /// A header block has been read.
    fn header<V: TarVisitor>(&mut self, visitor: &mut V) -> io::Result<()> {
        if self.block.iter().all(|&b| b == 0) {
            self.state = State::End;
            return visitor.end_of_archive();
        }
        let pending = std::mem::take(&mut self.pending);
        let record = |key: &str| pending.records.get(key);
        let header = tar::Header::from_byte_slice(&self.block[..]);
        let path = record("path")
            .or(pending.long_name.as_ref())
            .cloned()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let number = |key: &str, range: Range<usize>| -> io::Result<u64> {
            match record(key) {
                None => self.numeric(range, key),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        self.bad_tar(format!(
                            "PAX record {key} of {:?}: {:?}",
                            String::from_utf8_lossy(&path),
                            String::from_utf8_lossy(v)
                        ))
                    }),
            }
        };
        let size = number("size", 124..136)?;
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
                return Err(self.bad_tar(format!("an extension header of {size} bytes")));
            }
            self.state = State::Extension {
                kind,
                data: Vec::with_capacity(size as usize),
                size,
                left: padded(size),
            };
            return Ok(());
        }
        let time = |key: &str, range: Option<Range<usize>>| -> io::Result<Option<Time>> {
            if let Some(t) = record(key).and_then(|v| pax_time(v)) {
                return Ok(Some(t));
            }
            range
                .map(|r| Ok((self.numeric(r, key)? as i64, 0)))
                .transpose()
        };
        // A GNU header's access and change times, when set.
        let gnu = &self.block[257..265] == b"ustar  \0";
        let gnu_time = |r: Range<usize>| (gnu && self.block[r.start] != 0).then_some(r);
        let text_field = |key: &str, header_value: Option<&[u8]>| {
            record(key)
                .map(Vec::as_slice)
                .or(header_value)
                .unwrap_or_default()
                .to_vec()
        };
        let entry = TarEntry {
            kind,
            link: record("linkpath")
                .or(pending.long_link.as_ref())
                .cloned()
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
                .unwrap_or_default(),
            size,
            mode: self.numeric(100..108, "mode")?,
            uid: number("uid", 108..116)?,
            gid: number("gid", 116..124)?,
            user_name: text_field("uname", header.username_bytes()),
            group_name: text_field("gname", header.groupname_bytes()),
            mtime: time("mtime", Some(136..148))?.unwrap_or_default(),
            atime: time("atime", gnu_time(345..357))?,
            ctime: time("ctime", gnu_time(357..369))?,
            dev_major: self.numeric(329..337, "devmajor")?,
            dev_minor: self.numeric(337..345, "devminor")?,
            xattrs: pending
                .records
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("SCHILY.xattr.")
                        .map(|name| (name.to_string(), v.clone()))
                })
                .collect(),
            path,
        };
        let data = entry.data_size();
        self.state = match visitor.entry(entry)? {
            Data::Payload if data > 0 => State::Payload {
                left: data,
                size: data,
            },
            Data::Payload | Data::Raw => Self::skip(padded(data)),
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
            Extension::LongName => self.pending.long_name = Some(trimmed(data)),
            Extension::LongLink => self.pending.long_link = Some(trimmed(data)),
            Extension::Pax => {
                for record in tar::PaxExtensions::new(data) {
                    let record = record.map_err(|e| self.bad_tar(format!("a PAX record: {e}")))?;
                    let key = String::from_utf8_lossy(record.key_bytes()).into_owned();
                    self.pending
                        .records
                        .insert(key, record.value_bytes().to_vec());
                }
            }
        }
        Ok(())
    }
}

/// A PAX time (`seconds[.fraction]`) as seconds and nanoseconds.
fn pax_time(value: &[u8]) -> Option<Time> {
    let v = std::str::from_utf8(value).ok()?;
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = whole.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if whole.starts_with('-') && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes down what it is told.
    #[derive(Default)]
    struct Record {
        raw: usize,
        entries: Vec<TarEntry>,
        payloads: Vec<Vec<u8>>,
        ended: bool,
    }

    impl TarVisitor for Record {
        fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.raw += bytes.len();
            Ok(())
        }
        fn entry(&mut self, entry: TarEntry) -> io::Result<Data> {
            let data = match entry.kind {
                tar::EntryType::Regular => Data::Payload,
                _ => Data::Raw,
            };
            self.entries.push(entry);
            self.payloads.push(Vec::new());
            Ok(data)
        }
        fn payload(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.payloads
                .last_mut()
                .expect("an entry")
                .extend_from_slice(bytes);
            Ok(())
        }
        fn payload_end(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn end_of_archive(&mut self) -> io::Result<()> {
            self.ended = true;
            Ok(())
        }
    }

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("name");
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        data
    }

    fn block_of(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.resize(padded(data.len() as u64) as usize, 0);
        out
    }

    #[test]
    fn entries_read_as_go_reads_them() {
        let mut tar = Vec::new();
        // A GNU long name, then a PAX path for the same entry: PAX wins, as in Go.
        let long = "l".repeat(150);
        tar.extend(header("././@LongLink", tar::EntryType::GNULongName, 151).as_bytes());
        tar.extend(block_of(format!("{long}\0").as_bytes()));
        let records = pax(&[
            ("path", "from-pax"),
            ("mtime", "-0.25"),
            ("SCHILY.xattr.user.a", "b"),
        ]);
        let x = header("pax", tar::EntryType::XHeader, records.len() as u64);
        tar.extend(x.as_bytes());
        tar.extend(block_of(&records));
        tar.extend(header("ignored", tar::EntryType::Regular, 5).as_bytes());
        tar.extend(block_of(b"hello"));
        // A hard link whose header gives a size: no data follows it.
        let mut link = header("hard", tar::EntryType::Link, 700);
        link.set_link_name("from-pax").expect("link");
        link.set_cksum();
        tar.extend(link.as_bytes());
        tar.extend(header("after", tar::EntryType::Regular, 3).as_bytes());
        tar.extend(block_of(b"abc"));
        tar.extend([0u8; 1024]);
        for piece in [1, 7, 512, 4096] {
            let mut stream = TarStream::new("test");
            let mut seen = Record::default();
            for part in tar.chunks(piece) {
                stream.write(part, &mut seen).expect("write");
            }
            stream.finish().expect("finish");
            let names: Vec<_> = seen.entries.iter().map(|e| e.path.clone()).collect();
            assert_eq!(names, [&b"from-pax"[..], b"hard", b"after"]);
            let first = &seen.entries[0];
            assert_eq!(first.mtime, (-1, 750_000_000));
            assert_eq!(first.xattrs["user.a"], b"b");
            assert_eq!(seen.entries[1].link, b"from-pax");
            assert_eq!(seen.entries[1].data_size(), 0);
            assert_eq!(seen.payloads, [&b"hello"[..], b"", b"abc"]);
            assert!(seen.ended);
            let payload_bytes = 5 + 3;
            assert_eq!(seen.raw + payload_bytes, tar.len());
        }
    }

    #[test]
    fn a_tar_cut_inside_an_entry_is_an_error_naming_the_format() {
        let mut tar = header("file", tar::EntryType::Regular, 600)
            .as_bytes()
            .to_vec();
        tar.extend([1u8; 100]);
        let mut stream = TarStream::new("zstd:chunked");
        stream.write(&tar, &mut Record::default()).expect("write");
        let e = stream.finish().expect_err("cut short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with("zstd:chunked: "), "{e}");
    }
}
