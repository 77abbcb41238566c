//! What `strata export --layer A --layer B … -o type=oci,dest=OUT.tar` does, through the
//! library: register the directories as a snapshot chain, diff each layer once, write
//! an OCI image tar. Run from the workspace root:
//!
//!     cargo run -p strata-examples --example export_layers -- \
//!         /tmp/store examples/rootfs/base examples/rootfs/app example.tar
//! (the last argument is the tar; the ones between the store and it are layers.)

use std::sync::Arc;

use strata_cache::{register_directories, ImmutableRef, LayerDir};
use strata_content::LocalStore;
use strata_differ::WalkingDiffer;
use strata_exporter::{ExportContext, Exporter, OciExporter, Progress, Source};
use strata_snapshotter::DirectorySnapshotter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store_dir, layers @ .., dest] = args.as_slice() else {
        return Err("usage: export_layers STORE LAYER_DIR… DEST.tar".into());
    };
    let store = Arc::new(LocalStore::open(store_dir).await?); // an OCI layout + SQLite
    let snapshots = DirectorySnapshotter::open(format!("{store_dir}/.strata/snapshots"))?;
    let layers: Vec<LayerDir> = (layers.iter())
        .map(|dir| LayerDir {
            dir: dir.into(),
            description: format!("strata export --layer {dir}"),
        })
        .collect();
    let names = register_directories(&snapshots, &layers).await?; // no copy; cached by tree
    let top = ImmutableRef::load(Arc::new(snapshots), names.last().ok_or("no layer")?).await?;
    let differ = Arc::new(WalkingDiffer::new(store.clone()));
    let ctx = ExportContext::new(store.clone(), store.clone(), store.clone(), differ);
    let options = [("dest".to_string(), dest.clone())].into();
    let oci = OciExporter::new(ctx).resolve(options).await?;
    let progress = Progress::discard(); // or Progress::channel(), rendering its events
    let response = oci.export(Source::single(Some(top.clone()), None), progress);
    let response = response.await?;
    top.release().await?; // the read-only view of the top tree
    println!("{}", response["containerimage.digest"]);
    Ok(())
}
