//! [`ProcessOwner`]: which process made something (a lease, an ingest, a temporary
//! name), recorded so that a later process can tell a dead process's leftovers from a
//! live one's work in progress, even after the pid was reused.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// A running process, identified so that a reused pid is not mistaken for it: the pid,
/// its start time (`/proc/<pid>/stat` field 22, clock ticks since boot), the pid
/// namespace it was seen in and the boot it ran in (`/proc/sys/kernel/random/boot_id`).
///
/// Written as `<pid>:<start ticks>:<pid namespace>:<boot id>` (its [`fmt::Display`] and
/// [`FromStr`] forms), as leases ([`OWNER_LABEL`]) and ingests record it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessOwner {
    pid: u32,
    start_ticks: u64,
    pid_namespace: String,
    boot_id: String,
}

/// The lease label naming the [`ProcessOwner`] of a lease created by a
/// [`LeaseGuard`](crate::LeaseGuard). Garbage collection deletes a lease whose owner is
/// dead, as it deletes an expired one.
pub const OWNER_LABEL: &str = "strata.io/owner";

impl ProcessOwner {
    /// This process (read once, then cached).
    pub fn current() -> &'static ProcessOwner {
        static CURRENT: OnceLock<ProcessOwner> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id();
            ProcessOwner {
                pid,
                start_ticks: start_ticks(pid).unwrap_or(0),
                pid_namespace: pid_namespace(),
                boot_id: boot_id(),
            }
        })
    }

    /// The process `pid` as it runs now; `None` if there is no such process.
    pub fn of_pid(pid: u32) -> Option<ProcessOwner> {
        Some(ProcessOwner {
            pid,
            start_ticks: start_ticks(pid)?,
            pid_namespace: pid_namespace(),
            boot_id: boot_id(),
        })
    }

    /// The owner's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A short form for names (temporary snapshot keys and directories):
    /// `<pid>_<start ticks>`, without the namespace and boot (taken as this process's
    /// when read back by [`ProcessOwner::name_token_is_dead`]).
    pub fn name_token(&self) -> String {
        format!("{}_{}", self.pid, self.start_ticks)
    }

    /// True when `token`, a [`ProcessOwner::name_token`] made in this boot and pid
    /// namespace, names a process that is certainly dead (gone, a zombie, or its pid
    /// reused). A bare pid (names made before start times were recorded) is dead when
    /// no such process runs; anything else is never taken as dead.
    pub fn name_token_is_dead(token: &str) -> bool {
        let me = ProcessOwner::current();
        let (pid, start_ticks) = match token.split_once('_') {
            Some((pid, start)) => match (pid.parse(), start.parse()) {
                (Ok(pid), Ok(start)) => (pid, Some(start)),
                _ => return false,
            },
            None => match token.parse() {
                Ok(pid) => (pid, None),
                Err(_) => return false,
            },
        };
        match start_ticks {
            Some(start_ticks) => ProcessOwner {
                pid,
                start_ticks,
                ..me.clone()
            }
            .is_dead(),
            None => pid != me.pid && proc_stat(pid).is_none_or(|(state, _)| state == 'Z'),
        }
    }

    /// True only when this owner is certainly no longer running: it ran in an earlier
    /// boot, or (same boot, same pid namespace) its pid is gone, a zombie, or now a
    /// different process (another start time). An owner seen from another pid
    /// namespace cannot be judged and is taken as alive.
    pub fn is_dead(&self) -> bool {
        let me = ProcessOwner::current();
        if self.boot_id != me.boot_id {
            return !self.boot_id.is_empty() && !me.boot_id.is_empty();
        }
        if self.pid_namespace != me.pid_namespace {
            return false;
        }
        if self.pid == me.pid {
            return self.start_ticks != me.start_ticks;
        }
        match proc_stat(self.pid) {
            None => true,
            Some((state, start)) => state == 'Z' || start != self.start_ticks,
        }
    }
}

impl fmt::Display for ProcessOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.pid, self.start_ticks, self.pid_namespace, self.boot_id
        )
    }
}

impl FromStr for ProcessOwner {
    type Err = Error;

    /// Reads the [`fmt::Display`] form; anything else is an `InvalidArgument`.
    fn from_str(s: &str) -> Result<ProcessOwner> {
        let bad = || {
            Error::InvalidArgument(format!(
                "process owner {s:?}: expected <pid>:<start ticks>:<pid namespace>:<boot id>"
            ))
        };
        let mut parts = s.splitn(4, ':');
        let pid = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let start_ticks = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let pid_namespace = parts.next().ok_or_else(bad)?.to_string();
        let boot_id = parts.next().ok_or_else(bad)?.to_string();
        Ok(ProcessOwner {
            pid,
            start_ticks,
            pid_namespace,
            boot_id,
        })
    }
}

/// Whether `recorded` (an owner's [`fmt::Display`] form) names a process that is
/// certainly dead. Nothing recorded, or something unreadable, is never taken as dead.
pub(crate) fn recorded_owner_is_dead(recorded: Option<&str>) -> bool {
    recorded
        .and_then(|r| r.trim().parse::<ProcessOwner>().ok())
        .is_some_and(|o| o.is_dead())
}

/// The state letter and start time (field 22) of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; field 22 is 19 further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy();
            let inode = l.strip_prefix("pid:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .unwrap_or_default()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The owner of a process that ran `true` and has been waited for: certainly dead.
#[cfg(any(test, feature = "conformance"))]
pub(crate) fn dead_owner() -> ProcessOwner {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawning true");
    let owner = ProcessOwner::of_pid(child.id()).expect("reading the child's stat");
    child.wait().expect("waiting for true");
    owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_current_process_is_alive_and_a_waited_child_is_dead() {
        let me = ProcessOwner::current();
        assert_eq!(me.pid(), std::process::id());
        assert!(!me.is_dead());
        let round_trip: ProcessOwner = me.to_string().parse().unwrap();
        assert_eq!(&round_trip, me);

        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let live = ProcessOwner::of_pid(child.id()).unwrap();
        assert!(!live.is_dead(), "a running child is alive");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(live.is_dead(), "a killed and reaped child is dead");
        assert!(dead_owner().is_dead());
    }

    #[test]
    fn a_reused_pid_is_not_the_owner() {
        // The pid of this process with another start time: the pid was reused.
        let me = ProcessOwner::current();
        let earlier = ProcessOwner {
            start_ticks: me.start_ticks.wrapping_sub(1),
            ..me.clone()
        };
        assert!(earlier.is_dead());
        let other_boot = ProcessOwner {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert!(other_boot.is_dead());
        let other_namespace = ProcessOwner {
            pid_namespace: "1".into(),
            start_ticks: 0,
            ..me.clone()
        };
        assert!(
            !other_namespace.is_dead(),
            "another namespace is not judged"
        );
        assert!(!recorded_owner_is_dead(None));
        assert!(!recorded_owner_is_dead(Some("garbage")));
        assert!(recorded_owner_is_dead(Some(&earlier.to_string())));
        assert!(!ProcessOwner::name_token_is_dead(&me.name_token()));
        assert!(ProcessOwner::name_token_is_dead(&earlier.name_token()));
        assert!(ProcessOwner::name_token_is_dead(&dead_owner().name_token()));
        assert!(!ProcessOwner::name_token_is_dead("not-a-pid"));
        assert!(!ProcessOwner::name_token_is_dead(&me.pid().to_string()));
    }
}
