//! Parallel, deterministic gzip (pigz-style).
//!
//! The input is cut into fixed [`BLOCK_SIZE`] blocks. Each block is deflated on its own
//! by libdeflate and made joinable (see [`super::deflate_block`]), so the compressed
//! blocks concatenate into one deflate stream. Their CRC-32s are combined and the whole
//! is wrapped in one gzip header (mtime 0, no name, OS byte 255 as Go's `compress/gzip`
//! writes) and trailer.
//!
//! Blocks are not primed with the previous 32 KiB as pigz's are: libdeflate takes no
//! preset dictionary. Larger blocks make up for it: at 1 MiB the cost of independence
//! is about 0.1 % of output, and libdeflate's output is smaller than zlib's anyway (the
//! bench's Debian rootfs at level 6: 91.9 MB, where zlib-rs primed 128 KiB blocks gave
//! 93.3 MB and Go's `compress/gzip` 93.0 MB).
//!
//! Because block boundaries depend only on the input offset, never on how the input was
//! handed to us nor on how many threads compress it, the output bytes are the same for
//! any thread count.
//!
//! The workers take jobs of about a block of input: one full block, or, when the stream
//! is cut into many small gzip members (eStargz: one per file payload), as many whole
//! small blocks as make up a block's worth. Grouping changes no byte (every block is
//! still deflated on its own) and keeps the round trips to the workers few.
//!
//! Hand-written because no well-kept crate does this deterministically: `gzp`'s pgz
//! output depends on its own buffering and it is lightly maintained; `flate2` is
//! single-threaded.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use super::deflate_block::BlockDeflater;

/// Input bytes per independently compressed block.
pub(crate) const BLOCK_SIZE: usize = 1024 * 1024;

/// A piece of a job's input: a block of one member, deflated on its own. A member is
/// cut into blocks of [`BLOCK_SIZE`] from its own start, so where blocks begin depends
/// only on the input, never on how blocks are grouped into jobs.
struct Block {
    /// Input bytes.
    len: usize,
    /// The block begins a gzip member (a header goes before it).
    first: bool,
    /// The block ends its gzip member (its deflate stream gets the final bit).
    last: bool,
}

/// Blocks to compress together: one full block, or many small ones (eStargz cuts a
/// member per file payload, mostly far below a block: one task per member kept the
/// workers waiting on the round trips).
struct Job {
    index: u64,
    /// The blocks' input, one after another.
    data: Vec<u8>,
    blocks: Vec<Block>,
}

/// One compressed block of a [`Done`] job.
struct Deflated {
    first: bool,
    last: bool,
    crc: crc32fast::Hasher,
    /// Input bytes.
    input: u64,
    /// Its bytes in the job's output.
    output: usize,
}

/// One compressed job.
struct Done {
    index: u64,
    blocks: Vec<Deflated>,
    /// The blocks' deflate bytes, one after another.
    bytes: io::Result<Vec<u8>>,
    /// The input buffer, handed back for reuse.
    data: Vec<u8>,
}

fn compress_job(deflater: &mut io::Result<BlockDeflater>, job: Job) -> Done {
    let mut blocks = Vec::with_capacity(job.blocks.len());
    let bytes = match deflater {
        Ok(d) => deflate_blocks(d, &job, &mut blocks),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    };
    Done {
        index: job.index,
        blocks,
        bytes,
        data: job.data,
    }
}

