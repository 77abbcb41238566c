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

    /// Rolls the bytes of `data` until one after which the sum splits: how many were
    /// rolled then, `None` when none splits.
    #[inline]
    fn roll_until_split(&mut self, data: &[u8]) -> Option<usize> {
        let head = data.len().min(WINDOW);
        for (i, &byte) in data[..head].iter().enumerate() {
            self.roll(byte);
            if self.on_split() {
                return Some(i + 1);
            }
        }
        if data.len() <= WINDOW {
            return None;
        }
        let split = roll_within(&mut self.s1, &mut self.s2, data);
        // The window is now the last WINDOW bytes rolled, oldest first.
        let rolled = split.unwrap_or(data.len());
        self.window.copy_from_slice(&data[rolled - WINDOW..rolled]);
        self.at = 0;
        split
    }
}

/// Rolls `data[WINDOW..]`, each byte dropping the one WINDOW before it in `data`,
/// until a byte after which the sum splits: where in `data` it ends, if one does.
///
/// This is the hot loop of a layer's payload. `s1` is kept less the constant part of
/// each `s2` step (`WINDOW * CHAR_OFFSET`), so that a step is `r += add - drop;
/// s2 += r - 64 * drop`. On x86-64 the bytes go eight at a time through SSE2 (part of
/// every x86-64 CPU): the eight sums of a group are prefix sums computed in one
/// register, and only the group's last sum carries to the next group, so the chain
/// from byte to byte that bounds the scalar loop is gone.
fn roll_within(s1: &mut u32, s2: &mut u32, data: &[u8]) -> Option<usize> {
    const CONSTANT: u32 = WINDOW as u32 * CHAR_OFFSET;
    let (mut r, mut sum) = (s1.wrapping_sub(CONSTANT), *s2);
    // Whole groups of eight first where SSE2 is there; the rest (all of it elsewhere)
    // one byte at a time.
    #[cfg(target_arch = "x86_64")]
    let (mut split, done) = {
        let mut done = 0;
        // SAFETY: SSE2 is part of x86-64: every CPU the target runs on has it.
        let split = unsafe { sse2::roll_groups(&mut r, &mut sum, data, &mut done) };
        (split, done)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (mut split, done) = (None, 0);
    if split.is_none() {
        let adds = &data[WINDOW + done..];
        for (k, (&add, &drop)) in adds.iter().zip(&data[done..]).enumerate() {
            let drop = u32::from(drop);
            r = r.wrapping_add(u32::from(add)).wrapping_sub(drop);
            sum = sum.wrapping_add(r).wrapping_sub(drop << 6);
            if sum & SPLIT_MASK == SPLIT_MASK {
                split = Some(WINDOW + done + k + 1);
                break;
            }
        }
    }
    (*s1, *s2) = (r.wrapping_add(CONSTANT), sum);
    split
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    //! The rolling sum eight bytes at a time. Only the low 16 bits of `s2` decide a
    //! split, and they depend only on the low 16 bits of `r` and of `s2`, so the
    //! lanes are 16 bits wide.

    use std::arch::x86_64::*;

    use super::{SPLIT_MASK, WINDOW};

    /// Each lane's sum of the lanes up to it.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn prefix_sums(x: __m128i) -> __m128i {
        let x = _mm_add_epi16(x, _mm_slli_si128::<2>(x));
        let x = _mm_add_epi16(x, _mm_slli_si128::<4>(x));
        _mm_add_epi16(x, _mm_slli_si128::<8>(x))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn lanes(x: __m128i) -> [u16; 8] {
        let mut out = [0u16; 8];
        // SAFETY: `out` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), x) };
        out
    }

    /// Rolls whole groups of eight of `data[WINDOW..]` from `*done` on (advancing
    /// it), stopping in the group holding a split: where in `data` the splitting
    /// byte ends. `r` and `sum` are left as after the last byte rolled.
    #[target_feature(enable = "sse2")]
    pub(super) fn roll_groups(
        r: &mut u32,
        sum: &mut u32,
        data: &[u8],
        done: &mut usize,
    ) -> Option<usize> {
        let steps = _mm_setr_epi16(1, 2, 3, 4, 5, 6, 7, 8);
        let all_ones = _mm_set1_epi16(-1);
        let zero = _mm_setzero_si128();
        let groups = data[WINDOW..].chunks_exact(8).zip(data.chunks_exact(8));
        for (add, drop) in groups {
            // SAFETY: both are 8 readable bytes (`chunks_exact`); the loads are
            // unaligned.
            let (add, drop) = unsafe {
                (
                    _mm_loadl_epi64(add.as_ptr().cast()),
                    _mm_loadl_epi64(drop.as_ptr().cast()),
                )
            };
            let add = _mm_unpacklo_epi8(add, zero);
            let drop = _mm_unpacklo_epi8(drop, zero);
            // r after each byte is r + p[k]; s2 after each is s2 + k * r + q[k].
            let p = prefix_sums(_mm_sub_epi16(add, drop));
            let q = prefix_sums(_mm_sub_epi16(p, _mm_slli_epi16::<6>(drop)));
            let sums = _mm_add_epi16(
                _mm_add_epi16(_mm_set1_epi16(*sum as i16), q),
                _mm_mullo_epi16(steps, _mm_set1_epi16(*r as i16)),
            );
            let hits = _mm_movemask_epi8(_mm_cmpeq_epi16(sums, all_ones));
            let (p, q) = (lanes(p), lanes(q));
            if hits != 0 {
                let k = hits.trailing_zeros() as usize / 2;
                // The high bits never reach a split: any values carry on correctly.
                *sum = sum.wrapping_add((k as u32 + 1).wrapping_mul(*r));
                *sum = sum.wrapping_add(u32::from(q[k]));
                *r = r.wrapping_add(u32::from(p[k]));
                debug_assert_eq!(*sum & SPLIT_MASK, SPLIT_MASK);
                return Some(WINDOW + *done + k + 1);
            }
            *sum = sum
                .wrapping_add(r.wrapping_mul(8))
                .wrapping_add(u32::from(q[7]));
            *r = r.wrapping_add(u32::from(p[7]));
            *done += 8;
        }
        None
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

fn leading_zeros(data: &[u8]) -> usize {
    data.iter().take_while(|&&b| b == 0).count()
}

/// Where in `data` the first run of zeros begins that is a hole (at least
/// [`HOLE_THRESHOLD`] long) or may become one (it ends `data`); `data.len()` if none.
/// Shorter runs are data, rolled like any byte.
fn next_zero_run(data: &[u8]) -> usize {
    // A run of HOLE_THRESHOLD zeros covers a whole PROBE-byte block, so probing the
    // first word of each block finds every such run, and in order.
    const PROBE: usize = HOLE_THRESHOLD as usize / 2;
    let tail = data.len() - data.iter().rev().take_while(|&&b| b == 0).count();
    let mut probe = 0;
    while probe + 8 <= tail {
        if data[probe..probe + 8] != [0; 8] {
            probe += PROBE;
            continue;
        }
        let start = probe - data[..probe].iter().rev().take_while(|&&b| b == 0).count();
        let end = probe + leading_zeros(&data[probe..]);
        if end - start >= HOLE_THRESHOLD as usize {
            return start;
        }
        probe = (end / PROBE + 1) * PROBE;
    }
    tail
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

    /// Rolls `data` (which holds no hole) into the sum, ending a chunk after every
    /// byte that splits.
    fn roll_data<W: io::Write>(
        &mut self,
        frames: &mut FrameWriter<W>,
        mut data: &[u8],
    ) -> io::Result<()> {
        while let Some(n) = self.sum.roll_until_split(data) {
            self.emit(frames, &data[..n])?;
            self.end_chunk(frames, false)?;
            data = &data[n..];
        }
        self.emit(frames, data)
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
        // Fewer than HOLE_THRESHOLD, so fewer than ZEROS holds.
        self.roll_data(frames, &ZEROS[..n as usize])
    }

    /// Takes the next bytes of the payload.
    pub(super) fn feed<W: io::Write>(
        &mut self,
        buf: &[u8],
        frames: &mut FrameWriter<W>,
    ) -> io::Result<()> {
        let mut i = 0;
        while i < buf.len() {
            if self.zeros > 0 {
                let run = leading_zeros(&buf[i..]);
                self.zeros += run as u64;
                i += run;
                if i == buf.len() {
                    break;
                }
                self.resolve_zeros(frames)?;
            }
            let data_end = i + next_zero_run(&buf[i..]);
            self.roll_data(frames, &buf[i..data_end])?;
            let run = leading_zeros(&buf[data_end..]);
            self.zeros = run as u64;
            i = data_end + run;
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
    use proptest::prelude::*;

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

    /// containers/storage's cut, byte by byte as `rollingChecksumReader` reads:
    /// (offset, size, zeros) of each chunk.
    fn reference_chunks(payload: &[u8]) -> Vec<(u64, u64, bool)> {
        let mut sum = RollSum::new();
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut i = 0;
        let end_chunk = |chunks: &mut Vec<_>, start: &mut usize, at: usize, zeros| {
            if at > *start {
                chunks.push((*start as u64, (at - *start) as u64, zeros));
            }
            *start = at;
        };
        while i < payload.len() {
            let run = leading_zeros(&payload[i..]);
            if run as u64 >= HOLE_THRESHOLD {
                end_chunk(&mut chunks, &mut start, i, false);
                for _ in 0..run {
                    sum.roll(0);
                }
                end_chunk(&mut chunks, &mut start, i + run, true);
                i += run;
                continue;
            }
            for _ in 0..run.max(1) {
                sum.roll(payload[i]);
                i += 1;
                if sum.on_split() {
                    end_chunk(&mut chunks, &mut start, i, false);
                }
            }
        }
        end_chunk(&mut chunks, &mut start, payload.len(), false);
        chunks
    }

    /// A payload of data runs that split often (a few bytes repeated) and zero runs
    /// around the hole threshold.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let run = prop_oneof![
            (1usize..300_000, any::<u8>()).prop_map(|(n, seed)| {
                (0..n)
                    .map(|i| {
                        (i as u32)
                            .wrapping_mul(2_654_435_761)
                            .rotate_left(u32::from(seed) % 32) as u8
                    })
                    .collect::<Vec<u8>>()
            }),
            (1usize..3000).prop_map(|n| vec![0u8; n]),
            prop_oneof![Just(1023usize), Just(1024), Just(1025)].prop_map(|n| vec![0u8; n]),
        ];
        proptest::collection::vec(run, 0..12).prop_map(|runs| runs.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunks_are_containers_storage_chunks(payload in payload(), piece in 1usize..100_000) {
            let mut frames = FrameWriter::new(Vec::new(), 1, 1);
            let mut chunker = Chunker::new(payload.len() as u64);
            for part in payload.chunks(piece) {
                chunker.feed(part, &mut frames).expect("feed");
            }
            let chunks: Vec<_> = chunker
                .finish(&mut frames)
                .expect("finish")
                .iter()
                .map(|c| (c.offset, c.size, c.zeros))
                .collect();
            prop_assert_eq!(chunks, reference_chunks(&payload));
            let end = frames.finish().expect("frames");
            if !payload.is_empty() {
                prop_assert_eq!(zstd::decode_all(&end.out[..]).expect("zstd"), payload);
            }
        }
    }
}
