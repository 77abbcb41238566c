//! How the databases travel through a chain: whiteouts and opaque directories in
//! layer tars, a tar on top of a tree, distroless's `status.d`, trees whose symlinks
//! point out of them, size bounds, and images without a package database.

mod common;

use std::io::Cursor;
use std::os::unix::fs::symlink;
use std::time::UNIX_EPOCH;

use strata_sbom::{
    scan_layers, spdx_document, DocumentOptions, Inventory, Layer, SbomError, ScanLimits,
};

fn stanza(name: &str, version: &str) -> String {
    format!("Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n")
}

fn status(packages: &[(&str, &str)]) -> Vec<u8> {
    packages
        .iter()
        .map(|(n, v)| stanza(n, v))
        .collect::<String>()
        .into_bytes()
}

fn names(inventory: &Inventory) -> Vec<String> {
    inventory
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

fn tar_layer(name: &str, files: &[(&str, &[u8])]) -> Layer {
    Layer::tar(common::diff_id(name), Cursor::new(common::tar_of(files)))
}

fn scan(layers: Vec<Layer>) -> Inventory {
    scan_layers(layers, &ScanLimits::default()).expect("scan")
}

const STATUS: &str = "var/lib/dpkg/status";

#[test]
fn whiteouts_remove_the_database() {
    let base = status(&[("bash", "5.2"), ("coreutils", "9.1")]);
    for whiteout in [
        "var/lib/dpkg/.wh.status",
        "var/lib/.wh.dpkg",
        "var/.wh.lib",
        "./var/lib/dpkg/.wh..wh..opq",
    ] {
        let inventory = scan(vec![
            tar_layer("base", &[("var/lib/dpkg/", b""), (STATUS, &base)]),
            tar_layer("rm", &[(whiteout, b"")]),
        ]);
        assert!(
            inventory.packages.is_empty(),
            "{whiteout}: {:?}",
            names(&inventory)
        );
    }
    // A symlink replacing the directory hides what was under it.
    let inventory = scan(vec![
        tar_layer("base", &[(STATUS, &base)]),
        tar_layer("link", &[("var/lib/dpkg", b"->/nowhere")]),
    ]);
    assert!(inventory.packages.is_empty(), "{:?}", names(&inventory));
}

#[test]
fn an_opaque_directory_keeps_what_its_own_layer_adds() {
    let base = status(&[("bash", "5.2"), ("coreutils", "9.1")]);
    let replaced = status(&[("bash", "5.2"), ("zsh", "5.9")]);
    let inventory = scan(vec![
        tar_layer("base", &[(STATUS, &base)]),
        tar_layer(
            "opaque",
            &[("var/lib/dpkg/.wh..wh..opq", b""), (STATUS, &replaced)],
        ),
    ]);
    assert_eq!(names(&inventory), ["bash 5.2", "zsh 5.9"]);
    // bash is in both layers at one version, but the second layer's database is a new
    // file: the package was present all along, so it stays with the base.
    assert_eq!(inventory.packages[0].layer, common::diff_id("base"));
    assert_eq!(inventory.packages[1].layer, common::diff_id("opaque"));
}

#[test]
fn a_package_removed_and_reinstalled_belongs_to_the_layer_that_reinstalled_it() {
    let inventory = scan(vec![
        tar_layer(
            "one",
            &[(STATUS, &status(&[("bash", "5.2"), ("curl", "7.88")]))],
        ),
        tar_layer("two", &[(STATUS, &status(&[("bash", "5.2")]))]),
        tar_layer(
            "three",
            &[(STATUS, &status(&[("bash", "5.2"), ("curl", "7.88")]))],
        ),
    ]);
    assert_eq!(names(&inventory), ["bash 5.2", "curl 7.88"]);
    assert_eq!(inventory.packages[0].layer, common::diff_id("one"));
    assert_eq!(inventory.packages[1].layer, common::diff_id("three"));
}

#[test]
fn distroless_status_d_and_a_tar_on_a_tree() {
    let dep5 = b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                 Files: *\nCopyright: someone\nLicense: Expat\n";
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(
        tree.path(),
        &[
            (
                "var/lib/dpkg/status.d/base-files",
                b"Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
            ),
            (
                "var/lib/dpkg/status.d/base-files.md5sums",
                b"0123456789abcdef  etc/debian_version\n",
            ),
            (
                "var/lib/dpkg/status.d/tzdata",
                b"Package: tzdata\nVersion: 2024a\nArchitecture: all\n",
            ),
            ("usr/share/doc/tzdata/copyright", dep5),
            ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        ],
    );
    let inventory = scan(vec![
        Layer::tree(common::diff_id("distroless"), tree.path()),
        tar_layer(
            "add",
            &[
                (
                    "var/lib/dpkg/status.d/libssl3",
                    b"Package: libssl3\nVersion: 3.0.11\nArchitecture: amd64\n",
                ),
                ("var/lib/dpkg/status.d/.wh.base-files", b""),
            ],
        ),
    ]);
    assert_eq!(names(&inventory), ["libssl3 3.0.11", "tzdata 2024a"]);
    let tzdata = &inventory.packages[1];
    assert_eq!(tzdata.layer, common::diff_id("distroless"));
    assert_eq!(
        tzdata.license.as_deref(),
        Some("Expat"),
        "read from the tree below the tar"
    );
    assert_eq!(
        tzdata.purl(inventory.os_release.as_ref()),
        "pkg:deb/debian/tzdata@2024a?arch=all&distro=debian-12"
    );
}

#[test]
fn symlinks_in_a_tree_resolve_inside_it() {
    // The host has a dpkg database at /var/lib/dpkg; the tree's absolute symlink to it
    // must resolve inside the tree (to itself: a loop), never to the host's.
    let tree = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tree.path().join("var/lib")).expect("mkdir");
    symlink("/var/lib/dpkg", tree.path().join("var/lib/dpkg")).expect("symlink");
    std::fs::create_dir_all(tree.path().join("etc")).expect("mkdir");
    symlink("/usr/lib/os-release", tree.path().join("etc/os-release")).expect("symlink");
    let inventory = scan(vec![Layer::tree(common::diff_id("t"), tree.path())]);
    assert!(inventory.packages.is_empty(), "{:?}", names(&inventory));
    assert_eq!(inventory.os_release, None);

    // An in-tree absolute symlink is followed inside the tree.
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(
        tree.path(),
        &[("opt/dpkg/status", &status(&[("bash", "5.2")]))],
    );
    std::fs::create_dir_all(tree.path().join("var/lib")).expect("mkdir");
    symlink("/opt/dpkg", tree.path().join("var/lib/dpkg")).expect("symlink");
    assert_eq!(
        names(&scan(vec![Layer::tree(common::diff_id("t"), tree.path())])),
        ["bash 5.2"]
    );
}