/// Deflates each of the job's blocks on its own; their bytes, one after another.
fn deflate_blocks(
    deflater: &mut BlockDeflater,
    job: &Job,
    blocks: &mut Vec<Deflated>,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    for block in &job.blocks {
        let input = job
            .data
            .get(at..at + block.len)
            .ok_or_else(|| io::Error::other("gzip: a block beyond its job's input"))?;
        at += block.len;
        let mut crc = crc32fast::Hasher::new();
        crc.update(input);
        let bytes = deflater.deflate(input, block.last)?;
        blocks.push(Deflated {
            first: block.first,
            last: block.last,
            crc,
            input: block.len as u64,
            output: bytes.len(),
        });
        if out.is_empty() {
            out = bytes;
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    Ok(out)
}

/// The gzip header: no flags, mtime 0, XFL by level (as zlib/gzip set it), OS 255.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// A [`Write`] that gzips into `W`. With `threads` > 1 its blocks are compressed by the
/// process-wide workers (one per core), in jobs of about a block of input, up to
/// 2 × `threads` jobs at a time (fewer while other encoders share the workers); with 0
/// or 1, inline on the caller's thread.
///
/// The output is one gzip member unless [`ParallelGzEncoder::end_member`] cuts it into
/// several (eStargz): each member is a complete gzip stream, compressed in blocks as the
/// single one is, and [`ParallelGzEncoder::member_offsets`] says where each begins.
pub(crate) struct ParallelGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    /// Input of the job being filled: its closed blocks, then the open block.
    cur: Vec<u8>,
    /// The closed blocks in `cur`.
    blocks: Vec<Block>,
    /// Where the open block begins in `cur`.
    open_start: usize,
    /// The deflater used inline when there is no pool (each pool worker owns its own).
    deflater: Option<io::Result<BlockDeflater>>,
    next_index: u64,
    next_to_write: u64,
    crc: crc32fast::Hasher,
    pool: Option<Pool>,
    /// Finished blocks waiting for their predecessors.
    pending: BTreeMap<u64, Done>,
    /// Spare input buffers.
    spare: Vec<Vec<u8>>,
    /// A block of the current member has been closed (the open block does not begin
    /// a member).
    member_open: bool,
    /// Members ended so far: the index of the member the next byte goes into.
    members_ended: usize,
    /// Bytes written to `out` so far.
    written: u64,
    /// Input bytes of the member being written out (its ISIZE).
    member_in: u64,
    /// Where each member begins in the output, in order (known once written out).
    member_offsets: Vec<u64>,
    finished: bool,
}

/// This encoder's link to the shared workers.
struct Pool {
    /// Where workers send this encoder's finished blocks (cloned into each task).
    reply: mpsc::Sender<Done>,
    done: mpsc::Receiver<Done>,
    /// Set when the encoder is dropped: its queued blocks are skipped.
    cancelled: Arc<AtomicBool>,
    in_flight: usize,
    /// The most blocks this encoder may have in flight when it is alone: 2 × threads.
    max_in_flight: usize,
}

/// Encoders currently using the shared workers.
static ACTIVE_ENCODERS: AtomicUsize = AtomicUsize::new(0);
/// How many shared workers are running.
static WORKERS_STARTED: AtomicUsize = AtomicUsize::new(0);

impl Pool {
    /// How many blocks may be in flight now: 2 × threads when this encoder is alone,
    /// else its share of 2 blocks per worker (at least 2), so that layers compressed
    /// at once hold O(cores) blocks between them, not O(cores²) (1 MiB of input and
    /// about as much output each).
    fn limit(&self) -> usize {
        let active = ACTIVE_ENCODERS.load(Ordering::Relaxed).max(1);
        let share = (2 * WORKERS_STARTED.load(Ordering::Relaxed) / active).max(2);
        self.max_in_flight.min(share)
    }
}

/// Work for the shared workers: a gzip block, or any other encoder's job (the
/// zstd:chunked frames).
enum Work {
    Deflate(Task),
    Run(Box<dyn FnOnce() + Send>),
}

/// Runs `job` on the process-wide compression workers (the ones gzip uses), so that
/// every encoder shares one pool of one thread per core; `Err(job)` when no worker
/// could be started (the caller runs it itself).
pub(super) fn run_on_shared_workers(
    job: Box<dyn FnOnce() + Send>,
) -> Result<(), Box<dyn FnOnce() + Send>> {
    shared_workers()
        .send(Work::Run(job))
        .map_err(|mpsc::SendError(work)| match work {
            Work::Run(job) => job,
            Work::Deflate(_) => Box::new(|| {}),
        })
}

/// How many shared workers are running (0 until the first job is sent).
pub(super) fn shared_workers_started() -> usize {
    WORKERS_STARTED.load(Ordering::Relaxed)
}

/// One block for the shared workers, and where its result goes.
struct Task {
    level: u32,
    job: Job,
    reply: mpsc::Sender<Done>,
    cancelled: Arc<AtomicBool>,
}

/// The process-wide compression workers, one per core, shared by every encoder.
///
/// Shared rather than per encoder because an export compresses several layers at once
/// (`jobs`, by default one per core): a pool per layer would start cores² threads, each
/// with its own deflater state, where cores threads keep every core busy. (On the
/// bench's 2-core machine both designs run equally fast; the shared one peaks about
/// 7 MiB lower.)
fn shared_workers() -> &'static mpsc::Sender<Work> {
    static WORKERS: OnceLock<mpsc::Sender<Work>> = OnceLock::new();
    WORKERS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..super::effective_threads(None) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("strata-gzip-{i}"))
                .spawn(move || work(&rx));
            match spawned {
                Ok(_) => {
                    WORKERS_STARTED.fetch_add(1, Ordering::Relaxed);
                }
                // Fewer workers is slower, not wrong; with none, encoders fall back to
                // compressing inline (see `dispatch`).
                Err(e) => tracing::warn!(error = %e, "starting a gzip worker"),
            }
        }
        tx
    })
}

