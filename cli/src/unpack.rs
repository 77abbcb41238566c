//! `strata unpack NAME DIR`: an image record of the store (or of containerd) applied
//! onto a directory as a root filesystem ([`strata_cache::unpack_rootfs`]).

use std::path::Path;
use std::sync::Arc;

use strata_cache::{unpack_rootfs, ImageRecords, UnpackOptions};
use strata_differ::WalkingDiffer;

use crate::error::CliError;
use crate::plan::parse_platform;
use crate::store::{self, StoreLocation};

/// What `strata unpack` was asked for.
pub struct UnpackArgs<'a> {
    /// The image record's name.
    pub name: &'a str,
    /// The target directory.
    pub dir: &'a Path,
    /// `--platform os/arch[/variant]`.
    pub platform: Option<&'a str>,
    /// `--rootless`.
    pub rootless: bool,
    /// `--force`.
    pub force: bool,
}

/// Unpacks the image record `args.name` of the store at `location` into `args.dir`;
/// prints the manifest digest of the platform unpacked.
pub async fn run(args: UnpackArgs<'_>, location: &StoreLocation) -> Result<(), CliError> {
    let options = UnpackOptions {
        platform: args.platform.map(parse_platform).transpose()?,
        rootless: args.rootless,
        force: args.force,
    };
    let store = store::open(location, false).await?;
    let records = ImageRecords {
        content: store.content.clone(),
        images: store.images.clone(),
        name: store.shown.clone(),
    };
    let root = records
        .open(args.name)
        .await
        .map_err(|e| CliError::context(format!("unpacking from {}", store.shown), e))?;
    let applier = WalkingDiffer::new(Arc::clone(&store.content));
    let unpacked = unpack_rootfs(&root, &applier, args.dir, &options)
        .await
        .map_err(|e| CliError::context("unpack", e))?;
    eprintln!(
        "unpacked {} ({}, {} layers) into {}",
        args.name,
        unpacked.platform,
        unpacked.layers.len(),
        args.dir.display()
    );
    println!("{}", unpacked.manifest.digest);
    Ok(())
}
