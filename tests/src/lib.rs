//! # strata-tests
//!
//! Helpers shared by strata's end-to-end tests: finding the real tools the tests run
//! (skopeo, umoci, ctr, containerd, dockerd), running them with useful failure messages,
//! starting private servers that are stopped by PID, building base images with real
//! tools (see [`umoci_base`] and the functions beside it), and comparing directory
//! trees.
//!
//! A missing tool is a test failure that says what to install, never a silent pass:
//! CI installs every tool with `apt-get` (see `.ci/run`).
//!
//! ```no_run
//! let skopeo = strata_tests::tool("skopeo");
//! let out = strata_tests::run(std::process::Command::new(skopeo).arg("--version"));
//! assert!(out.contains("skopeo"));
//! ```

#![deny(missing_docs)]

mod base_image;
mod in_toto;
pub mod servers;
mod strata_bin;
pub mod tree;

pub use base_image::{
    base_rootfs, containerd_base, docker_load_base, docker_save_base, oci_archive_base, push_base,
    umoci_base, unique_name, BaseLayout, BASE_CREATED, BASE_ENV, BASE_HISTORY, BASE_LABEL,
    BASE_RELEASE, BASE_TAG,
};
pub use in_toto::{in_toto_python, validate_statements};
pub use strata_bin::{strata, strata_bin, strata_command, strata_fails, strata_ok};

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The absolute path of the tool `name` on `PATH`; panics naming the Debian package to
/// install when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let package = match name {
        "ctr" => "containerd",
        "registry" => "docker-registry",
        "docker" | "dockerd" => "docker.io",
        other => other,
    };
    panic!("{name} is not installed: run `apt-get install -y {package}` (CI's .ci/run does)");
}

/// Runs `cmd`, panicking with its command line, exit status and stderr if it fails;
/// returns its stdout as text.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` like [`run`] (stdin empty), but if it has not finished within `limit`
/// kills it and panics with its command line and its stderr so far; returns its
/// stdout as text.
pub fn run_within(cmd: &mut Command, limit: Duration) -> String {
    let capture = || tempfile::tempfile().expect("temp file for a command's output");
    let (mut stdout, mut stderr) = (capture(), capture());
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone a temp file handle"))
        .stderr(stderr.try_clone().expect("clone a temp file handle"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let read = |file: &mut std::fs::File| {
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .unwrap_or_else(|e| panic!("reading the output of {cmd:?}: {e}"));
        text
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} did not finish within {limit:?}; killed it. stderr:\n{}",
                    read(&mut stderr)
                );
            }
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    if !status.success() {
        panic!(
            "{cmd:?} failed ({status}):\nstdout:\n{}\nstderr:\n{}",
            read(&mut stdout),
            read(&mut stderr)
        );
    }
    read(&mut stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn run_within_kills_a_command_that_overruns() {
        run_within(Command::new("sleep").arg("30"), Duration::from_millis(200));
    }

    #[test]
    fn run_within_returns_stdout_of_a_quick_command() {
        let out = run_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(30),
        );
        assert_eq!(out, "out\n");
    }

    #[test]
    #[should_panic(expected = "stderr:\nerr")]
    fn run_within_reports_stderr_of_a_failure() {
        run_within(
            Command::new("sh").args(["-c", "echo err >&2; exit 3"]),
            Duration::from_secs(30),
        );
    }
}
