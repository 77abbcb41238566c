//! The `strata` command: exports directory trees (or snapshot chains committed in
//! containerd) as OCI or Docker images with the strata exporter, and looks after the
//! store it caches layers in: the local store directory, or containerd's content store
//! with `--containerd SOCKET`.
//!
//! Exit codes: 0 success; 1 failure, with one line on stderr naming what failed
//! (`--debug` or `RUST_LOG` show more through `tracing`); 2 usage errors.

// The doc comments of the argument structs are clap's help text, written for a
// terminal (`oci:DIR[:TAG]`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod attest;
mod base;
mod error;
mod export;
mod image_cmds;
mod output;
mod plan;
mod render;
mod sources;
mod store;
mod store_cmds;
mod unpack;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{CliError, EXIT_FAILURE};
use crate::render::ProgressMode;
use crate::store::StoreLocation;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Export directory trees as OCI and Docker images (BuildKit's image exporter, as a command)"
)]
struct Cli {
    /// The store (blobs, image records, layer cache). Default: $XDG_DATA_HOME/strata
    /// or ~/.local/share/strata.
    #[arg(long, global = true, env = "STRATA_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// Use containerd's content store, leases and image records (over its gRPC socket,
    /// e.g. /run/containerd/containerd.sock) instead of the local store's.
    #[arg(long, global = true, env = "STRATA_CONTAINERD", value_name = "SOCKET")]
    containerd: Option<PathBuf>,
    /// The containerd namespace (must exist). Default: "default", created if missing.
    #[arg(long, global = true, value_name = "NS", requires = "containerd")]
    namespace: Option<String>,
    /// Log what happens (tracing, debug level) on stderr; RUST_LOG overrides.
    #[arg(long, global = true)]
    debug: bool,
    /// A registry (HOST[:PORT]) reached over plain HTTP instead of HTTPS, for pulls and
    /// pushes; repeat for several.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export layer directories as an image (OCI layout, docker archive, or store).
    Export(Box<ExportCli>),
    /// Put an image into the store (every blob, verified), so later exports built on
    /// it (--base store:NAME, or the same REF) need no network.
    Pull {
        /// docker://HOST/REPO:TAG|@DIGEST (or bare), oci:DIR[:TAG], oci-archive:FILE[:TAG],
        /// docker-archive:FILE, or with --containerd, containerd:NAME.
        reference: String,
        /// The platform to pull from a multi-platform image, os/arch[/variant]
        /// (default: the host's).
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
    },
    /// List the image records in the store.
    Images,
    /// Remove unreferenced blobs and stale layer registrations from the store.
    Gc,
    /// Verify every blob in the store against its digest (local store only).
    Fsck,
    /// Apply an image record's layers onto a directory as a root filesystem (every
    /// diffID verified); DIR must be empty or new unless --force.
    Unpack {
        /// The image name (as `images` lists it).
        name: String,
        /// The directory to unpack into (created if missing).
        dir: PathBuf,
        /// The platform to unpack from a multi-platform image, os/arch[/variant]
        /// (default: the host's).
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
        /// Own every file by the caller instead of the image's owners (as umoci
        /// unpack --rootless): device nodes are skipped, only user.* xattrs are set.
        #[arg(long)]
        rootless: bool,
        /// Unpack into a directory that is not empty: its content is removed first.
        #[arg(long)]
        force: bool,
    },
    /// Summarize an image record: manifest(s), config, layers.
    Inspect {
        /// The image name (as given to type=image,name=…).
        reference: String,
    },
    /// Delete image records (their content is left to strata gc, or --prune).
    Rm(image_cmds::RmArgs),
    /// Name an image again: new records for SRC's root.
    Tag(image_cmds::TagArgs),
    /// Push an image from the store to a registry (every platform and attestation).
    Push(image_cmds::PushArgs),
    /// Write images from the store as one OCI layout (dir or tar) or docker archive.
    Save(image_cmds::SaveArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["base", "layers", "copies", "spec", "snapshot"])))]
struct ExportCli {
    /// The image to build on: docker://HOST/REPO:TAG|@DIGEST (or a bare HOST/REPO:TAG),
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, store:NAME, or with
    /// --containerd, containerd:NAME. Its layers are reused byte for byte; its config is
    /// the starting config.
    #[arg(long, value_name = "REF", conflicts_with_all = ["spec", "snapshot"])]
    base: Option<String>,
    /// A directory holding the full filesystem state of one layer; repeat, base first.
    #[arg(long = "layer", value_name = "DIR")]
    layers: Vec<PathBuf>,
    /// A layer holding SRC's tree under DEST (default /), like a Dockerfile COPY: no
    /// diff, no whiteouts, owned 0:0 unless --chown; stacked on the --layer chain in
    /// the order given.
    #[arg(long = "copy", value_name = "SRC[:DEST]", conflicts_with_all = ["spec", "snapshot"])]
    copies: Vec<String>,
    /// The owner of every --copy layer's files, numeric UID:GID.
    #[arg(long, value_name = "UID:GID")]
    chown: Option<String>,
    /// History `created_by` of a layer; repeat, one per --layer.
    #[arg(long = "description", value_name = "TEXT")]
    descriptions: Vec<String>,
    /// Image config JSON (Cmd, Env, Labels, …) to patch; unknown fields are kept.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The image's platform, os/arch[/variant] (default: the config's, else the host's).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// A JSON file describing several platforms (see README); replaces --layer,
    /// --description, --config and --platform.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["layers", "descriptions", "config", "platform"])]
    spec: Option<PathBuf>,
    /// With --containerd: export the committed containerd snapshot KEY and its parents
    /// (a chain prepared and committed with `ctr snapshots`) instead of --layer
    /// directories; each snapshot's history text is its strata.io/description label.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["layers", "descriptions", "spec"])]
    snapshot: Option<String>,
    /// The containerd snapshotter holding --snapshot, and the one type=image,unpack=true
    /// extracts into: overlayfs (containerd's default), native, …
    #[arg(long, value_name = "NAME")]
    snapshotter: Option<String>,
    /// Output, buildx syntax: type=oci|docker|image[,dest=PATH][,name=REF][,tar=…]
    /// [,compression=gzip|zstd|uncompressed][,compression-level=N]
    /// [,force-compression=true][,oci-mediatypes=…][,source-date-epoch=N]
    /// [,annotation.KEY=VALUE]…[,oci-artifact=true][,attestation-inline=…];
    /// type=image also [,unpack=true][,store=false]
    /// [,name-canonical=true][,dangling-name-prefix=REPO]
    #[arg(short = 'o', long = "output", value_name = "SPEC", required = true)]
    output: String,
    /// How many layers to compute at the same time (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Take a --layer file whose size and mtime (with nanoseconds) match its parent's
    /// as unchanged without reading it (containerd's rule; faster, but misses a rewrite
    /// that keeps both). Default: compare the bytes of such files.
    #[arg(long)]
    fast_change_detection: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// An attestation, buildx syntax: type=provenance[,mode=min|max],
    /// type=sbom, or type=file,path=STATEMENT.json[,platform=OS/ARCH[/VARIANT]] (an
    /// in-toto v1 statement); repeat for several. Attestations make the image an
    /// index (OCI media types only).
    #[arg(long = "attest", value_name = "SPEC")]
    attests: Vec<String>,
    /// Write the exporter response (containerimage.digest, …) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
}

