//! rpm: real `rpmdb.sqlite` databases made by rpm 4.18 (`rpmbuild`, then `rpm -i
//! --justdb` into a database directory), read from trees and from tars, against what
//! `rpm -qa` lists; and a database holding a truncated header.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::UNIX_EPOCH;

use strata_sbom::{
    scan_layers, spdx_document, DocumentOptions, Layer, PackageKind, RpmHeaderError, SbomError,
    ScanLimits,
};

/// Builds a noarch rpm from `spec` in `dir`; returns its path.
fn rpmbuild(dir: &Path, name: &str, spec: &str) -> std::path::PathBuf {
    let spec_path = dir.join(format!("{name}.spec"));
    fs::write(&spec_path, spec).expect("write spec");
    let top = dir.join("top");
    let out = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&spec_path)
        .output()
        .expect("run rpmbuild (Debian's rpm package)");
    assert!(
        out.status.success(),
        "rpmbuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpms = top.join("RPMS/noarch");
    let found = fs::read_dir(&rpms)
        .expect("RPMS/noarch")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        });
    found.expect("the built rpm")
}

fn spec(name: &str, version: &str, release: &str, epoch: Option<u32>, license: &str) -> String {
    let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
    format!(
        "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}Summary: test\n\
         License: {license}\nVendor: Strata Test Vendor\nBuildArch: noarch\n\
         %description\ntest\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
         echo hi > %{{buildroot}}/usr/share/{name}/hi\n%files\n/usr/share/{name}/hi\n"
    )
}

