//! Directory registration on a real directory snapshotter: warm re-registration finds
//! the same snapshots, changed trees get new ones, pruning removes the stale ones.

use std::fs;
use std::time::Duration;

use strata_cache::{
    prune_stale_registrations, register_directories, DirectoryChain, DirectoryError, LayerDir,
    LABEL_DESCRIPTION, LABEL_SOURCE_DIR,
};
use strata_snapshotter::{DirectorySnapshotter, Snapshotter};

fn layers(root: &std::path::Path) -> Vec<LayerDir> {
    ["base", "top"]
        .iter()
        .map(|name| {
            let dir = root.join(name);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("file"), name).expect("write");
            LayerDir {
                dir,
                description: format!("COPY {name}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn unchanged_trees_keep_their_names_and_changed_ones_are_pruned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshots = DirectorySnapshotter::open(tmp.path().join("meta")).expect("open");
    let mut layers = layers(&tmp.path().join("trees"));
    let names = register_directories(&snapshots, &layers)
        .await
        .expect("register");
    assert_eq!(names.len(), 2);
    let top = snapshots.stat(&names[1]).await.expect("stat");
    assert_eq!(top.parent.as_deref(), Some(names[0].as_str()));
    assert_eq!(top.labels[LABEL_DESCRIPTION], "COPY top");
    let canonical = layers[1].dir.canonicalize().expect("canonical");
    assert_eq!(
        top.labels[LABEL_SOURCE_DIR],
        canonical.display().to_string()
    );

    // Warm: same names; a new description only updates the label.
    layers[1].description = "COPY top again".into();
    let chain = DirectoryChain::read(&layers).await.expect("read");
    assert_eq!(chain.names().collect::<Vec<_>>(), names);
    assert_eq!(chain.register(&snapshots).await.expect("again"), names);
    let top = snapshots.stat(&names[1]).await.expect("stat");
    assert_eq!(top.labels[LABEL_DESCRIPTION], "COPY top again");
    let report = prune_stale_registrations(&snapshots).await.expect("prune");
    assert_eq!(report.removed(), 0, "{report:?}");

    // Changing the base renames both layers; the old ones are stale.
    std::thread::sleep(Duration::from_millis(10));
    fs::write(layers[0].dir.join("file"), "BASE").expect("change");
    let changed = register_directories(&snapshots, &layers)
        .await
        .expect("register changed");
    assert!(changed.iter().all(|n| !names.contains(n)), "{changed:?}");
    let report = prune_stale_registrations(&snapshots).await.expect("prune");
    assert_eq!(
        report.registrations,
        vec![names[1].clone(), names[0].clone()]
    );
    assert!(report.views.is_empty());
    for name in &changed {
        snapshots.stat(name).await.expect("fresh registration kept");
    }
    assert!(
        layers[0].dir.join("file").exists(),
        "trees are never touched"
    );
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshots = DirectorySnapshotter::open(tmp.path().join("meta")).expect("open");
    let missing = tmp.path().join("missing");
    let err = register_directories(
        &snapshots,
        &[LayerDir {
            dir: missing.clone(),
            description: String::new(),
        }],
    )
    .await
    .expect_err("missing directory");
    assert!(matches!(&err, DirectoryError::Read { .. }), "{err:?}");
    assert_eq!(err.dir(), Some(missing.as_path()));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn layers_on_a_base_are_other_layers_and_stay_fresh() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshots = DirectorySnapshotter::open(tmp.path().join("meta")).expect("open");
    let layers = layers(&tmp.path().join("trees"));
    let plain: Vec<String> = DirectoryChain::read(&layers)
        .await
        .expect("read")
        .register(&snapshots)
        .await
        .expect("register");
    let base = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    let onto = DirectoryChain::read(&layers)
        .await
        .expect("read")
        .keyed(base);
    let on_base = onto.register(&snapshots).await.expect("register onto");
    assert_ne!(plain, on_base, "the same trees on a base are other layers");
    let other = DirectoryChain::read(&layers)
        .await
        .expect("read")
        .keyed(&base.replace('1', "2"));
    assert_ne!(other.names().collect::<Vec<_>>(), on_base);
    // The bottom registration on the base has no parent snapshot but stays fresh.
    assert_eq!(
        snapshots.stat(&on_base[0]).await.expect("stat").parent,
        None
    );
    let report = prune_stale_registrations(&snapshots).await.expect("prune");
    assert!(report.registrations.is_empty(), "{report:?}");
}
