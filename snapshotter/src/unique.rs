//! Names unique to one process and call, for temporary snapshots and directories, and
//! the test telling a dead process's leftovers from a live one's work in progress.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A suffix no other call of any live process returns: `<pid>-<nanos>-<counter>`.
/// The leading pid lets a later process recognize what a dead one left behind (see
/// [`left_by_dead_process`]).
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when `suffix` was made by [`unique_suffix`] in a process that is no longer
/// running. A suffix without a leading pid is never taken for a dead process's.
pub fn left_by_dead_process(suffix: &str) -> bool {
    let pid = suffix.split('-').next().and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}
