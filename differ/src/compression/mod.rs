//! Layer compression: gzip (parallel, pigz-style), zstd (multithreaded) and none.
//!
//! Every encoder here produces the same bytes for the same input, level and options
//! whatever the thread count, so a layer's digest depends only on its content.

pub(crate) mod deflate_block;
mod estargz;
mod gzip;
mod off_thread;
mod tar_stream;
mod zstd_chunked;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_oci::Compression;

use estargz::EstargzEncoder;
pub use estargz::DEFAULT_CHUNK_SIZE as DEFAULT_ESTARGZ_CHUNK_SIZE;
use gzip::ParallelGzEncoder;
#[cfg(test)]
use gzip::BLOCK_SIZE as GZIP_BLOCK_SIZE;
use off_thread::OffThread;
use zstd_chunked::ZstdChunkedEncoder;

/// The default gzip level (BuildKit's and Go's default).
pub(crate) const DEFAULT_GZIP_LEVEL: i32 = 6;

/// The size of a multithreaded zstd job (input bytes compressed by one worker).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// The default zstd level (BuildKit's default).
pub(crate) const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The level to use for `compression` when the caller asked for `level`, clamped to
/// the range the format supports (gzip 0–9, zstd 1–22; ignored for uncompressed).
pub(crate) fn effective_level(compression: Compression, level: Option<i32>) -> i32 {
    match compression {
        Compression::Uncompressed => 0,
        Compression::Gzip | Compression::Estargz => level.unwrap_or(DEFAULT_GZIP_LEVEL).clamp(0, 9),
        Compression::Zstd | Compression::ZstdChunked => {
            level.unwrap_or(DEFAULT_ZSTD_LEVEL).clamp(1, 22)
        }
    }
}

/// The compression threads to use: `threads`, or the machine's cores; at least 1.
pub(crate) fn effective_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// zstd encoders alive now (each layer compressed at once has one).
static ZSTD_ENCODERS: AtomicUsize = AtomicUsize::new(0);

/// A zstd encoder's number of workers: the threads asked for, divided among the zstd
/// encoders alive when it starts (at least 1), so that layers compressed at once (an
/// export's `jobs`) start about as many zstd workers as there are cores, not cores²
/// (each worker holds its own job buffers and match state). The bytes do not depend
/// on it.
#[derive(Debug)]
pub(crate) struct ZstdShare {
    workers: usize,
}

impl ZstdShare {
    fn take(threads: usize) -> ZstdShare {
        let others = ZSTD_ENCODERS.fetch_add(1, Ordering::Relaxed);
        ZstdShare {
            workers: (threads / (others + 1)).max(1),
        }
    }
}