/// The default store: `$XDG_DATA_HOME/strata`, else `~/.local/share/strata`.
fn default_store() -> Result<PathBuf, CliError> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return Ok(dir.join("strata"));
        }
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/strata")),
        None => Err(CliError::failed(
            "no default store: HOME and XDG_DATA_HOME are unset; pass --store DIR",
        )),
    }
}

fn init_tracing(debug: bool) {
    use tracing_subscriber::EnvFilter;
    // Quiet by default, so a failure is exactly one line on stderr.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ if debug => EnvFilter::new("debug"),
        _ => EnvFilter::new("off"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let store = match cli.store {
        Some(s) => s,
        None => default_store()?,
    };
    let location = match cli.containerd {
        Some(socket) => StoreLocation::Containerd {
            socket,
            namespace: cli.namespace,
        },
        None => StoreLocation::Local(store.clone()),
    };
    match cli.command {
        Command::Export(a) => {
            if a.snapshotter.is_some() && !matches!(location, StoreLocation::Containerd { .. }) {
                return Err(CliError::usage(
                    "--snapshotter names a containerd snapshotter (of --snapshot KEY, or for \
                     unpack=true): it needs --containerd SOCKET",
                ));
            }
            let jobs = match a.jobs {
                Some(n) => n as usize,
                None => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            };
            export::run(
                export::ExportArgs {
                    base: a.base,
                    layers: a.layers,
                    descriptions: a.descriptions,
                    copies: a.copies,
                    chown: a.chown.as_deref().map(plan::parse_chown).transpose()?,
                    insecure_registries: cli.insecure_registries,
                    config: a.config,
                    platform: a.platform,
                    spec: a.spec,
                    output: a.output,
                    jobs,
                    progress: a.progress,
                    metadata_file: a.metadata_file,
                    snapshot: a.snapshot,
                    snapshotter: a.snapshotter,
                    fast_change_detection: a.fast_change_detection,
                    attests: a.attests,
                },
                &location,
                &store,
            )
            .await
        }
        Command::Fsck if matches!(location, StoreLocation::Containerd { .. }) => {
            Err(CliError::failed(
                "fsck checks the local store only: containerd verifies the digest of \
                 every blob it commits (drop --containerd to check the local store)",
            ))
        }
        Command::Pull {
            reference,
            platform,
        } => {
            base::pull(
                &reference,
                platform.as_deref(),
                &location,
                &store,
                &cli.insecure_registries,
            )
            .await
        }
        Command::Images => store_cmds::images(&store::open(&location, false).await?).await,
        Command::Gc => store_cmds::gc(&store::open(&location, false).await?, &store).await,
        Command::Fsck => store_cmds::fsck_cmd(&store::open(&location, false).await?).await,
        Command::Unpack {
            name,
            dir,
            platform,
            rootless,
            force,
        } => {
            let args = unpack::UnpackArgs {
                name: &name,
                dir: &dir,
                platform: platform.as_deref(),
                rootless,
                force,
            };
            unpack::run(args, &location).await
        }
        Command::Inspect { reference } => {
            store_cmds::inspect(&store::open(&location, false).await?, &reference).await
        }
        Command::Rm(args) => {
            image_cmds::rm(&store::open(&location, false).await?, &store, args).await
        }
        Command::Tag(args) => image_cmds::tag(&store::open(&location, false).await?, args).await,
        Command::Push(args) => {
            let opened = store::open(&location, false).await?;
            image_cmds::push(&opened, &cli.insecure_registries, args).await
        }
        Command::Save(args) => {
            let options = image_cmds::save_options(&args)?;
            image_cmds::save(&store::open(&location, false).await?, &options, args).await
        }
    }
}

fn main() {
    // Usage errors exit with clap's code 2.
    let cli = Cli::parse();
    init_tracing(cli.debug);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            std::process::exit(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    // Let background cleanups (lease release, view removal) finish.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = result {
        tracing::debug!(error = ?e, "command failed");
        eprintln!("strata: {e}");
        std::process::exit(e.code);
    }
}
