//! Pushing to a real registry (Debian's `docker-registry`, private to each test on
//! 127.0.0.1, stopped by PID), checked with skopeo and umoci:
//!
//! - a two-platform image (two chains sharing a base) pushed with the `registry`
//!   exporter reads back as an index with `skopeo inspect --raw`, pulls back with
//!   `skopeo copy` and unpacks with `umoci` to each platform's tree; the shared base
//!   layer is uploaded once; pushing again uploads no blob; pushing to another
//!   repository of the same registry mounts every blob instead of uploading it;
//! - the `image` exporter with `push=true,push-by-digest=true` records the image and
//!   pushes it by digest, without a tag;
//! - an unreachable registry and a registry refusing anonymous pushes (htpasswd) give
//!   one typed error each and nothing reported as done; credentials from a docker
//!   config file make the same push succeed (with Docker schema2 media types);
//! - requests that fail once with 503 are retried and the push completes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use serde_json::Value;
use strata_cache::ImmutableRef;
use strata_content::{ImageStore, LocalStore};
use strata_differ::WalkingDiffer;
use strata_exporter::{
    Error, ExportContext, Exporter, ImageExporter, Progress, ProgressEvent, PushError, PushOptions,
    RegistryExporter, Source, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{media_types, Platform};
use strata_registry::{RegistryError, RegistryOptions};
use strata_snapshotter::{DirectorySnapshotter, Labels, Snapshotter};
use strata_tests::servers::Registry;
use strata_tests::tree::{assert_same_tree, Compare};
use strata_tests::{run, tool};

/// A real on-disk store, the directory snapshotter over real trees and the walking
/// differ.
struct Fixture {
    tmp: tempfile::TempDir,
    store: Arc<LocalStore>,
    snapshotter: Arc<DirectorySnapshotter>,
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(tmp.path().join("store")).await.unwrap());
        let snapshotter =
            Arc::new(DirectorySnapshotter::open(tmp.path().join("snapshots")).unwrap());
        Fixture {
            tmp,
            store,
            snapshotter,
        }
    }

    fn ctx(&self) -> ExportContext {
        ExportContext::new(
            self.store.clone(),
            self.store.clone(),
            self.store.clone(),
            Arc::new(WalkingDiffer::new(self.store.clone())),
        )
        .with_jobs(2)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Push settings reading credentials from `docker_config` (a path that may not
    /// exist: anonymous), retrying quickly.
    fn push_options(&self, docker_config: PathBuf) -> PushOptions {
        PushOptions {
            registry: RegistryOptions {
                docker_config: Some(docker_config),
                retries: 2,
                retry_delay: Duration::from_millis(50),
                ..RegistryOptions::default()
            },
            ..PushOptions::default()
        }
    }

    /// Writes the full tree `trees/<name>` and registers it as snapshot `name`.
    async fn layer(&self, name: &str, parent: Option<&str>, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path("trees").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        self.snapshotter
            .register(name, parent, &dir, Labels::new())
            .await
            .unwrap();
        dir
    }

    async fn load(&self, name: &str) -> ImmutableRef {
        let s: Arc<dyn Snapshotter> = self.snapshotter.clone();
        ImmutableRef::load(s, name).await.unwrap()
    }

    /// Two chains on one shared base: base → <arch>-app → <arch>-top (which deletes
    /// a base file). Returns the source and each platform's top tree.
    async fn two_platforms(&self) -> (Source, Vec<(Platform, PathBuf)>) {
        let base: &[(&str, &str)] = &[
            ("etc/os-release", "ID=strata\n"),
            ("bin/tool", "#!/bin/sh\necho tool\n"),
        ];
        self.layer("base", None, base).await;
        let mut entries = Vec::new();
        let mut tops = Vec::new();
        for arch in ["amd64", "arm64"] {
            let arch_file = format!("built for {arch}\n");
            let big: String = (0..40_000).map(|i| format!("{arch} line {i}\n")).collect();
            let mut app = base.to_vec();
            app.push(("app/arch", &arch_file));
            app.push(("app/data.txt", &big));
            self.layer(&format!("{arch}-app"), Some("base"), &app).await;
            let top: Vec<(&str, &str)> = vec![
                ("etc/os-release", "ID=strata\nVERSION=2\n"),
                ("app/arch", &arch_file),
                ("app/data.txt", &big),
            ];
            let dir = self
                .layer(&format!("{arch}-top"), Some(&format!("{arch}-app")), &top)
                .await;
            let platform = Platform::parse(&format!("linux/{arch}")).unwrap();
            let config = format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/sh"]}}}}"#
            );
            entries.push((
                platform.clone(),
                self.load(&format!("{arch}-top")).await,
                Some(config.into_bytes()),
            ));
            tops.push((platform, dir));
        }
        (Source::multi_platform(entries), tops)
    }
}

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new(tool("skopeo")).args(args))
}

