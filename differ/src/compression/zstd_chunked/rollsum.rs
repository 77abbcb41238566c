//! How a payload is cut into chunks, as containers/storage's `rollingChecksumReader`
//! and `holesFinder` cut it (`pkg/chunked/compressor/compressor.go`, `rollsum.go`):
//! bup's rolling checksum over a 64-byte window, a split after every data byte where
//! the low 16 bits of `s2` are all ones (`RollsumBits`), and every run of at least
//! 1 KiB of zeros (`holesThreshold`) a chunk of its own (type `zeros`), rolled into the
//! checksum but never split inside. The checksum starts afresh for every file.

use std::io;

use super::frames::FrameWriter;

/// The rolling window (`windowSize`).
const WINDOW: usize = 64;
/// `charOffset`.
const CHAR_OFFSET: u32 = 31;
/// Split when this many low bits of `s2` are all ones (`RollsumBits`).
const SPLIT_MASK: u32 = (1 << 16) - 1;
/// Runs of at least this many zeros are `zeros` chunks (`holesThreshold`).
const HOLE_THRESHOLD: u64 = 1 << 10;

/// bup's rolling checksum (`RollSum`).
struct RollSum {
    s1: u32,
    s2: u32,
    window: [u8; WINDOW],
    at: usize,
}

impl RollSum {
    fn new() -> Self {
        RollSum {
            s1: WINDOW as u32 * CHAR_OFFSET,
            s2: WINDOW as u32 * (WINDOW as u32 - 1) * CHAR_OFFSET,
            window: [0; WINDOW],
            at: 0,
        }
    }

    #[inline]
    fn roll(&mut self, byte: u8) {
        let drop = u32::from(self.window[self.at]);
        let add = u32::from(byte);
        self.s1 = self.s1.wrapping_add(add).wrapping_sub(drop);
        self.s2 = self
            .s2
            .wrapping_add(self.s1)
            .wrapping_sub((WINDOW as u32).wrapping_mul(drop + CHAR_OFFSET));
        self.window[self.at] = byte;
        self.at = (self.at + 1) & (WINDOW - 1);
    }

    #[inline]
    fn on_split(&self) -> bool {
        self.s2 & SPLIT_MASK == SPLIT_MASK
    }

    /// Rolls the bytes of `bytes` up to its first zero, stopping after a byte that
    /// splits: how many were rolled, and whether the last one split. (The sum is kept
    /// in registers: this is the hot loop of a layer's payload.)
    #[inline]
    fn roll_data(&mut self, bytes: &[u8]) -> (usize, bool) {
        let (mut s1, mut s2, mut at) = (self.s1, self.s2, self.at);
        let mut rolled = 0;
        let mut split = false;
        for &byte in bytes {
            if byte == 0 {
                break;
            }
            let drop = u32::from(self.window[at]);
            s1 = s1.wrapping_add(u32::from(byte)).wrapping_sub(drop);
            s2 = s2
                .wrapping_add(s1)
                .wrapping_sub((WINDOW as u32).wrapping_mul(drop + CHAR_OFFSET));
            self.window[at] = byte;
            at = (at + 1) & (WINDOW - 1);
            rolled += 1;
            if s2 & SPLIT_MASK == SPLIT_MASK {
                split = true;
                break;
            }
        }
        (self.s1, self.s2, self.at) = (s1, s2, at);
        (rolled, split)
    }
}

/// One chunk of a payload: where it is in the payload, its size, the frame holding
/// it, and whether it is a run of zeros.
pub(super) struct ChunkRecord {
    pub(super) offset: u64,
    pub(super) size: u64,
    pub(super) frame: usize,
    pub(super) zeros: bool,
}

