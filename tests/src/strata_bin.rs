//! The built `strata` binary, for tests that drive the command.
//!
//! `CARGO_BIN_EXE_<name>` only exists for integration tests of the package that owns
//! the binary, and a binary-only crate cannot be a dependency. So the first call builds
//! `strata-cli` with the same cargo, profile and target directory as the running test
//! (`cargo build -p strata-cli`, a no-op when it is up to date) and returns
//! `<target>/<profile>/strata`. `cargo test` does not hold the build lock while tests
//! run, so the nested build does not deadlock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The path of the `strata` binary, built on first use.
pub fn strata_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The test executable is <target>/<profile>/deps/<test>-<hash>.
        let exe = std::env::current_exe().expect("path of the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable under <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(option_env!("CARGO").unwrap_or("cargo")));
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .join("Cargo.toml");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "strata-cli", "--bin", "strata"])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        crate::run(&mut build);
        let bin = profile_dir.join("strata");
        assert!(bin.is_file(), "cargo built no {}", bin.display());
        bin
    })
}

/// `strata --store <store>`, without the environment that would change what it does
/// (`SOURCE_DATE_EPOCH`, `RUST_LOG`, `STRATA_CONTAINERD`); add the arguments and run.
pub fn strata_command(store: &Path) -> Command {
    let mut cmd = Command::new(strata_bin());
    cmd.arg("--store")
        .arg(store)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG")
        .env_remove("STRATA_CONTAINERD");
    cmd
}

/// Runs `strata --store <store> ARGS…` (as [`strata_command`]) to completion.
pub fn strata(store: &Path, args: &[&str]) -> Output {
    strata_command(store)
        .args(args)
        .output()
        .expect("run strata")
}

/// Like [`strata`] but panics unless it succeeds; returns stdout.
pub fn strata_ok(store: &Path, args: &[&str]) -> String {
    let out = strata(store, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts `strata` failed with exit code 1 and one line on stderr; returns the line.
pub fn strata_fails(store: &Path, args: &[&str]) -> String {
    let out = strata(store, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "strata {args:?} should fail with exit 1:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    stderr
}
