//! Which dpkg packages count, checked against `dpkg-query -W` on a status file with
//! every state dpkg has and a package installed for two architectures (multi-arch).

mod common;

use std::collections::BTreeSet;

use strata_sbom::{scan_layers, Layer, ScanLimits};

fn stanza(name: &str, status: &str, arch: &str, version: &str) -> String {
    format!(
        "Package: {name}\nStatus: {status}\nPriority: optional\nArchitecture: {arch}\n\
         Multi-Arch: same\nMaintainer: Strata Tests <dev@strata.invalid>\nVersion: {version}\n\
         Description: {name}\n a test package\n\n"
    )
}

#[test]
fn installed_states_are_what_dpkg_query_lists_less_config_files() {
    let states = [
        ("a-installed", "install ok installed"),
        ("b-config-files", "deinstall ok config-files"),
        ("c-half-installed", "install reinstreq half-installed"),
        ("d-unpacked", "install ok unpacked"),
        ("e-half-configured", "install ok half-configured"),
        // dpkg requires what the trigger states wait for.
        (
            "f-triggers-awaited",
            "install ok triggers-awaited\nTriggers-Awaited: a-installed",
        ),
        (
            "g-triggers-pending",
            "install ok triggers-pending\nTriggers-Pending: /usr/lib/test",
        ),
        ("h-held", "hold ok installed"),
        ("i-deinstall-installed", "deinstall ok installed"),
        ("j-purged", "purge ok not-installed"),
    ];
    let mut status: String = states
        .iter()
        .map(|(name, state)| stanza(name, state, "amd64", "1.0-1"))
        .collect();
    status.push_str(&stanza(
        "libc6",
        "install ok installed",
        "amd64",
        "2.36-9+deb12u4",
    ));
    status.push_str(&stanza(
        "libc6",
        "install ok installed",
        "i386",
        "2.36-9+deb12u4",
    ));
    let tree = tempfile::tempdir().expect("tempdir");
    common::write_tree(tree.path(), &[("var/lib/dpkg/status", status.as_bytes())]);
    // dpkg-query wants its admindir's other files to exist.
    std::fs::create_dir_all(tree.path().join("var/lib/dpkg/info")).expect("mkdir info");
    std::fs::write(tree.path().join("var/lib/dpkg/available"), "").expect("available");

    let expected = common::dpkg_query(tree.path());
    assert!(
        expected.contains("libc6 2.36-9+deb12u4 i386"),
        "{expected:?}"
    );
    assert!(!expected
        .iter()
        .any(|l| l.starts_with("j-purged") || l.starts_with("b-config-files")));
    let inventory = scan_layers(
        vec![Layer::tree(common::diff_id("t"), tree.path())],
        &ScanLimits::default(),
    )
    .expect("scan");
    let found: BTreeSet<String> = inventory
        .packages
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p.name,
                p.version,
                p.arch.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(found, expected);
    assert_eq!(found.len(), 10, "8 states that count and libc6 twice");
}
