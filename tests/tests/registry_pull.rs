//! Pulling from a real registry (Debian's `docker-registry`, private to each test on
//! 127.0.0.1) with strata-registry, and pushing blobs the content store does not hold:
//!
//! - an image made with umoci and pushed with skopeo: its manifest fetched by tag and
//!   by digest (the digest is the sha256 of the served bytes), its config read whole,
//!   its layer streamed through `fetch_blob` into a store, verified and labelled with
//!   its source; a missing tag and a missing blob are `NotFound` naming them;
//! - a registry with htpasswd auth: `Unauthorized` without credentials; works with a
//!   docker config `auths` entry and with a `credHelpers` helper;
//! - a push whose layer is only available from a provider (the base image's registry
//!   client): to another repository of the same registry it is mounted, to another
//!   registry it is uploaded by streaming from the provider, and the store never
//!   gains it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use strata_content::{fetch_blob, write_blob, BlobProvider, ContentStore, Labels, MemoryStore};
use strata_exporter::{BlobOutcome, Progress, PushOptions, Pusher};
use strata_oci::{Descriptor, Digest, Manifest};
use strata_registry::{
    Access, ImageReference, ManifestRef, RegistryClient, RegistryError, RegistryOptions,
};
use strata_tests::servers::Registry;
use strata_tests::{run, tool};

/// Makes an OCI layout `dir` with one image `:1` of one layer holding `hello.txt`
/// (umoci), and copies it to `docker://{host}/{repo}:1` (skopeo, `creds` when given).
/// Returns the manifest's digest as the registry serves it.
fn push_base_image(dir: &Path, host: &str, repo: &str, creds: Option<&str>) -> Digest {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let umoci = |args: &[&str]| run(Command::new(tool("umoci")).args(args));
    let image = format!("{}:1", layout.display());
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()]);
    std::fs::write(bundle.join("rootfs/hello.txt"), "hello from the base\n").unwrap();
    umoci(&["repack", "--image", &image, &bundle.display().to_string()]);
    let target = format!("docker://{host}/{repo}:1");
    let mut copy = Command::new(tool("skopeo"));
    copy.args(["copy", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        copy.args(["--dest-creds", c]);
    }
    run(copy.arg(format!("oci:{image}")).arg(&target));
    let mut inspect = Command::new(tool("skopeo"));
    inspect.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = creds {
        inspect.args(["--creds", c]);
    }
    let raw = run(inspect.arg(&target));
    Digest::sha256_of(raw.as_bytes())
}

/// Options speaking plain HTTP to `hosts`, credentials from `docker_config`.
fn options(hosts: &[String], docker_config: &Path) -> RegistryOptions {
    RegistryOptions {
        insecure_hosts: hosts.to_vec(),
        docker_config: Some(docker_config.to_path_buf()),
        retries: 1,
        retry_delay: Duration::from_millis(20),
        ..RegistryOptions::default()
    }
}

async fn connect(image: &str, opts: &RegistryOptions) -> RegistryClient {
    let image = ImageReference::parse(image).unwrap();
    RegistryClient::connect(&image, opts, Access::Pull)
        .await
        .unwrap_or_else(|e| panic!("connecting to {image}: {e}"))
}

