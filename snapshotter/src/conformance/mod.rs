//! The conformance suite every writable [`Snapshotter`] backend must pass (enabled by
//! the `conformance` feature), in the spirit of arrow-rs `object_store`'s integration
//! tests: one set of checks, run against each backend, including future ones in other
//! crates.
//!
//! [`run`] takes a function opening the backend at a root directory; it is called once
//! per check with a fresh temporary root, and again with the same root to check that a
//! reopened snapshotter sees the same snapshots. Files are written and read through
//! the snapshots' mounts (with [`TempMount`](crate::TempMount)), so the checks see
//! what a user sees. The checks are grouped by what they check: the trees snapshots
//! hold, a snapshot's life (commit, remove, reopen), what snapshots say about
//! themselves (labels, walk, usage), and calls that must fail cleanly.
//! Failures panic with a message naming the check, like test assertions.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use strata_snapshotter::{NativeSnapshotter, Snapshotter};
//!
//! strata_snapshotter::conformance::run(|root| async move {
//!     Ok(Arc::new(NativeSnapshotter::open(root)?) as Arc<dyn Snapshotter>)
//! })
//! .await;
//! # }
//! ```

mod failures;
mod info;
mod lifecycle;
mod support;
mod trees;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::snapshotter::Snapshotter;
use failures::{bad_input, concurrency};
use info::{labels, usage, walk};
use lifecycle::{commit, remove, reopen_check, reopen_prepare};
use trees::{chain, views};

/// Runs every check against the backend `open` opens at a root directory.
pub async fn run<F, Fut>(open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Snapshotter>>>,
{
    let checks: [(&str, Check); 10] = [
        ("chain", |s| Box::pin(chain(s))),
        ("view", |s| Box::pin(views(s))),
        ("commit", |s| Box::pin(commit(s))),
        ("remove", |s| Box::pin(remove(s))),
        ("labels", |s| Box::pin(labels(s))),
        ("walk", |s| Box::pin(walk(s))),
        ("usage", |s| Box::pin(usage(s))),
        ("bad_input", |s| Box::pin(bad_input(s))),
        ("concurrency", |s| Box::pin(concurrency(s))),
        ("reopen", |s| Box::pin(reopen_prepare(s))),
    ];
    for (name, check) in checks {
        let root = tempfile::tempdir().expect("creating a temporary root");
        let s = open(root.path().to_path_buf())
            .await
            .unwrap_or_else(|e| panic!("[{name}] opening the snapshotter: {e}"));
        eprintln!("conformance: {name}");
        check(s.clone()).await;
        if name == "reopen" {
            drop(s);
            let s = open(root.path().to_path_buf())
                .await
                .unwrap_or_else(|e| panic!("[reopen] reopening the snapshotter: {e}"));
            reopen_check(s).await;
        }
    }
}

type Check = fn(Arc<dyn Snapshotter>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;
