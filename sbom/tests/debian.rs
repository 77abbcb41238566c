//! A real Debian chain (debootstrap minbase → + python3 with apt → − docs), read as
//! full trees and as the layer tars strata's differ writes: the SBOM lists exactly what
//! `dpkg-query -W` lists for the final tree, attributes each package to the layer that
//! introduced it, and is a valid SPDX 2.3 document.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use strata_oci::Digest;
use strata_sbom::{
    scan_layers, spdx_document, DocumentOptions, Inventory, Layer, PackageKind, ScanLimits,
};

fn line(p: &strata_sbom::Package) -> String {
    format!(
        "{} {} {}",
        p.name,
        p.version,
        p.arch.as_deref().unwrap_or("")
    )
}

fn from_trees(trees: &[PathBuf], diff_ids: &[Digest]) -> Inventory {
    let layers = trees
        .iter()
        .zip(diff_ids)
        .map(|(tree, diff_id)| Layer::tree(diff_id.clone(), tree))
        .collect();
    scan_layers(layers, &ScanLimits::default()).expect("scan the trees")
}

fn from_tars(tars: &[(Digest, PathBuf)]) -> Inventory {
    let layers = tars
        .iter()
        .map(|(diff_id, tar)| {
            Layer::tar(
                diff_id.clone(),
                File::open(tar).expect("open the layer tar"),
            )
        })
        .collect();
    scan_layers(layers, &ScanLimits::default()).expect("scan the tars")
}

/// Asserts both inventories are the same, naming the first package that differs.
fn assert_same(trees: &Inventory, tars: &Inventory) {
    for (a, b) in trees.packages.iter().zip(&tars.packages) {
        assert_eq!(a, b, "read from trees (left) and from tars (right)");
    }
    assert_eq!(trees.packages.len(), tars.packages.len());
    assert_eq!(trees.os_release, tars.os_release);
}

/// Checks `inventory` (of the chain `trees`) against dpkg-query on every tree.
fn check_against_dpkg_query(inventory: &Inventory, trees: &[PathBuf], diff_ids: &[Digest]) {
    let listed: Vec<_> = trees.iter().map(|t| common::dpkg_query(t)).collect();
    let found: BTreeSet<String> = inventory.packages.iter().map(line).collect();
    assert_eq!(
        &found,
        listed.last().expect("a tree"),
        "the final tree's packages"
    );
    assert_eq!(
        found.len(),
        inventory.packages.len(),
        "no package listed twice"
    );
    for package in &inventory.packages {
        assert_eq!(package.kind, PackageKind::Deb);
        let line = line(package);
        let mut expected = trees.len() - 1;
        while expected > 0 && listed[expected - 1].contains(&line) {
            expected -= 1;
        }
        assert_eq!(package.layer, diff_ids[expected], "layer of {line}");
    }
}

#[test]
fn debian_chain_as_trees_and_as_tars() {
    let trees = common::debian_chain();
    let work = tempfile::tempdir().expect("tempdir");
    let tars = common::layer_tars(&trees, work.path());
    let diff_ids: Vec<Digest> = tars.iter().map(|(d, _)| d.clone()).collect();

    // base → + python3: python3 and what it pulled in belong to the second layer, and
    // machine-readable copyright files give licenses.
    let two = from_trees(&trees[..2], &diff_ids[..2]);
    check_against_dpkg_query(&two, &trees[..2], &diff_ids[..2]);
    assert_same(&two, &from_tars(&tars[..2]));
    let python3 = two
        .packages
        .iter()
        .find(|p| p.name == "python3")
        .expect("python3 listed");
    assert_eq!(python3.layer, diff_ids[1]);
    let bash = two
        .packages
        .iter()
        .find(|p| p.name == "bash")
        .expect("bash listed");
    assert_eq!(bash.layer, diff_ids[0]);
    let zlib = two
        .packages
        .iter()
        .find(|p| p.name == "zlib1g")
        .expect("zlib1g listed");
    assert_eq!(zlib.license.as_deref(), Some("Zlib"));
    let os = two.os_release.as_ref().expect("os-release");
    assert_eq!(
        (os.id.as_deref(), os.version_id.as_deref()),
        (Some("debian"), Some("12"))
    );
    let purl = zlib.purl(Some(os));
    assert!(
        purl.starts_with("pkg:deb/debian/zlib1g@1:1.2.13")
            && purl.ends_with("?arch=amd64&distro=debian-12&upstream=zlib"),
        "{purl}"
    );

    // … − /usr/share/doc: the third layer's whiteout removes every copyright file; no
    // package is new in it.
    let three = from_trees(&trees, &diff_ids);
    check_against_dpkg_query(&three, &trees, &diff_ids);
    assert_same(&three, &from_tars(&tars));
    assert!(three
        .packages
        .iter()
        .all(|p| p.license.is_none() && p.layer != diff_ids[2]));

    for (inventory, name) in [
        (&two, "bench/debian:python3"),
        (&three, "bench/debian:slim"),
    ] {
        let options = DocumentOptions {
            name: name.to_string(),
            namespace: None,
            created: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            image_digest: Some(diff_ids[0].clone()),
        };
        let document = spdx_document(inventory, &options);
        common::validate_spdx(&document);
        assert_eq!(
            document,
            spdx_document(inventory, &options),
            "deterministic"
        );
        assert_eq!(document["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let packages = document["packages"].as_array().expect("packages");
        assert_eq!(
            packages.len(),
            inventory.packages.len() + 1,
            "the image and its packages"
        );
        let python3 = packages
            .iter()
            .find(|p| p["name"] == "python3")
            .expect("python3 in the document");
        assert_eq!(python3["comment"], format!("layerID: {}", diff_ids[1]));
    }
}
