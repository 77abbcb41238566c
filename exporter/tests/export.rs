//! End-to-end exports through each exporter, checked with skopeo and umoci.

mod common;

use common::{assert_umoci_unpacks_to, opts, run, Fixture};
use serde_json::Value;
use strata_exporter::{
    DockerExporter, Exporter, OciExporter, Progress, Source, RESPONSE_CONFIG_DIGEST,
    RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{media_types, Digest, Platform};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn oci_tar_single_platform_reads_back_with_skopeo_and_umoci() {
    let fx = Fixture::new().await;
    let top_dir = fx.chain("one", "amd64").await;
    let top = fx.load("one-top").await;
    let dest = fx.path("image.tar");
    let inst = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dest.to_str().unwrap()),
            ("name", "example.com/app:v1"),
            ("annotation.org.opencontainers.image.title", "app"),
        ]))
        .await
        .unwrap();
    assert_eq!(inst.name(), "oci");
    let resp = inst
        .export(Source::single(Some(top), None), Progress::discard())
        .await
        .unwrap();
    assert_eq!(fx.calls(), 3);

    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:v1", dest.display()),
        ],
    );
    let manifest = json(&raw);
    assert_eq!(manifest["mediaType"], media_types::OCI_MANIFEST);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        media_types::OCI_LAYER_GZIP
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "app"
    );
    assert_eq!(
        resp[RESPONSE_IMAGE_DIGEST],
        Digest::sha256_of(raw.as_bytes()).to_string()
    );
    assert_eq!(
        manifest["config"]["digest"],
        resp[RESPONSE_CONFIG_DIGEST].as_str()
    );

    let cfg = json(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("oci-archive:{}:v1", dest.display()),
        ],
    ));
    let host = Platform::host();
    assert_eq!(cfg["architecture"], host.architecture.as_str());
    assert_eq!(cfg["config"]["WorkingDir"], "/");
    let history = cfg["history"].as_array().unwrap();
    let created_by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by,
        ["base tree", "COPY app /app", "RUN rm /bin/tool"]
    );
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let layout = fx.path("copied");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:v1", dest.display()),
            &format!("oci:{}:v1", layout.display()),
        ],
    );
    assert_umoci_unpacks_to(
        &format!("{}:v1", layout.display()),
        &fx.path("bundle"),
        &top_dir,
    );
}