/// `rpm -i --justdb` of `rpms` into the database directory `db`.
fn install(db: &Path, rpms: &[&Path]) {
    fs::create_dir_all(db).expect("mkdir db");
    if !db.join("rpmdb.sqlite").exists() {
        let status = Command::new("rpm")
            .arg("--initdb")
            .arg("--dbpath")
            .arg(db)
            .status()
            .expect("rpm --initdb");
        assert!(status.success());
    }
    let out = Command::new("rpm")
        .args(["-i", "--justdb", "--nodeps", "--dbpath"])
        .arg(db)
        .args(rpms)
        .output()
        .expect("rpm -i");
    assert!(
        out.status.success(),
        "rpm -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `rpm -qa` lists: `name epoch:version-release arch` (epoch `(none)` as absent).
fn rpm_qa(db: &Path) -> BTreeSet<String> {
    let out = Command::new("rpm")
        .args(["-qa", "--dbpath"])
        .arg(db)
        .args(["--qf", "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE} %{ARCH}\\n"])
        .output()
        .expect("rpm -qa");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace(" (none):", " "))
        .collect()
}

fn listed(inventory: &strata_sbom::Inventory) -> BTreeSet<String> {
    inventory
        .packages
        .iter()
        .map(|p| {
            let epoch = p.epoch.map(|e| format!("{e}:")).unwrap_or_default();
            format!(
                "{} {epoch}{} {}",
                p.name,
                p.version,
                p.arch.as_deref().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn rpm_databases_from_trees_and_tars_match_rpm_qa() {
    let work = tempfile::tempdir().expect("tempdir");
    let hello = rpmbuild(
        work.path(),
        "hello-strata",
        &spec(
            "hello-strata",
            "1.2.3",
            "4.fc40",
            Some(2),
            "MIT AND (Apache-2.0 OR GPLv2+)",
        ),
    );
    let extra = rpmbuild(
        work.path(),
        "extra-strata",
        &spec(
            "extra-strata",
            "0.9",
            "1.fc40",
            None,
            "Strata Custom License",
        ),
    );
    let os_release: &[u8] = b"NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=40\n";

    // Layer 1: hello; layer 2: hello and extra (rpm rewrote the database).
    let (base, top) = (work.path().join("base"), work.path().join("top"));
    install(&base.join("var/lib/rpm"), &[&hello]);
    common::write_tree(&base, &[("etc/os-release", os_release)]);
    fs::create_dir_all(&top).expect("mkdir top");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", base.display()))
        .arg(&top)
        .status()
        .expect("cp");
    assert!(copy.success());
    install(&top.join("var/lib/rpm"), &[&extra]);

    let expected = rpm_qa(&top.join("var/lib/rpm"));
    assert_eq!(expected.len(), 2, "{expected:?}");
    let (one, two) = (common::diff_id("base"), common::diff_id("top"));
    let from_trees = scan_layers(
        vec![
            Layer::tree(one.clone(), &base),
            Layer::tree(two.clone(), &top),
        ],
        &ScanLimits::default(),
    )
    .expect("scan trees");
    assert_eq!(listed(&from_trees), expected);

    // The same databases in tars, at Fedora's current path (var/lib/rpm a symlink).
    let tar = |tree: &Path| {
        let db = fs::read(tree.join("var/lib/rpm/rpmdb.sqlite")).expect("read db");
        common::tar_of(&[
            ("etc/os-release", os_release),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", &db),
            ("var/lib/rpm", b"->../../usr/lib/sysimage/rpm"),
        ])
    };
    let from_tars = scan_layers(
        vec![
            Layer::tar(one.clone(), std::io::Cursor::new(tar(&base))),
            Layer::tar(two.clone(), std::io::Cursor::new(tar(&top))),
        ],
        &ScanLimits::default(),
    )
    .expect("scan tars");
    assert_eq!(from_tars, from_trees);

    let hello = from_trees
        .packages
        .iter()
        .find(|p| p.name == "hello-strata")
        .expect("hello");
    assert_eq!(
        (hello.kind, hello.epoch, hello.version.as_str()),
        (PackageKind::Rpm, Some(2), "1.2.3-4.fc40")
    );
    assert_eq!(hello.layer, one, "unchanged since the base layer");
    assert_eq!(hello.supplier.as_deref(), Some("Strata Test Vendor"));
    let os = from_trees.os_release.as_ref();
    assert_eq!(
        hello.purl(os),
        "pkg:rpm/fedora/hello-strata@1.2.3-4.fc40?arch=noarch&distro=fedora-40&epoch=2"
    );
    let extra = from_trees
        .packages
        .iter()
        .find(|p| p.name == "extra-strata")
        .expect("extra");
    assert_eq!(extra.layer, two);

    let document = spdx_document(
        &from_trees,
        &DocumentOptions {
            name: "test/fedora-like".into(),
            namespace: Some("https://example.invalid/spdx/fedora-like".into()),
            created: UNIX_EPOCH,
            image_digest: None,
        },
    );
    common::validate_spdx(&document);
    let packages = document["packages"].as_array().expect("packages");
    let declared = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["licenseDeclared"].clone())
    };
    assert_eq!(
        declared("hello-strata"),
        Some("MIT AND (Apache-2.0 OR GPL-2.0-or-later)".into())
    );
    let custom = declared("extra-strata").expect("extra in the document");
    let custom = custom.as_str().expect("a string");
    assert!(
        custom.starts_with("LicenseRef-Strata-Custom-License-"),
        "{custom}"
    );
    assert_eq!(
        document["hasExtractedLicensingInfos"][0]["extractedText"],
        "Strata Custom License"
    );
    assert_eq!(
        packages
            .iter()
            .find(|p| p["name"] == "hello-strata")
            .map(|p| p["versionInfo"].clone()),
        Some("2:1.2.3-4.fc40".into())
    );
}

#[test]
fn a_truncated_header_is_a_typed_error_naming_the_package() {
    let work = tempfile::tempdir().expect("tempdir");
    let hello = rpmbuild(
        work.path(),
        "hello-strata",
        &spec("hello-strata", "1", "1", None, "MIT"),
    );
    let root = work.path().join("root");
    let db_dir = root.join("var/lib/rpm");
    install(&db_dir, &[&hello]);
    let db = rusqlite::Connection::open(db_dir.join("rpmdb.sqlite")).expect("open db");
    let hnum: i64 = db
        .query_row("SELECT hnum FROM Packages", [], |r| r.get(0))
        .expect("a package");
    db.execute("UPDATE Packages SET blob = substr(blob, 1, 100)", [])
        .expect("truncate");
    drop(db);
    let err = scan_layers(
        vec![Layer::tree(common::diff_id("root"), &root)],
        &ScanLimits::default(),
    )
    .expect_err("a truncated header");
    match &err {
        SbomError::RpmHeader {
            path,
            hnum: at,
            source: RpmHeaderError::Truncated { len: 100, .. },
            layer,
        } => {
            assert_eq!(path, "var/lib/rpm/rpmdb.sqlite");
            assert_eq!(*at, hnum);
            assert_eq!(*layer, common::diff_id("root"));
        }
        other => panic!("expected a truncated header, got {other}"),
    }
    assert!(
        err.to_string().contains("var/lib/rpm/rpmdb.sqlite"),
        "{err}"
    );

    // Not a database at all.
    fs::write(
        db_dir.join("rpmdb.sqlite"),
        b"not sqlite at all, just bytes",
    )
    .expect("overwrite");
    let err = scan_layers(
        vec![Layer::tree(common::diff_id("root"), &root)],
        &ScanLimits::default(),
    )
    .expect_err("not sqlite");
    assert!(matches!(err, SbomError::RpmDatabase { .. }), "{err}");
}