/// Runs `instance` on `source`, returning its result and every progress event.
async fn export(
    instance: &dyn strata_exporter::ExporterInstance,
    source: Source,
) -> (
    strata_exporter::Result<BTreeMap<String, String>>,
    Vec<ProgressEvent>,
) {
    let (progress, events) = Progress::channel();
    let collector = tokio::spawn(events.collect::<Vec<_>>());
    let res = instance.export(source, progress).await;
    (res, collector.await.unwrap())
}

/// The distinct layer and config digests of the manifests under `index`, read back
/// from the registry.
fn blobs_in_registry(image: &str, index: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let manifest = json(&skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}@{digest}"),
        ]));
        out.insert(manifest["config"]["digest"].as_str().unwrap().to_string());
        for l in manifest["layers"].as_array().unwrap() {
            out.insert(l["digest"].as_str().unwrap().to_string());
        }
    }
    out
}

/// Completed uploads (`PUT …/blobs/uploads/…` answered 201) to `repo`.
fn completed_uploads(reg: &Registry, repo: &str) -> usize {
    reg.blob_uploads(repo)
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 201)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platform_push_reads_back_and_pushing_again_uploads_nothing() {
    let reg = Registry::start();
    let fx = Fixture::new().await;
    let (source, tops) = fx.two_platforms().await;
    let image = format!("{}/strata/app", reg.host());
    let exporter = RegistryExporter::new(fx.ctx())
        .with_push_options(fx.push_options(fx.path("no-docker-config.json")));
    let inst = exporter
        .resolve(opts(&[
            ("name", &format!("{image}:v1")),
            ("registry.insecure", "true"),
        ]))
        .await
        .unwrap();
    assert_eq!(inst.name(), "registry");
    let (res, events) = export(inst.as_ref(), source.clone()).await;
    let resp = res.unwrap_or_else(|e| panic!("push failed: {e}\n{}", reg.log()));

    // The registry serves the index we pushed, byte for byte.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}:v1"),
    ]);
    let index = json(&raw);
    assert_eq!(index["mediaType"], media_types::OCI_INDEX);
    assert_eq!(
        resp[RESPONSE_IMAGE_DIGEST],
        strata_oci::Digest::sha256_of(raw.as_bytes()).to_string()
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]))
        .collect();
    assert_eq!(platforms, [r#""linux"/"amd64""#, r#""linux"/"arm64""#]);

    // Every blob was uploaded exactly once: the shared base layer too.
    let blobs = blobs_in_registry(&image, &index);
    assert_eq!(
        blobs.len(),
        7,
        "one shared base, two layers and a config per platform"
    );
    assert_eq!(
        completed_uploads(&reg, "strata/app"),
        blobs.len(),
        "{}",
        reg.log()
    );

    // Progress showed bytes per blob: every blob's step ended at its size, without
    // error, and the big layers were reported in several steps.
    for digest in &blobs {
        let id = format!("pushing:{digest}");
        let steps: Vec<&ProgressEvent> = events.iter().filter(|e| e.id == id).collect();
        let last = steps
            .last()
            .unwrap_or_else(|| panic!("no progress for {digest}"));
        assert!(last.completed.is_some() && last.error.is_none(), "{last:?}");
        assert_eq!(Some(last.current), last.total, "{last:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e.id.starts_with("pushing:") && e.current > 0 && e.completed.is_none()),
        "bytes are reported while a blob is pushed"
    );

    // skopeo pulls each platform back; umoci unpacks it to that platform's tree.
    let layout = fx.path("pulled");
    for (platform, top) in &tops {
        let arch = &platform.architecture;
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            &format!("docker://{image}:v1"),
            &format!("oci:{}:{arch}", layout.display()),
        ]);
        let bundle = fx.path(&format!("bundle-{arch}"));
        run(Command::new(tool("umoci")).args([
            "unpack",
            "--image",
            &format!("{}:{arch}", layout.display()),
            bundle.to_str().unwrap(),
        ]));
        assert_same_tree(&bundle.join("rootfs"), top, Compare::default());
    }

    // Pushing the same image again: every blob is found, none is uploaded.
    let before = reg.blob_uploads("strata/app").len();
    let (res, events) = export(inst.as_ref(), source.clone()).await;
    let again = res.unwrap_or_else(|e| panic!("second push failed: {e}\n{}", reg.log()));
    assert_eq!(again[RESPONSE_IMAGE_DIGEST], resp[RESPONSE_IMAGE_DIGEST]);
    assert_eq!(
        reg.blob_uploads("strata/app").len(),
        before,
        "no blob upload on the second push:\n{}",
        reg.log()
    );
    let existing = events
        .iter()
        .filter(|e| e.name.contains("already in strata/app") && e.completed.is_some())
        .count();
    assert_eq!(existing, blobs.len());

    // Another repository of the same registry: blobs are mounted, not uploaded.
    let copy = format!("{}/strata/copy", reg.host());
    let inst = exporter
        .resolve(opts(&[
            ("name", &format!("{copy}:v1")),
            ("registry.insecure", "true"),
        ]))
        .await
        .unwrap();
    let (res, _) = export(inst.as_ref(), source).await;
    res.unwrap_or_else(|e| panic!("push to a second repository failed: {e}\n{}", reg.log()));
    assert!(reg.blob_uploads("strata/copy").is_empty(), "{}", reg.log());
    assert_eq!(
        reg.mounts("strata/copy").len(),
        blobs.len(),
        "{}",
        reg.log()
    );
    let raw_copy = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{copy}:v1"),
    ]);
    assert_eq!(raw_copy, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_exporter_pushes_by_digest_and_records_the_image() {
    let reg = Registry::start();
    let fx = Fixture::new().await;
    fx.layer("one", None, &[("hello.txt", "hello\n")]).await;
    let top = fx.load("one").await;
    let name = format!("{}/strata/bydigest", reg.host());
    let inst = ImageExporter::new(fx.ctx())
        .resolve(opts(&[
            ("name", &name),
            ("push", "true"),
            ("push-by-digest", "true"),
            ("registry.insecure", "true"),
        ]))
        .await
        .unwrap();
    let (res, _) = export(inst.as_ref(), Source::single(Some(top), None)).await;
    let resp = res.unwrap_or_else(|e| panic!("push failed: {e}\n{}", reg.log()));
    let digest = &resp[RESPONSE_IMAGE_DIGEST];

    // Recorded in the image store, as without push.
    let record = fx.store.get_image(&name).await.unwrap();
    assert_eq!(record.target.digest.to_string(), *digest);
    // Pushed by digest: the manifest is there, no tag is.
    let manifest = json(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}@{digest}"),
    ]));
    assert_eq!(manifest["mediaType"], media_types::OCI_MANIFEST);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let latest = Command::new(tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}:latest"))
        .output()
        .unwrap();
    assert!(!latest.status.success(), "a tag was pushed");
    assert!(
        !reg.requests().iter().any(|r| r.method == "PUT"
            && r.uri.contains("/manifests/")
            && !r.uri.contains("sha256:")),
        "a manifest was pushed by tag:\n{}",
        reg.log()
    );
    // push=true needs a name to push to.
    let err = match ImageExporter::new(fx.ctx())
        .resolve(opts(&[("push", "true")]))
        .await
    {
        Ok(_) => panic!("push without a name was accepted"),
        Err(e) => e,
    };
    assert!(
        matches!(err, Error::InvalidOption { ref key, .. } if key == "name"),
        "{err}"
    );
}