/// A shared worker: compresses tasks until the process ends, keeping one deflater per
/// level it has seen.
fn work(rx: &Mutex<mpsc::Receiver<Work>>) {
    let mut deflaters: BTreeMap<u32, io::Result<BlockDeflater>> = BTreeMap::new();
    loop {
        let work = match rx.lock() {
            Ok(rx) => match rx.recv() {
                Ok(work) => work,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let task = match work {
            Work::Deflate(task) => task,
            Work::Run(job) => {
                // The job reports its own result; a panic must not end the worker.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                continue;
            }
        };
        if task.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        let deflater = deflaters
            .entry(task.level)
            .or_insert_with(|| BlockDeflater::new(task.level));
        let index = task.job.index;
        // A panic must not leave the encoder waiting for a block that never comes.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compress_job(deflater, task.job)
        }))
        .unwrap_or_else(|_| Done {
            index,
            blocks: Vec::new(),
            bytes: Err(io::Error::other("gzip: a compression worker panicked")),
            data: Vec::new(),
        });
        let _ = task.reply.send(done);
    }
}

impl<W: Write> ParallelGzEncoder<W> {
    /// A gzip encoder at `level` (0–9) using `threads` compression threads.
    pub(super) fn new(out: W, level: u32, threads: usize) -> Self {
        let level = level.min(9);
        let pool = (threads > 1).then(|| {
            ACTIVE_ENCODERS.fetch_add(1, Ordering::Relaxed);
            let (reply, done) = mpsc::channel::<Done>();
            Pool {
                reply,
                done,
                cancelled: Arc::new(AtomicBool::new(false)),
                in_flight: 0,
                max_in_flight: threads * 2,
            }
        });
        ParallelGzEncoder {
            out: Some(out),
            level,
            cur: Vec::with_capacity(BLOCK_SIZE),
            blocks: Vec::new(),
            open_start: 0,
            deflater: None,
            next_index: 0,
            next_to_write: 0,
            crc: crc32fast::Hasher::new(),
            pool,
            pending: BTreeMap::new(),
            spare: Vec::new(),
            member_open: false,
            members_ended: 0,
            written: 0,
            member_in: 0,
            member_offsets: Vec::new(),
            finished: false,
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out()?.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes every finished job that is next in order, with each member's header
    /// before its first block and trailer after its last.
    fn drain_ready(&mut self) -> io::Result<()> {
        while let Some(done) = self.pending.remove(&self.next_to_write) {
            let bytes = done.bytes?;
            let mut at = 0;
            for block in &done.blocks {
                if block.first {
                    self.member_offsets.push(self.written);
                    self.crc = crc32fast::Hasher::new();
                    self.member_in = 0;
                    self.emit(&header(self.level))?;
                }
                self.crc.combine(&block.crc);
                self.member_in += block.input;
                let deflated = bytes
                    .get(at..at + block.output)
                    .ok_or_else(|| io::Error::other("gzip: a block beyond its job's output"))?;
                at += block.output;
                self.emit(deflated)?;
                if block.last {
                    let crc = std::mem::take(&mut self.crc).finalize();
                    let isize = (self.member_in & 0xffff_ffff) as u32;
                    let mut trailer = [0u8; 8];
                    trailer[..4].copy_from_slice(&crc.to_le_bytes());
                    trailer[4..].copy_from_slice(&isize.to_le_bytes());
                    self.emit(&trailer)?;
                }
            }
            self.next_to_write += 1;
            let mut data = done.data;
            data.clear();
            self.spare.push(data);
        }
        Ok(())
    }

    /// Waits for one block from the pool.
    fn receive_one(&mut self) -> io::Result<()> {
        let pool = self
            .pool
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip: no worker pool"))?;
        let done = pool
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip: a compression worker died"))?;
        pool.in_flight -= 1;
        self.pending.insert(done.index, done);
        self.drain_ready()
    }

    /// Closes the open block (ending its member when `last`); the job goes to the
    /// workers once it holds a block's worth of input.
    fn close_block(&mut self, last: bool) -> io::Result<()> {
        self.blocks.push(Block {
            len: self.cur.len() - self.open_start,
            first: !self.member_open,
            last,
        });
        self.member_open = !last;
        self.open_start = self.cur.len();
        if last {
            self.members_ended += 1;
        }
        if self.cur.len() >= BLOCK_SIZE {
            self.dispatch()?;
        }
        Ok(())
    }

    /// Hands the closed blocks to a worker (or compresses them inline); the open
    /// block's bytes stay for the next job.
    fn dispatch(&mut self) -> io::Result<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE));
        let mut data = std::mem::replace(&mut self.cur, fresh);
        self.cur.extend_from_slice(&data[self.open_start..]);
        data.truncate(self.open_start);
        self.open_start = 0;
        let job = Job {
            index: self.next_index,
            data,
            blocks: std::mem::take(&mut self.blocks),
        };
        self.next_index += 1;
        if self.pool.is_none() {
            return self.compress_inline(job);
        }
        loop {
            let pool = self
                .pool
                .as_ref()
                .ok_or_else(|| io::Error::other("gzip: no worker pool"))?;
            if pool.in_flight < pool.limit() {
                break;
            }
            self.receive_one()?;
        }
        let pool = self
            .pool
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip: no worker pool"))?;
        let task = Task {
            level: self.level,
            job,
            reply: pool.reply.clone(),
            cancelled: Arc::clone(&pool.cancelled),
        };
        if let Err(mpsc::SendError(work)) = shared_workers().send(Work::Deflate(task)) {
            // No worker could be started: compress here.
            return match work {
                Work::Deflate(task) => self.compress_inline(task.job),
                Work::Run(_) => Err(io::Error::other("gzip: lost a block")),
            };
        }
        pool.in_flight += 1;
        Ok(())
    }

    /// Compresses `job` on this thread.
    fn compress_inline(&mut self, job: Job) -> io::Result<()> {
        let level = self.level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| BlockDeflater::new(level));
        let done = compress_job(deflater, job);
        self.pending.insert(done.index, done);
        self.drain_ready()
    }

    /// Ends the gzip member being written (the bytes written so far, since the
    /// previous call, form one member; a member with no bytes is an empty one); the next
    /// byte written begins a new member. Returns the new member's index in
    /// [`ParallelGzEncoder::member_offsets`].
    pub(super) fn end_member(&mut self) -> io::Result<usize> {
        self.close_block(true)?;
        Ok(self.current_member())
    }

    /// The index of the member the next byte written goes into.
    pub(super) fn current_member(&self) -> usize {
        self.members_ended
    }

    /// Waits until every block dispatched so far is written out, so that
    /// [`ParallelGzEncoder::member_offsets`] covers every ended member.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.dispatch()?;
        while self.pool.as_ref().is_some_and(|p| p.in_flight > 0) {
            self.receive_one()?;
        }
        self.drain_ready()
    }

    /// Where each member written out so far begins in the output.
    pub(super) fn member_offsets(&self) -> &[u64] {
        &self.member_offsets
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(super) fn finish(self) -> io::Result<W> {
        self.finish_members().map(|(out, _)| out)
    }

    /// [`ParallelGzEncoder::finish`], also returning where each member begins.
    pub(super) fn finish_members(mut self) -> io::Result<(W, Vec<u64>)> {
        self.finished = true;
        self.close_block(true)?;
        self.sync()?;
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))?;
        out.flush()?;
        Ok((out, std::mem::take(&mut self.member_offsets)))
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("gzip encoder already finished"));
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let room = BLOCK_SIZE - (self.cur.len() - self.open_start);
            let n = room.min(rest.len());
            self.cur.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.cur.len() - self.open_start == BLOCK_SIZE {
                self.close_block(false)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing would cut a block short and make the bytes depend on the caller's
        // flushes; blocks are written as they complete instead.
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        // Blocks still queued for the shared workers are not worth compressing now.
        if let Some(pool) = &self.pool {
            pool.cancelled.store(true, Ordering::Relaxed);
            ACTIVE_ENCODERS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Writes `pieces` as one gzip member each; the blob and where each member begins.
    fn members(pieces: &[Vec<u8>], threads: usize) -> (Vec<u8>, Vec<u64>) {
        let mut enc = ParallelGzEncoder::new(Vec::new(), 6, threads);
        for (i, piece) in pieces.iter().enumerate() {
            enc.write_all(piece).expect("write");
            if i + 1 < pieces.len() {
                assert_eq!(enc.end_member().expect("end member"), i + 1);
            }
        }
        enc.finish_members().expect("finish")
    }

    #[test]
    fn many_small_members_keep_their_bytes_and_offsets_whatever_the_threads() {
        // Mostly small members (grouped into shared jobs), some empty, some longer than
        // a block (cut into joined blocks), one exactly a block long.
        let data = crate::compression::tests::sample(6 << 20);
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut x = 7usize;
        while at < data.len() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
            let len = match x % 50 {
                0 => 0,
                1 => BLOCK_SIZE,
                2 => BLOCK_SIZE + x % 5000,
                _ => x % 3000,
            }
            .min(data.len() - at);
            pieces.push(data[at..at + len].to_vec());
            at += len;
        }
        let (one, offsets) = members(&pieces, 1);
        assert_eq!(offsets.len(), pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[offsets[i] as usize..])
                .read_to_end(&mut back)
                .expect("a gzip member starts at the offset");
            assert!(back == *piece, "member {i} of {} bytes", piece.len());
        }
        for threads in [2, 4] {
            let (other, other_offsets) = members(&pieces, threads);
            assert!(other == one, "{threads} threads changed the bytes");
            assert_eq!(other_offsets, offsets);
        }
    }
}
