//! Layer compression: gzip (parallel, pigz-style), zstd (multithreaded) and none.
//!
//! Every encoder here produces the same bytes for the same input, level and options
//! whatever the thread count, so a layer's digest depends only on its content.

mod gzip;

use std::io::{self, Write};

use strata_content::Compression;

pub use gzip::{ParallelGzEncoder, BLOCK_SIZE as GZIP_BLOCK_SIZE};

/// The default gzip level (BuildKit's and Go's default).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// The default zstd level (BuildKit's default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The level to use for `compression` when the caller asked for `level`, clamped to
/// the range the format supports (gzip 0–9, zstd 1–22; ignored for uncompressed).
pub fn effective_level(compression: Compression, level: Option<i32>) -> i32 {
    match compression {
        Compression::Uncompressed => 0,
        Compression::Gzip => level.unwrap_or(DEFAULT_GZIP_LEVEL).clamp(0, 9),
        Compression::Zstd => level.unwrap_or(DEFAULT_ZSTD_LEVEL).clamp(1, 22),
    }
}

/// The compression threads to use: `threads`, or the machine's cores; at least 1.
pub fn effective_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// A streaming compressor writing into `W`; call [`Encoder::finish`] to end the stream.
pub enum Encoder<W: Write> {
    /// Pass-through.
    Uncompressed(W),
    /// Parallel gzip.
    Gzip(Box<ParallelGzEncoder<W>>),
    /// Multithreaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder for `compression` at `level` (`None`: the default) with `threads`
    /// threads (`None`: the machine's cores). The output does not depend on `threads`.
    pub fn new(
        out: W,
        compression: Compression,
        level: Option<i32>,
        threads: Option<usize>,
    ) -> io::Result<Self> {
        let level = effective_level(compression, level);
        let threads = effective_threads(threads);
        Ok(match compression {
            Compression::Uncompressed => Encoder::Uncompressed(out),
            Compression::Gzip => {
                Encoder::Gzip(Box::new(ParallelGzEncoder::new(out, level as u32, threads)))
            }
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // Always at least one worker: zstd's multithreaded format (its job
                // boundaries) then depends only on the level, never on the count.
                enc.multithread(threads as u32)?;
                enc.include_checksum(false)?;
                Encoder::Zstd(enc)
            }
        })
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Uncompressed(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Gzip(g) => (*g).finish(),
            Encoder::Zstd(z) => {
                let mut w = z.finish()?;
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Uncompressed(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Uncompressed(w) => w.write_all(buf),
            Encoder::Gzip(g) => g.write_all(buf),
            Encoder::Zstd(z) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Uncompressed(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            // A zstd flush would end a block early and make the bytes depend on the
            // caller's flush calls.
            Encoder::Zstd(_) => Ok(()),
        }
    }
}

/// Compresses `data` in memory (for small blobs such as the empty layer).
pub fn compress_to_vec(
    data: &[u8],
    compression: Compression,
    level: Option<i32>,
    threads: Option<usize>,
) -> io::Result<Vec<u8>> {
    let mut enc = Encoder::new(Vec::new(), compression, level, threads)?;
    enc.write_all(data)?;
    enc.finish()
}
