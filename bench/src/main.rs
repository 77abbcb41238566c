//! # strata-bench
//!
//! Measures strata against its peers on a real Debian rootfs, in one run:
//!
//! ```text
//! cargo run --release -p strata-bench -- differ [--cache DIR]
//! cargo run --release -p strata-bench -- base [--runs N]   # base image on a loopback registry
//! cargo run --release -p strata-bench -- crash [--kills 40] # SIGKILLed exports, then gc
//! cargo run --release -p strata-bench -- unpack [--runs N] # strata unpack against umoci unpack
//! ```
//!
//! The rootfs (`debootstrap --variant=minbase bookworm`) and the containerd peer
//! (`../shared/peers/ctddiff`) are built once and cached outside the repository
//! (default `~/.cache/strata-bench`). Every measured command runs as a child process,
//! strata included (the binary re-executes itself with a hidden subcommand), so peak
//! memory is measured the same way for everyone: `wait4`'s `ru_maxrss` of that child.
//!
//! Timing belongs here, never in tests.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod base;
mod crash;
mod debian;
mod differ;
mod estargz;
mod sbom;
mod synthetic;
mod unpack;
mod zstd_chunked;

use clap::{Parser, Subcommand};
use serde::Deserialize;

use strata_oci::Compression;

#[derive(Parser)]
#[command(about = "Benchmarks of strata against containerd's walking differ")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compare empty → Debian rootfs: strata (gzip, zstd; 1 thread and all) against
    /// containerd's walking differ, and the `tar | pigz | sha256sum` floor.
    Differ {
        /// Where the rootfs, the peer binary and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// The Debian chain (base → +python3 → slim, and a one-file change on top) exported
    /// as an OCI layout by strata (library and CLI; cold, warm, one-file change; gzip
    /// and zstd; jobs=1 and all) against ctddiff, umoci repack and the pigz/zstd floor.
    Debian {
        /// Where the trees, the peer binary and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// A Debian-sized base image on a loopback docker-registry: cold pull + extract
    /// (strata against skopeo copy + umoci unpack), a warm export of one COPY layer on
    /// the pulled base, and the push of that image (blob uploads counted).
    Base {
        /// Where the rootfs, the base image's layout and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// Cold exports of the Debian chain into one store, each SIGKILLed at a random
    /// moment; then SQLite's integrity check, gc, fsck, the next export's digest and
    /// the store's bytes against a clean store's (issue 14).
    Crash {
        /// Where the trees and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// How many exports to kill.
        #[arg(long, default_value_t = 40)]
        kills: usize,
        /// Seed of the kill moments.
        #[arg(long, default_value_t = 14)]
        seed: u64,
    },
    /// The Debian chain image (3 gzip layers) unpacked as a rootfs: `strata unpack`
    /// from the store against `umoci unpack` (and `umoci raw unpack`) of the same image
    /// as an OCI layout; the trees must be equal.
    Unpack {
        /// Where the trees and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// The Debian base layer as eStargz: strata's export with `compression=estargz`
    /// against stargz-snapshotter's `estargz.Build` on the same tar (time, RSS, blob
    /// size; strata's blob verified by the peer).
    Estargz {
        /// Where the rootfs, the peer binary and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// The Debian base layer as zstd:chunked against plain zstd, both strata exports
    /// in the same run (time, RSS, blob size; the diffIDs must agree).
    ZstdChunked {
        /// Where the rootfs and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// What `--attest type=sbom` adds to a CLI export of the Debian chain, cold and
    /// warm, against the same export without it in the same run.
    Sbom {
        /// Where the Debian chain and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// (internal) the child measurements of `base`.
    #[command(hide = true, subcommand)]
    MeasureBase(base::Measure),
    /// Generated trees (1k, 10k, 100k files; with --large also 1M files, 1 GiB and
    /// 4 GiB): µs/file, s/GiB, peak RSS, and a one-file change through the overlay fast
    /// path against the double walk.
    Synthetic {
        /// Where the generated trees and scratch stores are kept.
        #[arg(long, env = "STRATA_BENCH_CACHE")]
        cache: Option<PathBuf>,
        /// Runs per configuration (the fastest is reported).
        #[arg(long, default_value_t = 2)]
        runs: usize,
        /// Also the 1M-file, 1 GiB and 4 GiB trees (minutes to generate, GiBs of disk).
        #[arg(long)]
        large: bool,
    },
    /// (internal) one synthetic measurement.
    #[command(hide = true)]
    MeasureSynthetic {
        #[arg(long)]
        tree: PathBuf,
        #[arg(long)]
        scratch: PathBuf,
        #[arg(long)]
        files: u64,
    },
    /// (internal) one in-process export measurement (cold, warm, change).
    #[command(hide = true)]
    MeasureExport {
        /// The four trees: base, python3, slim, touched.
        #[arg(long)]
        tree: Vec<PathBuf>,
        #[arg(long)]
        scratch: PathBuf,
        #[arg(long)]
        compression: String,
        #[arg(long)]
        jobs: usize,
    },
    /// (internal) strata's layer encoder alone over tar files (no walk, no hashing):
    /// the compression floor of strata's own design.
    #[command(hide = true)]
    MeasureEncoder {
        #[arg(long)]
        tar: Vec<PathBuf>,
        #[arg(long)]
        compression: String,
        #[arg(long)]
        threads: usize,
    },
    /// (internal) one strata measurement, run as a child process.
    #[command(hide = true)]
    MeasureStrata {
        #[arg(long)]
        lower: PathBuf,
        #[arg(long)]
        upper: PathBuf,
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        compression: String,
        #[arg(long)]
        threads: usize,
    },
}

/// What ctddiff prints (the fields we use).
#[derive(Deserialize)]
struct PeerResult {
    digest: String,
    diff_id: String,
    size: u64,
    uncompressed_size: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Differ { cache, runs } => differ::bench_differ(cache, runs.max(1)),
        Cmd::Debian { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| debian::bench(&cache, runs.max(1)))
        }
        Cmd::Base { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| base::bench(&cache, runs.max(1)))
        }
        Cmd::Crash { cache, kills, seed } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| crash::bench(&cache, kills, seed))
        }
        Cmd::Unpack { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| unpack::bench(&cache, runs.max(1)))
        }
        Cmd::Estargz { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| estargz::bench(&cache, runs.max(1)))
        }
        Cmd::ZstdChunked { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| zstd_chunked::bench(&cache, runs.max(1)))
        }
        Cmd::Sbom { cache, runs } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| sbom::bench(&cache, runs.max(1)))
        }
        Cmd::MeasureBase(measure) => base::run_measure(measure),
        Cmd::Synthetic { cache, runs, large } => {
            let cache = cache.unwrap_or_else(default_cache);
            fs::create_dir_all(&cache)
                .map_err(BoxError::from)
                .and_then(|_| synthetic::bench(&cache, runs.max(1), large))
        }
        Cmd::MeasureSynthetic {
            tree,
            scratch,
            files,
        } => synthetic::measure(&tree, &scratch, files).and_then(|t| {
            println!("{}", serde_json::to_string(&t)?);
            Ok(())
        }),
        Cmd::MeasureExport {
            tree,
            scratch,
            compression,
            jobs,
        } => debian::measure_export(&tree, &scratch, &compression, jobs).and_then(|t| {
            println!("{}", serde_json::to_string(&t)?);
            Ok(())
        }),
        Cmd::MeasureEncoder {
            tar,
            compression,
            threads,
        } => measure_encoder(&tar, &compression, threads),
        Cmd::MeasureStrata {
            lower,
            upper,
            store,
            compression,
            threads,
        } => differ::measure_strata(&lower, &upper, &store, &compression, threads),
    };
    if let Err(e) = result {
        eprintln!("strata-bench: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("strata-bench")
}

/// Builds (once) the Debian chain in `cache` up to the tree `upto` with
/// `scripts/debian-chain.sh` (the one recipe, shared with the SBOM tests).
fn ensure_debian_chain(cache: &Path, upto: &str) -> Result<(), BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/debian-chain.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(cache)
        .arg(upto)
        .status()
        .map_err(|e| format!("running {script:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{script:?} failed ({status}); it needs root, debootstrap and a Debian mirror"
        )
        .into());
    }
    Ok(())
}