/// Cuts one payload into chunks, each written as its own frame.
pub(super) struct Chunker {
    sum: RollSum,
    /// Zeros seen and not yet known to be data or a hole.
    zeros: u64,
    /// Payload bytes written into frames.
    emitted: u64,
    /// Where the chunk being filled begins in the payload.
    chunk_start: u64,
    /// The payload's size.
    size: u64,
    chunks: Vec<ChunkRecord>,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn write_zeros<W: io::Write>(frames: &mut FrameWriter<W>, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        frames.write(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

impl Chunker {
    /// A chunker at the start of a payload of `size` bytes.
    pub(super) fn new(size: u64) -> Self {
        Chunker {
            sum: RollSum::new(),
            zeros: 0,
            emitted: 0,
            chunk_start: 0,
            size,
            chunks: Vec::new(),
        }
    }

    fn emit<W: io::Write>(&mut self, frames: &mut FrameWriter<W>, bytes: &[u8]) -> io::Result<()> {
        self.emitted += bytes.len() as u64;
        frames.write(bytes)
    }

    /// Ends the chunk being filled, if it has bytes.
    fn end_chunk<W: io::Write>(
        &mut self,
        frames: &mut FrameWriter<W>,
        zeros: bool,
    ) -> io::Result<()> {
        let size = self.emitted - self.chunk_start;
        if size == 0 {
            return Ok(());
        }
        // A chunk's own digest is only written when the file has several; one that
        // starts and ends the payload is the whole file (whose digest is computed).
        let only = self.chunk_start == 0 && self.emitted == self.size;
        let frame = frames
            .end_frame(!only)?
            .ok_or_else(|| io::Error::other("zstd:chunked: a chunk without a frame"))?;
        self.chunks.push(ChunkRecord {
            offset: self.chunk_start,
            size,
            frame,
            zeros,
        });
        self.chunk_start = self.emitted;
        Ok(())
    }

    /// The pending zeros are followed by a data byte (or the end of the payload): a
    /// hole when there are enough, else data bytes like any other.
    fn resolve_zeros<W: io::Write>(&mut self, frames: &mut FrameWriter<W>) -> io::Result<()> {
        let n = std::mem::take(&mut self.zeros);
        if n >= HOLE_THRESHOLD {
            self.end_chunk(frames, false)?;
            // After a window of zeros the sum no longer changes: rolling 64 is rolling n.
            for _ in 0..WINDOW {
                self.sum.roll(0);
            }
            write_zeros(frames, n)?;
            self.emitted += n;
            return self.end_chunk(frames, true);
        }
        let mut run = 0;
        for _ in 0..n {
            self.sum.roll(0);
            run += 1;
            if self.sum.on_split() {
                write_zeros(frames, run)?;
                self.emitted += run;
                run = 0;
                self.end_chunk(frames, false)?;
            }
        }
        write_zeros(frames, run)?;
        self.emitted += run;
        Ok(())
    }

    /// Takes the next bytes of the payload.
    pub(super) fn feed<W: io::Write>(
        &mut self,
        buf: &[u8],
        frames: &mut FrameWriter<W>,
    ) -> io::Result<()> {
        // Start of the bytes of `buf` known to be data and not yet written.
        let mut start = 0;
        let mut i = 0;
        while i < buf.len() {
            if buf[i] == 0 {
                if self.zeros == 0 {
                    self.emit(frames, &buf[start..i])?;
                }
                self.zeros += 1;
                i += 1;
                start = i;
                continue;
            }
            if self.zeros > 0 {
                self.resolve_zeros(frames)?;
            }
            let (rolled, split) = self.sum.roll_data(&buf[i..]);
            i += rolled;
            if split {
                self.emit(frames, &buf[start..i])?;
                start = i;
                self.end_chunk(frames, false)?;
            }
        }
        if self.zeros == 0 {
            self.emit(frames, &buf[start..])?;
        }
        Ok(())
    }

    /// Ends the payload: its chunks.
    pub(super) fn finish<W: io::Write>(
        mut self,
        frames: &mut FrameWriter<W>,
    ) -> io::Result<Vec<ChunkRecord>> {
        if self.zeros > 0 {
            self.resolve_zeros(frames)?;
        }
        self.end_chunk(frames, false)?;
        Ok(self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_where_containers_storage_splits() {
        // The split points containers/storage's rollsum.go (OnSplitWithBits(16))
        // finds in these 4 MiB (a Go program over the same generator printed them).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sum = RollSum::new();
        let mut splits = Vec::new();
        for i in 0..4usize << 20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = if (x >> 40) & 3 == 0 {
                b'a'
            } else {
                (x >> 56) as u8
            };
            sum.roll(b);
            if sum.on_split() {
                splits.push(i);
            }
        }
        assert_eq!(splits.len(), 51);
        assert_eq!(splits[..5], [263405, 308792, 332948, 355590, 393884]);
        assert_eq!(splits.last(), Some(&4167685));
    }
}