#[test]
fn a_huge_status_file_is_refused_naming_it() {
    let limits = ScanLimits {
        max_database_bytes: 64 << 10,
        ..ScanLimits::default()
    };
    let huge: Vec<u8> = (0..2000)
        .flat_map(|i| stanza(&format!("pkg{i}"), "1.0").into_bytes())
        .collect();
    assert!(huge.len() > 64 << 10);
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(tree.path(), &[(STATUS, &huge)]);
    for layer in [
        Layer::tree(common::diff_id("huge"), tree.path()),
        tar_layer("huge", &[(STATUS, &huge)]),
    ] {
        match scan_layers(vec![layer], &limits) {
            Err(SbomError::TooLarge { layer, path, limit }) => {
                assert_eq!(
                    (layer, path.as_str(), limit),
                    (common::diff_id("huge"), STATUS, 64 << 10)
                );
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    // Under the bound, all 2000 are read.
    let inventory = scan_layers(
        vec![tar_layer("huge", &[(STATUS, &huge)])],
        &ScanLimits::default(),
    )
    .expect("scan");
    assert_eq!(inventory.packages.len(), 2000);
}

#[test]
fn a_layer_that_is_not_a_tar_is_an_error_naming_it() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    match scan_layers(
        vec![Layer::tar(common::diff_id("bad"), Cursor::new(garbage))],
        &ScanLimits::default(),
    ) {
        Err(SbomError::ReadTar { layer, .. }) => assert_eq!(layer, common::diff_id("bad")),
        other => panic!("expected ReadTar, got {other:?}"),
    }
    let missing = Layer::tree(common::diff_id("gone"), "/nonexistent/strata-sbom-tree");
    assert!(matches!(
        scan_layers(vec![missing], &ScanLimits::default()),
        Err(SbomError::ReadTree { .. })
    ));
}

#[test]
fn an_image_without_a_package_database_gets_a_valid_empty_sbom() {
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(tree.path(), &[("bin/app", b"\x7fELF")]);
    for layers in [
        vec![],
        vec![Layer::tree(common::diff_id("app"), tree.path())],
        vec![tar_layer("app", &[("bin/app", b"\x7fELF")])],
    ] {
        let inventory = scan(layers);
        assert_eq!(inventory, Inventory::default());
        let document = spdx_document(
            &inventory,
            &DocumentOptions {
                name: "test/static-app".into(),
                namespace: None,
                created: UNIX_EPOCH,
                image_digest: Some(common::diff_id("app")),
            },
        );
        common::validate_spdx(&document);
        assert_eq!(
            document["packages"].as_array().map(Vec::len),
            Some(1),
            "only the image"
        );
    }
}
