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
pub mod servers;
mod strata_bin;
pub mod tree;

pub use base_image::{
    base_rootfs, containerd_base, docker_load_base, docker_save_base, oci_archive_base, push_base,
    umoci_base, unique_name, BaseLayout, BASE_CREATED, BASE_ENV, BASE_HISTORY, BASE_LABEL,
    BASE_RELEASE, BASE_TAG,
};
pub use strata_bin::{strata_bin, strata_command};

use std::path::PathBuf;
use std::process::Command;

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
