//! `kill -9` of `strata export` mid-way, then `strata gc`: nothing the dead exports
//! left survives (no ingest, no lease), the store verifies, and an export into it gives
//! the digest a clean export into a fresh store gives.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use strata_tests::{strata_command, strata_ok};

const EPOCH: &str = "1700000000";
const IMAGE: &str = "type=image,name=crash:v1";

/// A tree of `files` files of incompressible bytes (20 to 200 KiB each), so an export
/// takes long enough to be killed mid-way.
fn write_tree(root: &Path, files: usize) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64: deterministic, incompressible enough for gzip.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 16));
        fs::create_dir_all(&dir).expect("create a directory of the tree");
        let len = 20 * 1024 + (next() % (180 * 1024)) as usize;
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&next().to_le_bytes());
        }
        bytes.truncate(len);
        fs::write(dir.join(format!("f{i}")), bytes).expect("write a file of the tree");
    }
}

fn export_args(tree: &Path) -> Vec<String> {
    vec![
        "export".into(),
        "--layer".into(),
        tree.display().to_string(),
        "-o".into(),
        IMAGE.into(),
    ]
}

/// Exports `tree` into `store` to completion; returns the digest it prints.
fn export(store: &Path, tree: &Path) -> String {
    let out = strata_command(store)
        .args(export_args(tree))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("run strata export");
    assert!(
        out.status.success(),
        "strata export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The ingest directories in the store (the local store's layout).
fn ingests(store: &Path) -> usize {
    fs::read_dir(store.join(".strata").join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The leases in the store's database, read directly (opening the store would
/// already reclaim the dead ones).
fn leases(store: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        store.join(".strata").join("meta.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the store's database");
    db.query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
        .expect("count leases")
}

#[test]
fn gc_reclaims_what_killed_exports_left() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-crash-")
        .tempdir()
        .expect("tempdir");
    let tree = tmp.path().join("tree");
    write_tree(&tree, 300);
    let store = tmp.path().join("store");

    // Kill exports until one leaves an ingest or a lease behind (each export's open
    // already removes what the previous killed one left, so look after each kill).
    let delays = [150, 300, 500, 800, 1200];
    let mut left_behind = None;
    for attempt in 0..20 {
        let mut child = strata_command(&store)
            .args(export_args(&tree))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strata export");
        sleep(Duration::from_millis(delays[attempt % delays.len()]));
        let finished = child.try_wait().expect("poll the export").is_some();
        child.kill().expect("SIGKILL the export");
        child.wait().expect("reap the export");
        if finished || !store.join(".strata").join("meta.db").exists() {
            continue;
        }
        let (i, l) = (ingests(&store), leases(&store));
        if i > 0 && l > 0 {
            left_behind = Some((i, l));
            break;
        }
    }
    let (ingests_left, leases_left) =
        left_behind.expect("no kill left an ingest and a lease behind: the test proves nothing");
    assert!(ingests_left > 0 && leases_left > 0);

    let gc = strata_ok(&store, &["gc"]);
    assert!(
        gc.contains(&format!("{ingests_left} ingests, {leases_left} leases")),
        "gc does not report what it reclaimed ({ingests_left} ingests, {leases_left} leases): {gc}"
    );
    assert_eq!(
        ingests(&store),
        0,
        "an ingest of a killed export survived gc"
    );
    assert_eq!(leases(&store), 0, "a lease of a killed export survived gc");
    let fsck = strata_ok(&store, &["fsck"]);
    assert!(fsck.contains("all verified"), "{fsck}");

    let digest = export(&store, &tree);
    let fresh = tmp.path().join("fresh");
    assert_eq!(
        digest,
        export(&fresh, &tree),
        "the export after the kills differs"
    );
    assert!(digest.starts_with("sha256:"), "{digest}");
}

#[test]
fn gc_never_touches_a_live_export_in_another_process() {
    let tmp = tempfile::Builder::new()
        .prefix("strata-live-")
        .tempdir()
        .expect("tempdir");
    let tree = tmp.path().join("tree");
    write_tree(&tree, 300);
    let reference = export(&tmp.path().join("reference"), &tree);

    // Collect while an export runs in another process, until a collection both starts
    // and ends while the export holds its lease and ingests.
    let mut overlapped = false;
    for attempt in 0..5 {
        let store = tmp.path().join(format!("store-{attempt}"));
        let mut child = strata_command(&store)
            .args(export_args(&tree))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata export");
        let mut during = false;
        for _ in 0..50 {
            sleep(Duration::from_millis(50));
            if child.try_wait().expect("poll the export").is_some() {
                break;
            }
            if ingests(&store) > 0 && leases(&store) > 0 {
                strata_ok(&store, &["gc"]);
                during = child.try_wait().expect("poll the export").is_none()
                    && ingests(&store) > 0
                    && leases(&store) > 0;
                break;
            }
        }
        let out = child.wait_with_output().expect("wait for the export");
        assert!(
            out.status.success(),
            "the export failed while gc ran: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            reference,
            "the export that gc ran beside gave another digest"
        );
        if during {
            overlapped = true;
            let fsck = strata_ok(&store, &["fsck"]);
            assert!(fsck.contains("all verified"), "{fsck}");
            break;
        }
    }
    assert!(
        overlapped,
        "no gc ran while an export held a lease and an ingest: the test proves nothing"
    );
}
