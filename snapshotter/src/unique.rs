//! Names unique to one process and call, for temporary snapshots and directories, and
//! the test telling a dead process's leftovers from a live one's work in progress
//! (whose liveness rule is strata-content's [`ProcessOwner`]: pid plus start time, so a
//! reused pid is not taken for the process that made the name).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_content::ProcessOwner;

/// A suffix no other call of any live process returns:
/// `<pid>_<start ticks>-<nanos>-<counter>`. The leading owner token lets a later
/// process recognize what a dead one left behind (see [`left_by_dead_process`]).
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        ProcessOwner::current().name_token(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when `suffix` was made by [`unique_suffix`] in a process that is no longer
/// running (or whose pid now belongs to another process). A suffix without a leading
/// owner token is never taken for a dead process's; one with a bare pid (made before
/// start times were recorded) is a dead process's when no process has that pid.
pub fn left_by_dead_process(suffix: &str) -> bool {
    suffix
        .split('-')
        .next()
        .is_some_and(ProcessOwner::name_token_is_dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_of_this_process_is_live_and_one_of_a_reaped_child_is_dead() {
        let mine = unique_suffix();
        assert_ne!(mine, unique_suffix());
        assert!(!left_by_dead_process(&mine));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let owner = ProcessOwner::of_pid(child.id()).unwrap();
        child.wait().unwrap();
        assert!(left_by_dead_process(&format!("{}-1-0", owner.name_token())));
        assert!(!left_by_dead_process("scratch"));
    }
}