/// No push step may be reported as done when the push failed.
fn assert_nothing_pushed(events: &[ProgressEvent]) {
    for e in events {
        if e.id.starts_with("push") && e.completed.is_some() {
            assert!(e.error.is_some(), "reported as done: {e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_one_clear_error() {
    let fx = Fixture::new().await;
    fx.layer("one", None, &[("hello.txt", "hello\n")]).await;
    let top = fx.load("one").await;
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let inst = RegistryExporter::new(fx.ctx())
        .with_push_options(fx.push_options(fx.path("none.json")))
        .resolve(opts(&[
            ("name", &format!("{host}/strata/app:v1")),
            ("registry.insecure", "true"),
        ]))
        .await
        .unwrap();
    let (res, events) = export(inst.as_ref(), Source::single(Some(top), None)).await;
    match &res {
        Err(Error::Push(PushError::Registry(e))) => match e.as_ref() {
            RegistryError::Unavailable { registry, .. } => assert_eq!(registry, &host),
            other => panic!("expected an unreachable registry error, got {other:?}"),
        },
        other => panic!("expected an unreachable registry error, got {other:?}"),
    }
    let msg = res.unwrap_err().to_string();
    assert!(msg.contains(&host) && msg.contains("unreachable"), "{msg}");
    assert_nothing_pushed(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_needs_credentials_from_the_docker_config() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let fx = Fixture::new().await;
    fx.layer("one", None, &[("hello.txt", "hello\n")]).await;
    let top = fx.load("one").await;
    let name = format!("{}/strata/private:v1", reg.host());
    let push = |config: PathBuf| {
        let exporter = RegistryExporter::new(fx.ctx()).with_push_options(fx.push_options(config));
        let name = name.clone();
        let top = top.clone();
        async move {
            let inst = exporter
                .resolve(opts(&[
                    ("name", &name),
                    ("registry.insecure", "true"),
                    ("oci-mediatypes", "false"),
                ]))
                .await
                .unwrap();
            export(inst.as_ref(), Source::single(Some(top), None)).await
        }
    };

    // Anonymous, and with a wrong password: refused, one typed error naming the
    // registry and repository, nothing pushed.
    let write_config = |path: &Path, user_pass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        std::fs::write(
            path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
        )
        .unwrap();
    };
    let wrong = fx.path("wrong.json");
    write_config(&wrong, "alice:nope");
    for config in [fx.path("none.json"), wrong] {
        let (res, events) = push(config.clone()).await;
        let refused = match &res {
            Err(Error::Push(PushError::Registry(e))) => Some(e.as_ref()),
            _ => None,
        };
        match refused {
            Some(RegistryError::Unauthorized {
                registry,
                repository,
                ..
            }) => {
                assert_eq!(registry, &reg.host());
                assert_eq!(repository, "strata/private");
            }
            _ => panic!(
                "expected unauthorized with {}, got {res:?}",
                config.display()
            ),
        }
        assert_nothing_pushed(&events);
        assert!(
            reg.blob_uploads("strata/private")
                .iter()
                .all(|r| r.status == 401),
            "{}",
            reg.log()
        );
    }
    let anonymous = Command::new(tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(!anonymous.status.success());

    // With the right credentials in the docker config file: pushed.
    let good = fx.path("good.json");
    write_config(&good, "alice:s3cret");
    let (res, _) = push(good).await;
    let resp = res.unwrap_or_else(|e| panic!("push with credentials failed: {e}\n{}", reg.log()));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &format!("docker://{name}"),
    ]);
    assert_eq!(
        resp[RESPONSE_IMAGE_DIGEST],
        strata_oci::Digest::sha256_of(raw.as_bytes()).to_string()
    );
    // Docker schema2 media types (oci-mediatypes=false) are pushed as such.
    assert_eq!(json(&raw)["mediaType"], media_types::DOCKER_MANIFEST);
}

/// A proxy in front of a registry that answers `503 Service Unavailable` (and closes
/// the connection) to the first attempt of chosen requests, forwarding everything
/// else. It reads HTTP/1.1 request framing (head, `Content-Length` body) so it can
/// pick requests on kept-alive connections; responses are copied through untouched.
struct FlakyProxy {
    port: u16,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request to fail once: `GET /v2/` and each blob upload's final `PUT` and each
/// manifest `PUT`, keyed by what they name.
fn flaky_key(method: &str, uri: &str) -> Option<String> {
    match method {
        "GET" if uri == "/v2/" => Some("ping".into()),
        "PUT" if uri.contains("/blobs/uploads/") => uri
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("digest="))
            .map(|d| format!("blob {}", d.replace("%3A", ":"))),
        "PUT" if uri.contains("/manifests/") => Some(format!("manifest {uri}")),
        _ => None,
    }
}

impl FlakyProxy {
    async fn start(upstream: u16) -> FlakyProxy {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let seen: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
        let f = failed.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (failed, seen) = (f.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = FlakyProxy::serve(client, upstream, failed, seen).await;
                });
            }
        });
        FlakyProxy { port, failed, task }
    }

    async fn serve(
        client: tokio::net::TcpStream,
        upstream: u16,
        failed: Arc<std::sync::Mutex<Vec<String>>>,
        seen: Arc<std::sync::Mutex<BTreeSet<String>>>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
        let (mut sr, mut sw) = server.into_split();
        let (mut cr, cw) = client.into_split();
        let cw = Arc::new(tokio::sync::Mutex::new(cw));
        let down = {
            let cw = cw.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if cw.lock().await.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = cw.lock().await.shutdown().await;
            })
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let result = loop {
            // One request head.
            let head_end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let n = cr.read(&mut chunk).await?;
                if n == 0 {
                    down.abort();
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut first = head.lines().next().unwrap_or("").split(' ');
            let (method, uri) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            if let Some(key) = flaky_key(method, uri) {
                if seen.lock().unwrap().insert(key.clone()) {
                    failed.lock().unwrap().push(key);
                    let mut w = cw.lock().await;
                    w.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                    let _ = w.shutdown().await;
                    break Ok(());
                }
            }
            let lower = head.to_ascii_lowercase();
            if lower.contains("transfer-encoding: chunked") {
                // Not framed by length: forward the rest of the connection as is.
                sw.write_all(&buf).await?;
                tokio::io::copy(&mut cr, &mut sw).await?;
                break Ok(());
            }
            let len: usize = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            // Forward the head and the body.
            let mut remaining = head_end + len;
            loop {
                let take = remaining.min(buf.len());
                sw.write_all(&buf[..take]).await?;
                buf.drain(..take);
                remaining -= take;
                if remaining == 0 {
                    break;
                }
                let n = cr.read(&mut chunk).await?;
                if n == 0 {
                    down.abort();
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        down.abort();
        result
    }

    fn failed(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_retried() {
    let reg = Registry::start();
    let proxy = FlakyProxy::start(reg.port()).await;
    let fx = Fixture::new().await;
    let (source, _) = fx.two_platforms().await;
    let image = format!("127.0.0.1:{}/strata/flaky", proxy.port);
    let inst = RegistryExporter::new(fx.ctx())
        .with_push_options(fx.push_options(fx.path("none.json")))
        .resolve(opts(&[
            ("name", &format!("{image}:v1")),
            ("registry.insecure", "true"),
        ]))
        .await
        .unwrap();
    let (res, events) = export(inst.as_ref(), source).await;
    let resp = res.unwrap_or_else(|e| panic!("push through the flaky proxy failed: {e}"));

    // Every upload, every manifest and the first ping failed once and were retried
    // (uploads from the start of the blob).
    let failed = proxy.failed();
    let blobs = failed.iter().filter(|k| k.starts_with("blob ")).count();
    let manifests = failed.iter().filter(|k| k.starts_with("manifest ")).count();
    assert!(failed.contains(&"ping".to_string()), "{failed:?}");
    assert_eq!((blobs, manifests), (7, 3), "{failed:?}");
    assert_eq!(completed_uploads(&reg, "strata/flaky"), 7, "{}", reg.log());
    assert!(events
        .iter()
        .filter(|e| e.completed.is_some())
        .all(|e| e.error.is_none()));
    // What the registry holds is the image pushed.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/strata/flaky:v1", reg.host()),
    ]);
    assert_eq!(
        resp[RESPONSE_IMAGE_DIGEST],
        strata_oci::Digest::sha256_of(raw.as_bytes()).to_string()
    );
}
