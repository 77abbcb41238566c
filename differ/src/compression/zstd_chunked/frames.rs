//! Independent zstd frames compressed in parallel: the bytes of a zstd:chunked layer
//! are cut into frames (tar headers, each payload chunk), each frame is compressed on
//! its own, and consecutive frames are batched into jobs for the shared compression
//! workers. The frames are written out in order, so the output depends only on the
//! frame boundaries and the level, never on the thread count or the batching.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use sha2::{Digest as _, Sha256};

use super::super::gzip::{run_on_shared_workers, shared_workers_started};

/// Input bytes gathered before a batch of frames goes to a worker.
const BATCH_SIZE: usize = 1 << 20;

/// A frame growing past this many input bytes (a payload the rolling checksum never
/// splits, such as a long repeated pattern) is compressed as a stream on this thread
/// instead of being held whole: memory stays bounded. Whether a frame is streamed
/// depends only on its size, so the bytes still depend only on the input.
const LARGE_FRAME: usize = 8 << 20;

/// The frame being compressed as a stream, and the sha256 of its input.
struct Streamed {
    zstd: zstd::stream::write::Encoder<'static, Vec<u8>>,
    sha: Sha256,
}

/// A batch of consecutive frames.
struct Job {
    index: u64,
    data: Vec<u8>,
    /// Where each frame ends in `data`, and whether its sha256 is wanted.
    frames: Vec<(usize, bool)>,
    /// An empty buffer to compress into.
    out: Vec<u8>,
}

/// A compressed batch.
struct Done {
    index: u64,
    /// The compressed frames, one after another.
    bytes: io::Result<Vec<u8>>,
    /// Each frame's compressed size and (when asked) the sha256 of its input.
    frames: Vec<(u64, Option<[u8; 32]>)>,
    /// The job's input buffer, for the next job.
    input: Vec<u8>,
}