#[tokio::test]
async fn oci_dir_two_platforms_in_oci_and_docker_media_types() {
    let fx = Fixture::new().await;
    let amd_dir = fx.chain("amd", "amd64").await;
    let arm_dir = fx.chain("arm", "arm64").await;
    let amd = Platform::parse("linux/amd64").unwrap();
    let arm = Platform::parse("linux/arm64").unwrap();
    let source = Source::multi_platform([
        (amd.clone(), fx.load("amd-top").await, None),
        (
            arm.clone(),
            fx.load("arm-top").await,
            Some(
                br#"{"architecture":"arm64","os":"linux","config":{"Cmd":["/app/run"]}}"#.to_vec(),
            ),
        ),
    ]);
    // OCI media types: skopeo reads the index and copies every platform; umoci
    // unpacks each platform to its own top tree.
    let dir = fx.path("layout-oci");
    let inst = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dir.to_str().unwrap()),
            ("tar", "false"),
            ("name", "app:multi"),
        ]))
        .await
        .unwrap();
    let resp = inst
        .export(source.clone(), Progress::discard())
        .await
        .unwrap();
    let raw = run(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:multi", dir.display())],
    );
    let index = json(&raw);
    assert_eq!(index["mediaType"], media_types::OCI_INDEX);
    assert_eq!(
        resp[RESPONSE_IMAGE_DIGEST],
        Digest::sha256_of(raw.as_bytes()).to_string()
    );
    assert!(
        !resp.contains_key(RESPONSE_CONFIG_DIGEST),
        "no single config for an index"
    );
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            &format!("oci:{}:multi", dir.display()),
            &format!("oci:{}:all", fx.path("all").display()),
        ],
    );
    for (arch, expected) in [("amd64", &amd_dir), ("arm64", &arm_dir)] {
        let single = fx.path(&format!("single-{arch}"));
        run(
            "skopeo",
            &[
                "copy",
                "--override-os",
                "linux",
                "--override-arch",
                arch,
                &format!("oci:{}:multi", dir.display()),
                &format!("oci:{}:{arch}", single.display()),
            ],
        );
        assert_umoci_unpacks_to(
            &format!("{}:{arch}", single.display()),
            &fx.path(&format!("bundle-{arch}")),
            expected,
        );
        let cfg = json(&run(
            "skopeo",
            &[
                "inspect",
                "--config",
                "--raw",
                &format!("oci:{}:{arch}", single.display()),
            ],
        ));
        assert_eq!(cfg["architecture"], arch);
        if arch == "arm64" {
            assert_eq!(cfg["config"]["Cmd"][0], "/app/run", "user config kept");
        }
    }

    // Docker media types: skopeo 1.9's oci: transport only lists OCI-typed entries
    // of index.json, so the manifest list is checked by reading the layout: every
    // blob is present under its digest, with Docker schema2 types throughout.
    let dir = fx.path("layout-docker");
    let inst = OciExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dir.to_str().unwrap()),
            ("tar", "false"),
            ("oci-mediatypes", "false"),
        ]))
        .await
        .unwrap();
    let resp = inst
        .export(source.clone(), Progress::discard())
        .await
        .unwrap();
    let layout_index = json(&std::fs::read_to_string(dir.join("index.json")).unwrap());
    let root = &layout_index["manifests"][0];
    assert_eq!(root["mediaType"], media_types::DOCKER_MANIFEST_LIST);
    assert_eq!(root["digest"], resp[RESPONSE_IMAGE_DIGEST].as_str());
    let list = json(&blob(&dir, root["digest"].as_str().unwrap()));
    assert_eq!(list["mediaType"], media_types::DOCKER_MANIFEST_LIST);
    assert_eq!(platforms_of(&list), ["linux/amd64", "linux/arm64"]);
    for m in list["manifests"].as_array().unwrap() {
        assert_eq!(m["mediaType"], media_types::DOCKER_MANIFEST);
        let manifest = json(&blob(&dir, m["digest"].as_str().unwrap()));
        assert_eq!(manifest["config"]["mediaType"], media_types::DOCKER_CONFIG);
        let cfg = json(&blob(&dir, manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(cfg["architecture"], m["platform"]["architecture"]);
        for l in manifest["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], media_types::DOCKER_LAYER_GZIP);
            blob(&dir, l["digest"].as_str().unwrap());
        }
    }
}

fn platforms_of(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// Reads blob `digest` from layout `dir`, checking its bytes hash to it.
fn blob(dir: &std::path::Path, digest: &str) -> String {
    let d = Digest::parse(digest).unwrap();
    let bytes = std::fs::read(dir.join("blobs/sha256").join(d.hex()))
        .unwrap_or_else(|e| panic!("blob {digest} missing from the layout: {e}"));
    assert_eq!(Digest::sha256_of(&bytes), d, "blob {digest} is corrupt");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn docker_archive_loads_in_skopeo_and_unpacks() {
    let fx = Fixture::new().await;
    let top_dir = fx.chain("d", "amd64").await;
    let dest = fx.path("docker.tar");
    let inst = DockerExporter::new(fx.ctx())
        .resolve(opts(&[
            ("dest", dest.to_str().unwrap()),
            ("name", "docker.io/library/app:v2"),
        ]))
        .await
        .unwrap();
    assert_eq!(inst.name(), "docker");
    inst.export(
        Source::single(Some(fx.load("d-top").await), None),
        Progress::discard(),
    )
    .await
    .unwrap();
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("docker-archive:{}", dest.display()),
        ],
    );
    let manifest = json(&raw);
    assert_eq!(manifest["mediaType"], media_types::DOCKER_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_types::DOCKER_CONFIG);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        media_types::DOCKER_LAYER_GZIP
    );
    let info = json(&run(
        "skopeo",
        &[
            "inspect",
            &format!("docker-archive:{}:app:v2", dest.display()),
        ],
    ));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    let layout = fx.path("from-docker");
    run(
        "skopeo",
        &[
            "copy",
            "--format",
            "oci",
            &format!("docker-archive:{}", dest.display()),
            &format!("oci:{}:x", layout.display()),
        ],
    );
    assert_umoci_unpacks_to(
        &format!("{}:x", layout.display()),
        &fx.path("bundle"),
        &top_dir,
    );
}