/// The cached minbase rootfs, built with debootstrap the first time.
fn ensure_rootfs(cache: &Path) -> Result<PathBuf, BoxError> {
    ensure_debian_chain(cache, "rootfs")?;
    Ok(cache.join("rootfs"))
}

/// Builds ctddiff with the script in `../shared/peers/ctddiff`; returns its path.
fn ensure_ctddiff(cache: &Path) -> Result<PathBuf, BoxError> {
    build_shared_peer("ctddiff", "CTDDIFF_OUT", &cache.join("peers"))
}

/// Runs `../shared/peers/<peer>/build.sh` with `out_var=out` (where it builds); returns
/// the binary path the script prints as its last line.
fn build_shared_peer(peer: &str, out_var: &str, out: &Path) -> Result<PathBuf, BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peers")
        .join(peer)
        .join("build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env(out_var, out)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {script:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script:?} failed ({})", out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .ok_or_else(|| format!("{script:?} printed no path"))?;
    Ok(PathBuf::from(path.trim()))
}

/// Runs `cmd`, returning its stdout, wall seconds and peak RSS (KiB) from `wait4`.
fn run_measured(cmd: &mut Command) -> Result<(Vec<u8>, f64, i64), BoxError> {
    run_measured_cpu(cmd).map(|m| (m.stdout, m.seconds, m.peak_rss_kib))
}

/// What [`run_measured_cpu`] measured of a child process.
struct Measured {
    stdout: Vec<u8>,
    /// Wall seconds.
    seconds: f64,
    /// Peak RSS in KiB.
    peak_rss_kib: i64,
    /// User + system CPU seconds (its threads and waited-for children).
    cpu_seconds: f64,
}

/// Runs `cmd`: its stdout, wall seconds, peak RSS and CPU seconds from `wait4`.
fn run_measured_cpu(cmd: &mut Command) -> Result<Measured, BoxError> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning {cmd:?}: {e}"))?;
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if r != pid {
        return Err(format!("wait4 {cmd:?}: {}", io::Error::last_os_error()).into());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{cmd:?} failed (wait status {status})").into());
    }
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        stdout,
        seconds,
        peak_rss_kib: usage.ru_maxrss,
        cpu_seconds: cpu(usage.ru_utime) + cpu(usage.ru_stime),
    })
}

/// Counts what is written to it.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The child side of the encoder-alone floor: prints the compressed bytes.
fn measure_encoder(tars: &[PathBuf], compression: &str, threads: usize) -> Result<(), BoxError> {
    let compression = Compression::parse(compression)
        .ok_or_else(|| format!("unknown compression {compression}"))?;
    let mut total = 0;
    for tar in tars {
        let mut enc =
            strata_differ::Encoder::new(CountingSink(0), compression, None, Some(threads))?;
        io::copy(&mut fs::File::open(tar)?, &mut enc)?;
        total += enc.finish()?.0;
    }
    println!("{total}");
    Ok(())
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
