//! Private servers for tests, stopped by PID when dropped: a containerd with its root,
//! state and socket in a temp dir, a docker-registry on 127.0.0.1, and a Docker engine
//! (`dockerd`) with its data, state and socket in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run, run_within, tool};

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

    /// Imports the image archive `archive` into the native snapshotter, checks that
    /// `ctr images check` finds image `name` complete, mounts it under `mnt` (created)
    /// and asserts that its rootfs is the tree `expected`; unmounts either way.
    pub fn assert_imports_as_tree(&self, archive: &Path, name: &str, mnt: &Path, expected: &Path) {
        let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
        self.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            &path(archive),
        ]);
        let check = self.ctr(&["images", "check"]);
        let line = check
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed by ctr images check:\n{check}"));
        assert!(line.contains("complete"), "{check}");
        std::fs::create_dir_all(mnt).expect("create the mount point");
        self.ctr(&[
            "images",
            "mount",
            "--snapshotter",
            "native",
            name,
            &path(mnt),
        ]);
        let same = std::panic::catch_unwind(|| {
            crate::tree::assert_same_tree(mnt, expected, crate::tree::Compare::default())
        });
        self.ctr(&["images", "unmount", &path(mnt)]);
        if let Err(e) = same {
            std::panic::resume_unwind(e);
        }
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

/// A Docker engine (Debian's `docker.io` `dockerd`) private to one test.
///
/// Everything it keeps is under a fresh temp dir: `--data-root`, `--exec-root`, the
/// API socket (`-H unix://…/docker.sock`), `--pidfile` and an empty `--config-file`
/// (so the host's `/etc/docker/daemon.json` does not apply). It runs with
/// `--iptables=false --bridge=none`, so containers need `--network none`. dockerd
/// starts and supervises its own containerd (socket under the exec-root), which needs
/// nothing from the test. The docker CLI gets a private `DOCKER_CONFIG` too.
///
/// Dropping it stops dockerd by PID (SIGTERM, which stops its containers and its
/// containerd; SIGKILL after 10 s), then detaches whatever is still mounted under the
/// temp dir (dockerd bind-mounts its data-root; overlay mounts of containers).
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd and waits (polling, 30 s at most) until `docker version` answers;
    /// panics with its log if it exits or does not come up.
    pub fn start() -> Dockerd {
        let dockerd = tool("dockerd");
        // Short prefix: containerd's socket lives under the exec-root and unix socket
        // paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("strata-dockerd-")
            .tempdir()
            .expect("temp dir for dockerd");
        let socket = dir.path().join("docker.sock");
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        std::fs::create_dir(dir.path().join("cli")).expect("docker CLI config dir");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = Command::new(dockerd)
            .arg("--iptables=false")
            .arg("--bridge=none")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start dockerd");
        let mut me = Dockerd { child, dir, socket };
        let log = me.dir.path().join("dockerd.log");
        let mut probe = me.docker_command();
        probe.args(["version", "--format", "{{.Server.Version}}"]);
        wait_ready(&mut me.child, "dockerd", &log, || {
            probe.output().is_ok_and(|o| o.status.success())
        });
        me
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`, what `docker -H` and `DOCKER_HOST` take.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A `docker -H <host>` command (with the private CLI config) to add arguments
    /// to, for callers that need its exit status or stdin.
    pub fn docker_command(&self) -> Command {
        let mut cmd = Command::new(tool("docker"));
        cmd.env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .arg("-H")
            .arg(self.host());
        cmd
    }

    /// Runs `docker -H <host> <args>` and returns its stdout; panics with the command,
    /// its exit status and stderr if it fails, or if it takes over
    /// [`Dockerd::COMMAND_LIMIT`] (then it is killed).
    pub fn docker(&self, args: &[&str]) -> String {
        run_within(self.docker_command().args(args), Self::COMMAND_LIMIT)
    }

    /// How long [`Dockerd::docker`] lets one command run: loads, saves and runs of
    /// test images take seconds; this is generous for a loaded 2-CPU machine.
    pub const COMMAND_LIMIT: Duration = Duration::from_secs(180);

    /// The daemon's log so far (its containerd logs into it too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        // dockerd kills its containerd on exit (parent-death signal); make sure, by the
        // PID it wrote, checking it is still that containerd.
        let exec = self.dir.path().join("exec");
        if let Some(pid) = std::fs::read_to_string(exec.join("containerd/containerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*exec.to_string_lossy()) {
                // SAFETY: kill(2) has no memory-safety conditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        unmount_under(self.dir.path());
    }
}

/// Detaches every mount at or under `dir`, deepest first (read from
/// /proc/self/mountinfo), so the temp dir can be removed.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mountinfo(escaped)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: c_path is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(octal, 8) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
