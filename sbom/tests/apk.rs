//! apk: an Alpine minirootfs cannot be fetched here, so the `lib/apk/db/installed`
//! files are written from the format Alpine documents (wiki "Apk spec": `P:` name,
//! `V:` version, `A:` arch, `L:` license, `o:` origin, `m:` maintainer, file lines,
//! a blank line between packages), with real Alpine 3.19 package data.

mod common;

use std::time::UNIX_EPOCH;

use strata_sbom::{scan_layers, spdx_document, DocumentOptions, Layer, PackageKind, ScanLimits};

/// (name, version, license, origin) of Alpine 3.19 packages.
type Apk<'a> = (&'a str, &'a str, &'a str, &'a str);

fn installed(packages: &[Apk]) -> Vec<u8> {
    let mut text = String::new();
    for (name, version, license, origin) in packages {
        text.push_str(&format!(
            "C:Q1{name}checksum=\nP:{name}\nV:{version}\nA:x86_64\nS:100\nI:200\n\
             T:{name} package\nU:https://alpinelinux.org\nL:{license}\no:{origin}\n\
             m:Natanael Copa <ncopa@alpinelinux.org>\nt:1700000000\nc:abcdef\n\
             D:so:libc.musl-x86_64.so.1\np:cmd:{name}=1\nF:usr/share/{name}\nR:README\n\
             a:0:0:644\nZ:Q1zzz=\n\n"
        ));
    }
    text.into_bytes()
}

const OS_RELEASE: &[u8] = b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n";

#[test]
fn an_apk_database_across_a_tree_and_a_tar_layer() {
    let base: &[Apk] = &[
        (
            "alpine-baselayout",
            "3.4.3-r2",
            "GPL-2.0-only",
            "alpine-baselayout",
        ),
        ("busybox", "1.36.1-r15", "GPL-2.0-only", "busybox"),
        ("musl", "1.2.4_git20230717-r4", "MIT", "musl"),
    ];
    // The second layer upgrades busybox and adds two packages.
    let top: &[Apk] = &[
        (
            "alpine-baselayout",
            "3.4.3-r2",
            "GPL-2.0-only",
            "alpine-baselayout",
        ),
        ("busybox", "1.36.1-r19", "GPL-2.0-only", "busybox"),
        ("musl", "1.2.4_git20230717-r4", "MIT", "musl"),
        (
            "ca-certificates-bundle",
            "20230506-r0",
            "MPL-2.0 AND MIT",
            "ca-certificates",
        ),
        ("tzdata", "2024a-r0", "Public-Domain", "tzdata"),
    ];
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(
        tree.path(),
        &[
            ("lib/apk/db/installed", &installed(base)),
            ("etc/os-release", OS_RELEASE),
        ],
    );
    let layer_two = common::tar_of(&[("lib/apk/db/installed", &installed(top))]);
    let (one, two) = (common::diff_id("alpine base"), common::diff_id("apk add"));
    let inventory = scan_layers(
        vec![
            Layer::tree(one.clone(), tree.path()),
            Layer::tar(two.clone(), std::io::Cursor::new(layer_two)),
        ],
        &ScanLimits::default(),
    )
    .expect("scan");

    let mut expected: Vec<_> = top.to_vec();
    expected.sort();
    let found: Vec<Apk> = inventory
        .packages
        .iter()
        .map(|p| {
            assert_eq!(p.kind, PackageKind::Apk);
            assert_eq!(p.arch.as_deref(), Some("x86_64"));
            (
                p.name.as_str(),
                p.version.as_str(),
                p.license.as_deref().unwrap_or(""),
                p.source.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(found, expected);
    let layer_of = |name: &str| {
        inventory
            .packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.layer.clone())
    };
    assert_eq!(layer_of("musl"), Some(one.clone()));
    assert_eq!(
        layer_of("busybox"),
        Some(two.clone()),
        "upgraded in the second layer"
    );
    assert_eq!(layer_of("tzdata"), Some(two.clone()));

    let os = inventory.os_release.as_ref();
    let musl = inventory
        .packages
        .iter()
        .find(|p| p.name == "musl")
        .expect("musl");
    assert_eq!(
        musl.purl(os),
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
    );
    let document = spdx_document(
        &inventory,
        &DocumentOptions {
            name: "test/alpine".into(),
            namespace: None,
            created: UNIX_EPOCH,
            image_digest: None,
        },
    );
    common::validate_spdx(&document);
    let declared: Vec<_> = document["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            p["licenseDeclared"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        declared.contains(&"MPL-2.0 AND MIT".to_string()),
        "{declared:?}"
    );
    assert!(
        declared
            .iter()
            .any(|l| l.starts_with("LicenseRef-Public-Domain-")),
        "{declared:?}"
    );
}
