//! Private servers for tests: a containerd with its root, state and socket in a temp
//! dir, stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run, tool};

/// A containerd daemon private to one test.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Containerd {
    /// Starts containerd with everything under a fresh temp dir (CRI and
    /// snapshotters this machine can't use are disabled) and waits for its socket.
    pub fn start() -> Containerd {
        let containerd = tool("containerd");
        let dir = tempfile::Builder::new()
            .prefix("strata-containerd-")
            .tempdir()
            .expect("temp dir for containerd");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
"#,
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                socket = socket.display(),
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let child = Command::new(containerd)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let me = Containerd { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(tool("ctr"))
                .arg("--address")
                .arg(&me.socket)
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                panic!("containerd did not come up; log:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// The daemon's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `ctr --address <socket> <args>` and returns its stdout (panics on failure).
    pub fn ctr(&self, args: &[&str]) -> String {
        run(Command::new(tool("ctr"))
            .arg("--address")
            .arg(&self.socket)
            .args(args))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Stop by PID: SIGTERM, then SIGKILL if it lingers.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshot mounts may linger under root; unmount before the temp dir goes.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .stderr(Stdio::null())
            .status();
    }
}