thread_local! {
    /// Each thread's zstd context, kept across jobs (level, context).
    static CONTEXT: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Compresses each frame of `job` into its own zstd frame (with a content checksum,
/// as Go's klauspost encoder writes).
fn compress_job(level: i32, job: Job) -> Done {
    let mut frames = Vec::with_capacity(job.frames.len());
    let bytes = CONTEXT.with(|cell| -> io::Result<Vec<u8>> {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            *cell = Some((level, c));
        }
        let (_, compressor) = cell
            .as_mut()
            .ok_or_else(|| io::Error::other("zstd:chunked: no compressor"))?;
        let mut out = job.out;
        let mut start = 0;
        for &(end, digest) in &job.frames {
            let input = &job.data[start..end];
            // Compressed straight onto the end of `out`.
            let at = out.len();
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            let mut cursor = io::Cursor::new(&mut out);
            cursor.set_position(at as u64);
            let size = compressor.compress_to_buffer(input, &mut cursor)?;
            frames.push((size as u64, digest.then(|| Sha256::digest(input).into())));
            start = end;
        }
        Ok(out)
    });
    let mut input = job.data;
    input.clear();
    Done {
        index: job.index,
        bytes,
        frames,
        input,
    }
}

/// Writes frames into `W`: bytes go into the frame being filled, [`FrameWriter::end_frame`]
/// ends it. Frames with no bytes are not written (as Go's encoder writes nothing for
/// them).
pub(super) struct FrameWriter<W: Write> {
    out: W,
    level: i32,
    /// The batch being filled; its last frame is open past the last recorded end.
    job: Job,
    /// Frames ended so far.
    frames: usize,
    /// Where each frame written out begins.
    offsets: Vec<u64>,
    /// sha256 of each frame's input, where asked.
    digests: BTreeMap<usize, [u8; 32]>,
    written: u64,
    next_to_write: u64,
    pending: BTreeMap<u64, Done>,
    /// The channel workers answer on, when there is more than one thread.
    pool: Option<(mpsc::Sender<Done>, mpsc::Receiver<Done>)>,
    cancelled: CancelOnDrop,
    in_flight: usize,
    max_in_flight: usize,
    /// The open frame, when it grew past [`LARGE_FRAME`].
    streamed: Option<Streamed>,
    /// Emptied buffers of batches written out, for the next batches: a layer
    /// allocates only as many as are in flight at once.
    spare: Vec<Vec<u8>>,
}

impl<W: Write> FrameWriter<W> {
    /// A frame writer at zstd `level` with `threads` threads.
    pub(super) fn new(out: W, level: i32, threads: usize) -> Self {
        FrameWriter {
            out,
            level,
            job: Job {
                index: 0,
                data: Vec::with_capacity(BATCH_SIZE + BATCH_SIZE / 4),
                frames: Vec::new(),
                out: Vec::new(),
            },
            frames: 0,
            offsets: Vec::new(),
            digests: BTreeMap::new(),
            written: 0,
            next_to_write: 0,
            pending: BTreeMap::new(),
            pool: (threads > 1).then(mpsc::channel),
            cancelled: CancelOnDrop(Arc::new(AtomicBool::new(false))),
            in_flight: 0,
            max_in_flight: 2 * threads,
            streamed: None,
            spare: Vec::new(),
        }
    }

    /// Appends bytes to the frame being filled.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(streamed) = &mut self.streamed {
            streamed.sha.update(bytes);
            streamed.zstd.write_all(bytes)?;
            return self.emit_streamed();
        }
        self.job.data.extend_from_slice(bytes);
        if self.open_len() > LARGE_FRAME {
            self.start_streaming()?;
        }
        Ok(())
    }

    /// Bytes in the frame being filled (0 while it is streamed: it is not empty then,
    /// see [`FrameWriter::end_frame`]).
    fn open_len(&self) -> usize {
        self.job.data.len() - self.job.frames.last().map_or(0, |f| f.0)
    }

    /// Moves the open frame out of the batch into a stream compressor, once every
    /// frame before it is written out.
    fn start_streaming(&mut self) -> io::Result<()> {
        let start = self.job.frames.last().map_or(0, |f| f.0);
        let open = self.job.data.split_off(start);
        self.dispatch()?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.drain_ready()?;
        let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), self.level)?;
        zstd.include_checksum(true)?;
        let mut streamed = Streamed {
            zstd,
            sha: Sha256::new(),
        };
        streamed.sha.update(&open);
        streamed.zstd.write_all(&open)?;
        self.offsets.push(self.written);
        self.streamed = Some(streamed);
        self.emit_streamed()
    }

    /// Writes out what the stream compressor has produced so far.
    fn emit_streamed(&mut self) -> io::Result<()> {
        if let Some(streamed) = &mut self.streamed {
            let produced = streamed.zstd.get_mut();
            if produced.len() >= BATCH_SIZE {
                self.out.write_all(produced)?;
                self.written += produced.len() as u64;
                produced.clear();
            }
        }
        Ok(())
    }

    /// Ends the streamed frame: its index.
    fn end_streamed(&mut self, streamed: Streamed, digest: bool) -> io::Result<usize> {
        let rest = streamed.zstd.finish()?;
        self.out.write_all(&rest)?;
        self.written += rest.len() as u64;
        let index = self.frames;
        if digest {
            self.digests.insert(index, streamed.sha.finalize().into());
        }
        self.frames += 1;
        // The frames after it start a new batch.
        self.job.index = self.next_to_write;
        Ok(index)
    }

    /// Ends the frame being filled (keeping the sha256 of its input when `digest`);
    /// returns its index, or `None` when it had no bytes (nothing is written).
    pub(super) fn end_frame(&mut self, digest: bool) -> io::Result<Option<usize>> {
        if let Some(streamed) = self.streamed.take() {
            return self.end_streamed(streamed, digest).map(Some);
        }
        if self.open_len() == 0 {
            return Ok(None);
        }
        self.job.frames.push((self.job.data.len(), digest));
        self.frames += 1;
        if self.job.data.len() >= BATCH_SIZE {
            self.dispatch()?;
        }
        Ok(Some(self.frames - 1))
    }

    /// Sends the batch of ended frames to a worker (or compresses it here).
    fn dispatch(&mut self) -> io::Result<()> {
        if self.job.frames.is_empty() {
            return Ok(());
        }
        let next = Job {
            index: self.job.index + 1,
            data: self.spare_buffer(),
            frames: Vec::new(),
            out: Vec::new(),
        };
        let mut job = std::mem::replace(&mut self.job, next);
        job.out = self.spare_buffer();
        let level = self.level;
        if self.pool.is_none() {
            let done = compress_job(level, job);
            self.pending.insert(done.index, done);
            return self.drain_ready();
        }
        let workers = shared_workers_started().max(1);
        while self.in_flight >= self.max_in_flight.min(2 * workers) {
            self.receive_one()?;
        }
        let Some((reply, _)) = &self.pool else {
            return Err(io::Error::other("zstd:chunked: no worker pool"));
        };
        let reply = reply.clone();
        let cancelled = Arc::clone(&self.cancelled.0);
        let run = Box::new(move || {
            if cancelled.load(Ordering::Relaxed) {
                return;
            }
            let _ = reply.send(compress_job(level, job));
        });
        match run_on_shared_workers(run) {
            Ok(()) => self.in_flight += 1,
            Err(run) => {
                // No worker: run it here; it answers on the channel all the same.
                run();
                self.in_flight += 1;
            }
        }
        Ok(())
    }

    /// An empty buffer: a spare one, else a new one the size of a batch.
    fn spare_buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_SIZE + BATCH_SIZE / 4))
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let Some((_, done)) = &self.pool else {
            return Ok(());
        };
        let done = done
            .recv()
            .map_err(|_| io::Error::other("zstd:chunked: a compression worker died"))?;
        self.in_flight -= 1;
        self.pending.insert(done.index, done);
        self.drain_ready()
    }

    /// Writes out every compressed batch that is next in order.
    fn drain_ready(&mut self) -> io::Result<()> {
        while let Some(done) = self.pending.remove(&self.next_to_write) {
            let mut bytes = done.bytes?;
            for (size, digest) in done.frames {
                if let Some(d) = digest {
                    self.digests.insert(self.offsets.len(), d);
                }
                self.offsets.push(self.written);
                self.written += size;
            }
            self.out.write_all(&bytes)?;
            self.next_to_write += 1;
            bytes.clear();
            // One grown far past a batch (around a large frame) is let go.
            let fits = |b: &Vec<u8>| b.capacity() <= 2 * BATCH_SIZE;
            self.spare
                .extend([bytes, done.input].into_iter().filter(fits));
        }
        Ok(())
    }

    /// Ends the last frame, writes every frame out and returns the inner writer, where
    /// each frame begins (and, last, where the frames end) and the sha256 of each frame
    /// whose digest was asked for.
    pub(super) fn finish(mut self) -> io::Result<FramesEnd<W>> {
        self.end_frame(false)?;
        self.dispatch()?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.drain_ready()?;
        if self.offsets.len() != self.frames {
            return Err(io::Error::other("zstd:chunked: a frame was not written"));
        }
        self.offsets.push(self.written);
        let FrameWriter {
            out,
            offsets,
            digests,
            ..
        } = self;
        Ok(FramesEnd {
            out,
            offsets,
            digests,
        })
    }
}

/// What a [`FrameWriter`] leaves.
pub(super) struct FramesEnd<W> {
    pub(super) out: W,
    /// Where frame `i` begins; the last element is where the frames end.
    pub(super) offsets: Vec<u64>,
    /// The sha256 of the input of the frames whose digest was asked for.
    pub(super) digests: BTreeMap<usize, [u8; 32]>,
}

/// Set when the writer is dropped: its batches still queued for the shared workers are
/// not worth compressing then.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
