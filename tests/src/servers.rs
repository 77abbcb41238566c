//! Private servers for tests, stopped by PID when dropped: a containerd with its root,
//! state and socket in a temp dir, and a docker-registry on 127.0.0.1.

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
        Self::start_with_config("")
    }

    /// Starts containerd like [`Containerd::start`] with `extra` appended to its
    /// config file (TOML tables such as `[plugins."io.containerd.gc.v1.scheduler"]`).
    pub fn start_with_config(extra: &str) -> Containerd {
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
{extra}
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
        let log = dir.path().join("containerd.log");
        let mut me = Containerd { child, dir, socket };
        wait_ready(&mut me.child, "containerd", &log, || {
            Command::new(tool("ctr"))
                .arg("--address")
                .arg(&me.socket)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
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

    /// The sorted entry names of layer blob `digest` in namespace `ns`, as GNU tar
    /// lists them (any compression; directories without their trailing `/`). Fetched
    /// with `ctr content get`; panics on failure.
    pub fn layer_listing(&self, ns: &str, digest: &str) -> Vec<String> {
        let out = Command::new(tool("ctr"))
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", ns, "content", "get", digest])
            .output()
            .expect("ctr content get");
        assert!(out.status.success(), "ctr content get {digest} failed");
        let blob = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(blob.path(), &out.stdout).expect("write blob");
        let mut names: Vec<String> = run(Command::new("tar").arg("-tf").arg(blob.path()))
            .lines()
            .map(|l| l.trim_end_matches('/').to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        // Snapshot mounts may linger under root; unmount before the temp dir goes.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .stderr(Stdio::null())
            .status();
    }
}

/// One line of a registry's access log: `"METHOD URI HTTP/1.1" STATUS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRequest {
    /// The HTTP method.
    pub method: String,
    /// The request URI (path and query).
    pub uri: String,
    /// The response status.
    pub status: u16,
}

/// A `docker-registry` (Debian's package of distribution) private to one test: it
/// listens on 127.0.0.1 only, on a free port, keeps its storage in a temp dir, logs
/// every request to a file the test can read, and is stopped by PID when dropped.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    /// Starts a registry that accepts anonymous pushes.
    pub fn start() -> Registry {
        Registry::spawn(None)
    }

    /// Starts a registry that requires HTTP basic auth as `user`/`password`
    /// (an htpasswd file with a bcrypt hash).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Registry {
        let registry = tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("strata-registry-")
            .tempdir()
            .expect("temp dir for the registry");
        let auth_section = match auth {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        // Ask the kernel for a free port, then hand it to the registry. Another process
        // could take it in between; start() then fails with the registry's log.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                root = dir.path().join("storage").display(),
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = Command::new(registry)
            .arg("serve")
            .arg(&config)
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start docker-registry");
        let mut me = Registry { child, dir, port };
        let log = me.dir.path().join("registry.log");
        wait_ready(&mut me.child, "docker-registry", &log, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        me
    }

    /// `127.0.0.1:PORT`, the registry part of image names pushed here.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log so far (its own messages and the access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request the registry answered so far, in order.
    pub fn requests(&self) -> Vec<RegistryRequest> {
        self.log()
            .lines()
            .filter_map(|line| {
                // 127.0.0.1 - - [date] "PUT /v2/x/blobs/uploads/… HTTP/1.1" 201 0 "" "ua"
                let start = line.find("] \"")? + 3;
                let rest = &line[start..];
                let end = rest.find('"')?;
                let mut request = rest[..end].split(' ');
                let method = request.next()?.to_string();
                let uri = request.next()?.to_string();
                let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
                Some(RegistryRequest {
                    method,
                    uri,
                    status,
                })
            })
            .collect()
    }

    /// Requests that sent blob data to `repository`: upload sessions started
    /// (`POST …/blobs/uploads/` that is not a cross-repository mount) and chunks or
    /// bodies sent (`PATCH`/`PUT …/blobs/uploads/…`).
    pub fn blob_uploads(&self, repository: &str) -> Vec<RegistryRequest> {
        let prefix = format!("/v2/{repository}/blobs/uploads/");
        self.requests()
            .into_iter()
            .filter(|r| r.uri.starts_with(&prefix))
            .filter(|r| match r.method.as_str() {
                "POST" => !r.uri.contains("mount="),
                "PUT" | "PATCH" => true,
                _ => false,
            })
            .collect()
    }

    /// Cross-repository mounts into `repository` the registry performed (201).
    pub fn mounts(&self, repository: &str) -> Vec<RegistryRequest> {
        let prefix = format!("/v2/{repository}/blobs/uploads/");
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method == "POST"
                    && r.uri.starts_with(&prefix)
                    && r.uri.contains("mount=")
                    && r.status == 201
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls `ready` until it holds; panics with the server's log (at `log`) if `child`
/// exits first or 30 s pass.
fn wait_ready(child: &mut Child, name: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited ({status}); log:\n{}", log());
        }
        if Instant::now() > deadline {
            panic!("{name} did not come up; log:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops `child` by PID: SIGTERM, then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety conditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