impl Drop for ZstdShare {
    fn drop(&mut self) {
        ZSTD_ENCODERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A streaming compressor writing into `W`: gzip (parallel, pigz-style), zstd
/// (multithreaded) or none; call [`Encoder::finish`] to end the stream. The bytes
/// depend only on the input, the compression and the level, never on the thread count.
pub struct Encoder<W: Write>(Compressor<W>);

/// The encoder of each compression.
enum Compressor<W: Write> {
    /// Pass-through.
    Uncompressed(W),
    /// Parallel gzip.
    Gzip(Box<ParallelGzEncoder<W>>),
    /// Multithreaded zstd, and its share of the machine's zstd workers.
    Zstd(zstd::stream::write::Encoder<'static, W>, ZstdShare),
    /// eStargz: parallel gzip members cut where the tar's entries and chunks are.
    Estargz(Box<EstargzEncoder<W>>),
    /// zstd:chunked: parallel zstd frames cut where the tar's entries and chunks are,
    /// the tar read on the encoder's own thread.
    ZstdChunked(OffThread<(W, BTreeMap<String, String>)>),
}

/// What an [`Encoder`] leaves when it ends ([`Encoder::finish_layer`]).
pub struct FinishedLayer<W> {
    /// The inner writer, everything written to it.
    pub out: W,
    /// Uncompressed bytes the encoder appended to the tar it was given (eStargz: the
    /// TOC's tar entry and the end-of-archive blocks; empty for the others). The
    /// blob decompresses to the tar followed by these: the diffID covers them.
    pub appended: Vec<u8>,
    /// Annotations the layer's descriptor must carry (eStargz: the TOC digest and the
    /// uncompressed size; zstd:chunked: the manifest checksum and the positions of the
    /// manifest and the tar-split; empty for the others).
    pub annotations: BTreeMap<String, String>,
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// An encoder for `compression` at `level` (`None`: the default) with `threads`
    /// threads (`None`: the machine's cores). The output does not depend on `threads`.
    pub fn new(
        out: W,
        compression: Compression,
        level: Option<i32>,
        threads: Option<usize>,
    ) -> io::Result<Self> {
        Self::with_chunk_size(out, compression, level, threads, None)
    }

    /// [`Encoder::new`] with eStargz payload chunks of `estargz_chunk_size` bytes
    /// (`None`: 4 MiB, stargz-snapshotter's default; ignored for other compressions).
    pub fn with_chunk_size(
        out: W,
        compression: Compression,
        level: Option<i32>,
        threads: Option<usize>,
        estargz_chunk_size: Option<u64>,
    ) -> io::Result<Self> {
        let level = effective_level(compression, level);
        let threads = effective_threads(threads);
        Ok(Encoder(match compression {
            Compression::Uncompressed => Compressor::Uncompressed(out),
            Compression::Gzip => {
                Compressor::Gzip(Box::new(ParallelGzEncoder::new(out, level as u32, threads)))
            }
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // Always at least one worker: zstd's multithreaded format (its job
                // boundaries) then depends only on the level, never on the count.
                let share = ZstdShare::take(threads);
                enc.multithread(share.workers as u32)?;
                // 2 MiB jobs instead of libzstd's default (4 × the window): each worker
                // buffers about two jobs, so this bounds memory per layer (the bench's
                // debian chain at jobs=2 went past 100 MiB). Fixed, so the bytes still do
                // not depend on the thread count.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                // A content checksum, as the zstd CLI and Go's klauspost encoder
                // (containerd, BuildKit) write by default.
                enc.include_checksum(true)?;
                Compressor::Zstd(enc, share)
            }
            Compression::Estargz => Compressor::Estargz(Box::new(EstargzEncoder::new(
                out,
                level as u32,
                threads,
                estargz_chunk_size.unwrap_or(DEFAULT_ESTARGZ_CHUNK_SIZE),
            ))),
            Compression::ZstdChunked => Compressor::ZstdChunked(OffThread::spawn(
                "strata-zstd-chunked",
                ZstdChunkedEncoder::new(out, level, threads)?,
                ZstdChunkedEncoder::finish,
            )?),
        }))
    }

    /// Ends the stream: the inner writer, and what eStargz added (the uncompressed
    /// bytes it appended, the descriptor's annotations).
    pub fn finish_layer(self) -> io::Result<FinishedLayer<W>> {
        match self.0 {
            Compressor::Estargz(e) => {
                let end = (*e).finish()?;
                let annotations = BTreeMap::from([
                    (
                        strata_oci::annotations::ESTARGZ_TOC_DIGEST.to_string(),
                        end.toc_digest.to_string(),
                    ),
                    (
                        strata_oci::annotations::ESTARGZ_UNCOMPRESSED_SIZE.to_string(),
                        end.uncompressed_size.to_string(),
                    ),
                ]);
                Ok(FinishedLayer {
                    out: end.out,
                    appended: end.appended,
                    annotations,
                })
            }
            Compressor::ZstdChunked(z) => {
                let (out, annotations) = z.finish()?;
                Ok(FinishedLayer {
                    out,
                    appended: Vec::new(),
                    annotations,
                })
            }
            other => Ok(FinishedLayer {
                out: Encoder(other).finish()?,
                appended: Vec::new(),
                annotations: BTreeMap::new(),
            }),
        }
    }

    /// Ends the stream and returns the inner writer (for eStargz, see
    /// [`Encoder::finish_layer`]: the diffID and annotations need what it returns).
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Compressor::Estargz(_) | Compressor::ZstdChunked(_) => {
                self.finish_layer().map(|f| f.out)
            }
            Compressor::Uncompressed(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Compressor::Gzip(g) => (*g).finish(),
            Compressor::Zstd(z, _share) => {
                let mut w = z.finish()?;
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Compressor::Uncompressed(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z, _) => z.write(buf),
            Compressor::Estargz(e) => e.write(buf),
            Compressor::ZstdChunked(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Compressor::Uncompressed(w) => w.write_all(buf),
            Compressor::Gzip(g) => g.write_all(buf),
            Compressor::Zstd(z, _) => z.write_all(buf),
            Compressor::Estargz(e) => e.write_all(buf),
            Compressor::ZstdChunked(z) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Compressor::Uncompressed(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            // A zstd flush would end a block early and make the bytes depend on the
            // caller's flush calls.
            Compressor::Zstd(..) | Compressor::Estargz(_) | Compressor::ZstdChunked(_) => Ok(()),
        }
    }
}

/// Compresses `data` in memory (for small blobs such as the empty layer).
pub(crate) fn compress_to_vec(
    data: &[u8],
    compression: Compression,
    level: Option<i32>,
    threads: Option<usize>,
) -> io::Result<Vec<u8>> {
    let mut enc = Encoder::new(Vec::new(), compression, level, threads)?;
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    /// Compressible, non-repeating test data (words picked by an LCG), `len` bytes.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "layer",
            "tar",
            "blob",
            "digest",
            "snapshot",
            "overlay",
            "whiteout",
            "usr/",
            "lib/",
            "bin",
            "\n",
            "\0\0\0",
            "0644",
            "root",
            "strata",
            "x86_64-linux-gnu",
        ];
        let mut out = Vec::with_capacity(len + 32);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let w = WORDS[(x >> 59) as usize % WORDS.len()];
            out.extend_from_slice(w.as_bytes());
            if (x >> 40) & 7 == 0 {
                out.push((x >> 32) as u8);
            }
        }
        out.truncate(len);
        out
    }

    /// Compresses `data`, handing it over in pieces of `piece` bytes.
    fn compress(data: &[u8], c: Compression, threads: usize, piece: usize) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new(), c, None, Some(threads)).expect("encoder");
        for part in data.chunks(piece.max(1)) {
            enc.write_all(part).expect("write");
        }
        enc.finish().expect("finish")
    }

    fn external_decompress(tool: &str, args: &[&str], blob: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} must be installed: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = blob.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("wait");
        feeder.join().expect("feeder").expect("feed");
        assert!(out.status.success(), "{tool} {args:?} failed");
        out.stdout
    }

    const SIZES: &[usize] = &[
        0,
        1,
        GZIP_BLOCK_SIZE - 1,
        GZIP_BLOCK_SIZE,
        GZIP_BLOCK_SIZE + 1,
        3 * GZIP_BLOCK_SIZE,
        5 * 1024 * 1024 + 17,
    ];

    #[test]
    fn gzip_bytes_do_not_depend_on_threads_or_write_sizes() {
        for &len in SIZES {
            let data = sample(len);
            let one = compress(&data, Compression::Gzip, 1, 1 << 20);
            for (threads, piece) in [(2, 4096), (4, 1000), (3, 1 << 20), (1, 7)] {
                let other = compress(&data, Compression::Gzip, threads, piece);
                assert!(
                    one == other,
                    "gzip of {len} bytes differs with {threads} threads"
                );
            }
        }
    }

    #[test]
    fn gzip_encoders_sharing_the_workers_at_once_give_their_own_bytes() {
        // Layers of one export are compressed at the same time by the shared workers:
        // each must get exactly the bytes it would get alone.
        let inputs: Vec<Vec<u8>> = (0..4)
            .map(|i| sample(3 * GZIP_BLOCK_SIZE + 1000 * i))
            .collect();
        let alone: Vec<Vec<u8>> = inputs
            .iter()
            .map(|d| compress(d, Compression::Gzip, 1, 1 << 20))
            .collect();
        let together: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = inputs
                .iter()
                .map(|d| scope.spawn(move || compress(d, Compression::Gzip, 4, 5000)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("encoder thread"))
                .collect()
        });
        assert!(alone == together, "concurrent encoders changed the bytes");
    }

    #[test]
    fn gzip_decodes_with_flate2_gzip_and_pigz() {
        for &len in SIZES {
            let data = sample(len);
            let blob = compress(&data, Compression::Gzip, 2, 10_000);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut back)
                .expect("flate2 decodes");
            assert!(back == data, "flate2 round trip of {len} bytes");
            assert!(
                external_decompress("pigz", &["-dc"], &blob) == data,
                "pigz -dc"
            );
            assert!(
                external_decompress("gzip", &["-dc"], &blob) == data,
                "gzip -dc"
            );
        }
    }

    /// Real bytes a layer is made of: this test binary (machine code, symbols) and the
    /// crate's own sources (text), 4 MiB or more.
    fn real_bytes() -> Vec<u8> {
        let mut data = std::fs::read(std::env::current_exe().expect("test binary")).expect("read");
        data.truncate(3 << 20);
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    stack.push(path);
                } else {
                    data.extend(std::fs::read(&path).expect("read source"));
                }
            }
        }
        while data.len() < 4 << 20 {
            data.extend_from_within(..data.len().min(1 << 20));
        }
        data
    }

    #[test]
    fn gzip_is_no_larger_than_zlib_on_real_bytes() {
        let data = real_bytes();
        let ours = compress(&data, Compression::Gzip, 2, 1 << 16);
        let mut plain = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        plain.write_all(&data).expect("write");
        let plain = plain.finish().expect("finish");
        // Independent 1 MiB blocks cost a little; libdeflate more than makes up for it
        // (the bound: within 3 % of a single-stream level-6 gzip).
        assert!(
            (ours.len() as f64) < plain.len() as f64 * 1.03,
            "ours {} vs zlib {}",
            ours.len(),
            plain.len()
        );
    }

    #[test]
    fn gzip_levels_change_the_bytes_and_all_decode() {
        let data = sample(600_000);
        let mut seen = Vec::new();
        for level in [0, 1, 6, 9] {
            let mut enc =
                Encoder::new(Vec::new(), Compression::Gzip, Some(level), Some(2)).expect("enc");
            enc.write_all(&data).expect("write");
            let blob = enc.finish().expect("finish");
            assert!(external_decompress("gzip", &["-dc"], &blob) == data);
            seen.push(blob);
        }
        assert!(seen[0].len() > data.len(), "level 0 stores");
        assert!(seen[1] != seen[2] && seen[2].len() < seen[1].len());
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_threads() {
        for &len in &[0usize, 1, 5 * 1024 * 1024 + 17, 40 * 1024 * 1024] {
            let data = sample(len);
            let one = compress(&data, Compression::Zstd, 1, 1 << 20);
            for threads in [2, 4] {
                let other = compress(&data, Compression::Zstd, threads, 3000);
                assert!(
                    one == other,
                    "zstd of {len} bytes differs with {threads} threads"
                );
            }
            if len < 10 * 1024 * 1024 {
                assert!(
                    external_decompress("zstd", &["-dc"], &one) == data,
                    "zstd -dc"
                );
            }
        }
    }

    #[test]
    fn uncompressed_is_the_input() {
        let data = sample(300_000);
        assert_eq!(compress(&data, Compression::Uncompressed, 2, 999), data);
    }

    #[test]
    fn levels_are_clamped_and_defaulted() {
        assert_eq!(effective_level(Compression::Gzip, None), 6);
        assert_eq!(effective_level(Compression::Gzip, Some(42)), 9);
        assert_eq!(effective_level(Compression::Zstd, None), 3);
        assert_eq!(effective_level(Compression::Zstd, Some(0)), 1);
        assert_eq!(effective_threads(Some(0)), 1);
    }
}