/// The manifest's config and single layer.
fn config_and_layer(bytes: &[u8]) -> (Descriptor, Descriptor) {
    let manifest: Manifest = serde_json::from_slice(bytes).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    (manifest.config.clone(), manifest.layers[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_manifests_configs_and_layers_by_tag_and_digest() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let digest = push_base_image(tmp.path(), &reg.host(), "base", None);
    let opts = options(&[reg.host()], &tmp.path().join("none.json"));
    let client = connect(&format!("docker://{}/base:1", reg.host()), &opts).await;

    let (by_tag, bytes) = client
        .fetch_manifest(&ManifestRef::Tag("1".into()))
        .await
        .unwrap();
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.size, bytes.len() as u64);
    assert_eq!(by_tag.media_type, strata_oci::media_types::OCI_MANIFEST);
    let pinned = ImageReference::parse(&format!("docker://{}/base@{digest}", reg.host())).unwrap();
    assert_eq!(pinned.manifest_ref(), ManifestRef::Digest(digest.clone()));
    let (by_digest, same) = client.fetch_manifest(&pinned.manifest_ref()).await.unwrap();
    assert_eq!((by_digest, &same), (by_tag, &bytes));

    let (config, layer) = config_and_layer(&bytes);
    let config_bytes = client.fetch_blob_bytes(&config, 1 << 20).await.unwrap();
    assert_eq!(Digest::sha256_of(&config_bytes), config.digest);
    let too_small = client.fetch_blob_bytes(&config, 10).await.unwrap_err();
    assert!(
        matches!(too_small, RegistryError::TooLarge { .. }),
        "{too_small}"
    );

    let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    assert!(fetch_blob(&store, &client, &layer, Labels::new())
        .await
        .unwrap());
    let info = store.info(&layer.digest).await.unwrap();
    assert_eq!(info.size, layer.size);
    assert_eq!(
        info.labels
            .get(&format!("containerd.io/distribution.source.{}", reg.host())),
        Some(&"base".to_string())
    );

    // A missing tag and a missing blob: NotFound naming them.
    match client
        .fetch_manifest(&ManifestRef::Tag("nope".into()))
        .await
    {
        Err(e @ RegistryError::NotFound { .. }) => {
            let text = e.to_string();
            assert!(text.contains("nope") && text.contains("base"), "{text}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let missing = Descriptor::new(
        &layer.media_type,
        Digest::sha256_of(b"not in the registry"),
        19,
    );
    match client.open_blob(&missing).await {
        Err(e @ RegistryError::NotFound { .. }) => {
            assert!(e.to_string().contains(missing.digest.as_str()), "{e}")
        }
        Err(other) => panic!("expected NotFound, got {other:?}"),
        Ok(_) => panic!("a missing blob opened"),
    }
    let err = fetch_blob(&store, &client, &missing, Labels::new())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(store.info(&missing.digest).await.is_err());
}

/// Writes `docker-credential-{name}` into `dir`, answering `user`/`secret` for any
/// server, and puts `dir` first on PATH.
fn install_helper(dir: &Path, name: &str, user: &str, secret: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nread url\necho \"{{\\\"ServerURL\\\":\\\"$url\\\",\\\"Username\\\":\\\"{user}\\\",\\\"Secret\\\":\\\"{secret}\\\"}}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{old}", dir.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_registry_needs_credentials_from_auths_or_a_helper() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let digest = push_base_image(tmp.path(), &reg.host(), "private", Some("alice:s3cret"));
    let image = format!("{}/private:1", reg.host());
    let tag = ManifestRef::Tag("1".into());

    let anonymous = options(&[reg.host()], &tmp.path().join("none.json"));
    let client = connect(&image, &anonymous).await;
    match client.fetch_manifest(&tag).await {
        Err(RegistryError::Unauthorized {
            registry,
            repository,
            ..
        }) => assert_eq!((registry, repository.as_str()), (reg.host(), "private")),
        other => panic!("expected Unauthorized, got {other:?}"),
    }

    let auths = tmp.path().join("auths.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(
        &auths,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let client = connect(&image, &options(&[reg.host()], &auths)).await;
    assert_eq!(client.fetch_manifest(&tag).await.unwrap().0.digest, digest);

    install_helper(&tmp.path().join("bin"), "strata-test", "alice", "s3cret");
    let helpers = tmp.path().join("helpers.json");
    std::fs::write(
        &helpers,
        format!(r#"{{"credHelpers":{{"{}":"strata-test"}}}}"#, reg.host()),
    )
    .unwrap();
    let client = connect(&image, &options(&[reg.host()], &helpers)).await;
    let (desc, bytes) = client.fetch_manifest(&tag).await.unwrap();
    assert_eq!(desc.digest, digest);
    let (_, layer) = config_and_layer(&bytes);
    let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    fetch_blob(&store, &client, &layer, Labels::new())
        .await
        .unwrap();
}

/// Puts the base image's manifest and config (not its layer) into a new store.
async fn store_without_layer(
    client: &RegistryClient,
) -> (Arc<dyn ContentStore>, Descriptor, Descriptor) {
    let (desc, bytes) = client
        .fetch_manifest(&ManifestRef::Tag("1".into()))
        .await
        .unwrap();
    let (config, layer) = config_and_layer(&bytes);
    let config_bytes = client.fetch_blob_bytes(&config, 1 << 20).await.unwrap();
    let store: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    write_blob(store.as_ref(), "manifest", &bytes, &desc, Labels::new())
        .await
        .unwrap();
    write_blob(
        store.as_ref(),
        "config",
        &config_bytes,
        &config,
        Labels::new(),
    )
    .await
    .unwrap();
    (store, desc, layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_only_a_provider_has_is_mounted_or_streamed() {
    let reg = Registry::start();
    let other = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    push_base_image(tmp.path(), &reg.host(), "base", None);
    let opts = options(&[reg.host(), other.host()], &tmp.path().join("none.json"));
    let client = Arc::new(connect(&format!("{}/base:1", reg.host()), &opts).await);
    let (store, manifest, layer) = store_without_layer(&client).await;
    let provider: Arc<dyn BlobProvider> = client.clone();
    let providers = BTreeMap::from([(layer.digest.clone(), provider)]);
    let pusher = Pusher::new(
        store.clone(),
        PushOptions {
            registry: opts.clone(),
            ..PushOptions::default()
        },
    )
    .with_providers(providers);

    // Same registry, another repository: mounted from the base's repository.
    let report = pusher
        .push(
            &format!("{}/app:1", reg.host()),
            &manifest,
            false,
            &Progress::discard(),
        )
        .await
        .unwrap_or_else(|e| panic!("push failed: {e}\n{}", reg.log()));
    assert_eq!(report.blobs[&layer.digest], BlobOutcome::Mounted);
    assert_eq!(reg.mounts("app").len(), 1, "{:?}", reg.requests());
    assert!(
        reg.blob_uploads("app")
            .iter()
            .all(|r| !r.uri.contains(layer.digest.hex())),
        "{:?}",
        reg.blob_uploads("app")
    );

    // Another registry: uploaded, streamed from the provider.
    let report = pusher
        .push(
            &format!("{}/app:1", other.host()),
            &manifest,
            false,
            &Progress::discard(),
        )
        .await
        .unwrap_or_else(|e| panic!("push failed: {e}\n{}", other.log()));
    assert_eq!(report.blobs[&layer.digest], BlobOutcome::Uploaded);
    assert!(other.mounts("app").is_empty());
    let pulled = connect(&format!("{}/app:1", other.host()), &opts).await;
    let copy: Arc<dyn ContentStore> = Arc::new(MemoryStore::new());
    fetch_blob(&copy, &pulled, &layer, Labels::new())
        .await
        .unwrap();
    // The store never held the layer.
    assert!(store.info(&layer.digest).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_unavailable_naming_it() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(std::slice::from_ref(&host), &tmp.path().join("none.json"));
    let image = ImageReference::parse(&format!("docker://{host}/base:1")).unwrap();
    match RegistryClient::connect(&image, &opts, Access::Pull).await {
        Err(e @ RegistryError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&host), "{e}")
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}
