//! `strata rm`, `tag`, `push` and `save`: the image records of a store (the local one
//! or containerd's, through the same traits), one library call each.

use std::collections::BTreeMap;
use std::path::Path;

use strata_content::{remove_images, tag_image, Error as ContentError};
use strata_exporter::{
    push_image, save_images, BlobOutcome, Error as ExportError, Progress, Pusher, SaveOptions,
};

use crate::error::CliError;
use crate::export::push_options;
use crate::output::parse_output;
use crate::render::{render, ProgressMode};
use crate::store::Store;

/// `strata rm NAME…`.
#[derive(clap::Args)]
pub struct RmArgs {
    /// The image names to delete (see strata images). When any is unknown, none is
    /// deleted.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Run strata gc afterwards, removing the content no other image references.
    #[arg(long)]
    prune: bool,
}

/// `strata tag SRC DST…`.
#[derive(clap::Args)]
pub struct TagArgs {
    /// The image to name again.
    #[arg(value_name = "SRC")]
    source: String,
    /// The new names.
    #[arg(required = true, value_name = "DST")]
    targets: Vec<String>,
    /// Point a DST that already names an image at SRC instead of failing.
    #[arg(long)]
    force: bool,
}

/// `strata push NAME [REF]`.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The image to push (see strata images).
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to push it, [docker://]HOST[:PORT]/REPO[:TAG] (default: NAME).
    #[arg(value_name = "REF")]
    reference: Option<String>,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

/// `strata save NAME… -o type=oci|docker,dest=PATH[,tar=false]`.
#[derive(clap::Args)]
pub struct SaveArgs {
    /// The images to write (see strata images), all into one archive.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// type=oci|docker,dest=PATH[,tar=true|false]: an OCI layout (tar, or a directory
    /// with tar=false) or a docker-archive tar.
    #[arg(short = 'o', long = "output", value_name = "SPEC", required = true)]
    output: String,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

/// A content-store error about image records as one line: an unknown image is named
/// with the store it is missing from.
fn records_error(store: &Store, what: &str, e: ContentError) -> CliError {
    match e {
        ContentError::NotFound(missing) => CliError::failed(format!(
            "{what}: no {missing} in {} (see strata images)",
            store.shown
        )),
        ContentError::AlreadyExists(taken) => CliError::failed(format!(
            "{what}: {taken} exists already in {} (--force points it at the source)",
            store.shown
        )),
        other => CliError::context(what, other),
    }
}

/// An exporter error of `push` or `save`, naming an unknown image with its store.
fn export_error(store: &Store, what: &str, e: ExportError) -> CliError {
    match e {
        ExportError::NoImage { name } => CliError::failed(format!(
            "{what}: no image {name:?} in {} (see strata images)",
            store.shown
        )),
        other => CliError::context(what, other),
    }
}

/// `strata rm`: deletes the records (all or none), prints each name; `--prune` then
/// collects what nothing references any more.
pub async fn rm(store: &Store, store_dir: &Path, args: RmArgs) -> Result<(), CliError> {
    let removed = remove_images(store.images.as_ref(), &args.names)
        .await
        .map_err(|e| records_error(store, "rm", e))?;
    for image in &removed {
        println!("{}", image.name);
    }
    if args.prune {
        crate::store_cmds::gc(store, store_dir).await?;
    }
    Ok(())
}

/// `strata tag`: records each DST for SRC's root; prints each new name.
pub async fn tag(store: &Store, args: TagArgs) -> Result<(), CliError> {
    let tagged = tag_image(
        store.images.as_ref(),
        &args.source,
        &args.targets,
        args.force,
    )
    .await
    .map_err(|e| records_error(store, "tag", e))?;
    for image in &tagged {
        println!("{}", image.name);
    }
    Ok(())
}

/// `strata push`: pushes the image with progress; prints its digest on stdout and
/// what happened to its blobs on stderr.
pub async fn push(store: &Store, insecure: &[String], args: PushArgs) -> Result<(), CliError> {
    let pusher = Pusher::new(store.content.clone(), push_options(insecure));
    let (progress, events) = Progress::channel();
    let renderer = tokio::spawn(render(args.progress, events, BTreeMap::new()));
    let pushed = push_image(
        &pusher,
        store.images.as_ref(),
        &args.name,
        args.reference.as_deref(),
        &progress,
    )
    .await;
    drop(progress);
    let _ = renderer.await;
    let report = pushed.map_err(|e| export_error(store, "push", e))?;
    let count = |outcome| report.blobs.values().filter(|o| **o == outcome).count();
    eprintln!(
        "pushed {}: {} blobs uploaded, {} already present, {} mounted",
        report.reference,
        count(BlobOutcome::Uploaded),
        count(BlobOutcome::Existed),
        count(BlobOutcome::Mounted)
    );
    println!("{}", report.digest);
    Ok(())
}

/// Parses `strata save`'s `-o` (checked before any store is opened).
pub fn save_options(args: &SaveArgs) -> Result<SaveOptions, CliError> {
    let output = &args.output;
    let invalid = |e: String| CliError::usage(format!("invalid --output {output:?}: {e}"));
    let spec = parse_output(output).map_err(invalid)?;
    SaveOptions::parse(spec.kind, &spec.options).map_err(|e| invalid(e.to_string()))
}

/// `strata save`: writes the images into one archive; names what it saved on stderr.
pub async fn save(store: &Store, options: &SaveOptions, args: SaveArgs) -> Result<(), CliError> {
    let (progress, events) = Progress::channel();
    let renderer = tokio::spawn(render(args.progress, events, BTreeMap::new()));
    let saved = save_images(
        store.content.clone(),
        store.images.as_ref(),
        &args.names,
        options,
        &progress,
    )
    .await;
    drop(progress);
    let _ = renderer.await;
    let saved = saved.map_err(|e| export_error(store, "save", e))?;
    for image in &saved {
        eprintln!(
            "saved {} ({}) to {}",
            image.record.name,
            image.record.target.digest,
            options.dest.display()
        );
    }
    Ok(())
}
