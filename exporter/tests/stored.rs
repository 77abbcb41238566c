//! Images already in the store, saved with the outputs' code: several names in one
//! OCI layout (dir and tar), a docker archive with every name in `RepoTags`, an index
//! kept whole in a layout and refused by a docker archive, unknown names writing
//! nothing.

mod common;

use std::collections::BTreeMap;

use common::{opts, Fixture};
use serde_json::Value;
use strata_content::{tag_image, write_blob, Image, ImageStore, Labels};
use strata_exporter::{
    push_image, save_images, Error, Exporter, ImageExporter, OutputKind, Progress, PushOptions,
    Pusher, SaveOptions, Source, StoredImage, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{annotations, media_types, Descriptor, Digest, Platform};

async fn export(fx: &Fixture, source: Source, name: &str) -> String {
    let response = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", name)]))
        .await
        .unwrap()
        .export(source, Progress::discard())
        .await
        .unwrap();
    response[RESPONSE_IMAGE_DIGEST].clone()
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn save_opts(kind: OutputKind, pairs: &[(&str, &str)]) -> SaveOptions {
    SaveOptions::parse(kind, &opts(pairs)).unwrap()
}

#[tokio::test]
async fn several_names_in_one_layout_and_one_docker_archive() {
    let fx = Fixture::new().await;
    let top = fx.chain("a", "amd64").await;
    assert!(top.is_dir());
    let app = export(
        &fx,
        Source::single(Some(fx.load("a-top").await), None),
        "example.com/app:v1",
    )
    .await;
    let base = export(
        &fx,
        Source::single(Some(fx.load("a-base").await), None),
        "example.com/base:1",
    )
    .await;
    tag_image(
        fx.store.as_ref(),
        "example.com/app:v1",
        &["example.com/app:v2".into()],
        false,
    )
    .await
    .unwrap();
    let names: Vec<String> = [
        "example.com/app:v1",
        "example.com/app:v2",
        "example.com/base:1",
    ]
    .map(String::from)
    .into();

    // An OCI layout directory: one index.json entry per name, every blob.
    let dir = fx.path("layout");
    let dir_text = dir.to_string_lossy().to_string();
    let saved = save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &names,
        &save_opts(OutputKind::Oci, &[("dest", &dir_text), ("tar", "false")]),
        &Progress::discard(),
    )
    .await
    .unwrap();
    assert_eq!(saved.len(), 3);
    let index = read_json(&dir.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    let shown: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["annotations"][annotations::CONTAINERD_IMAGE_NAME]
                    .as_str()
                    .unwrap(),
                e["annotations"][annotations::REF_NAME].as_str().unwrap(),
                e["digest"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("example.com/app:v1", "v1", app.as_str()),
            ("example.com/app:v2", "v2", app.as_str()),
            ("example.com/base:1", "1", base.as_str()),
        ]
    );
    for image in &saved {
        for blob in image.blobs() {
            let path = dir.join("blobs/sha256").join(blob.digest.hex());
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                blob.size,
                "{path:?}"
            );
        }
    }

    // A docker archive: one manifest.json entry per image, both tags of app in it.
    let tar = fx.path("images.docker.tar");
    let tar_text = tar.to_string_lossy().to_string();
    save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &names,
        &save_opts(OutputKind::Docker, &[("dest", &tar_text)]),
        &Progress::discard(),
    )
    .await
    .unwrap();
    let unpacked = fx.path("docker-unpacked");
    common::run(
        "tar",
        &["-xf", &tar_text, "-C", &{
            std::fs::create_dir_all(&unpacked).unwrap();
            unpacked.to_string_lossy().to_string()
        }],
    );
    let manifest = read_json(&unpacked.join("manifest.json"));
    let tags: Vec<Value> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["RepoTags"].clone())
        .collect();
    assert_eq!(
        tags,
        [
            serde_json::json!(["example.com/app:v1", "example.com/app:v2"]),
            serde_json::json!(["example.com/base:1"]),
        ]
    );
    for m in manifest.as_array().unwrap() {
        assert!(unpacked.join(m["Config"].as_str().unwrap()).is_file());
    }
}

#[tokio::test]
async fn an_index_keeps_every_platform_in_a_layout_and_is_refused_by_docker() {
    let fx = Fixture::new().await;
    fx.chain("amd", "amd64").await;
    fx.chain("arm", "arm64").await;
    let source = Source::multi_platform([
        (
            Platform::parse("linux/amd64").unwrap(),
            fx.load("amd-top").await,
            None,
        ),
        (
            Platform::parse("linux/arm64").unwrap(),
            fx.load("arm-top").await,
            None,
        ),
    ]);
    let digest = export(&fx, source, "example.com/multi:1").await;
    let stored = StoredImage::read(fx.store.as_ref(), fx.store.as_ref(), "example.com/multi:1")
        .await
        .unwrap();
    assert_eq!(stored.record.target.digest.to_string(), digest);
    assert_eq!(stored.platform_images().len(), 2);

    let tar = fx.path("multi.tar");
    let tar_text = tar.to_string_lossy().to_string();
    save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/multi:1".into()],
        &save_opts(OutputKind::Oci, &[("dest", &tar_text)]),
        &Progress::discard(),
    )
    .await
    .unwrap();
    let listing = common::run("tar", &["-tf", &tar_text]);
    for blob in stored.blobs() {
        assert!(
            listing.contains(blob.digest.hex()),
            "{} missing",
            blob.digest
        );
    }

    let docker = fx.path("multi.docker.tar");
    let err = save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/multi:1".into()],
        &save_opts(OutputKind::Docker, &[("dest", &docker.to_string_lossy())]),
        &Progress::discard(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidContent { reason, .. } if reason.contains("example.com/multi:1") && reason.contains("2 platform")),
        "{err}"
    );
    assert!(!docker.exists());
}

#[tokio::test]
async fn unknown_names_and_bad_options_write_nothing() {
    let fx = Fixture::new().await;
    fx.chain("a", "amd64").await;
    export(
        &fx,
        Source::single(Some(fx.load("a-top").await), None),
        "example.com/app:v1",
    )
    .await;
    let tar = fx.path("out.tar");
    let tar_text = tar.to_string_lossy().to_string();
    let err = save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/app:v1".into(), "example.com/nope:1".into()],
        &save_opts(OutputKind::Oci, &[("dest", &tar_text)]),
        &Progress::discard(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::NoImage { name } if name == "example.com/nope:1"),
        "{err}"
    );
    assert!(err.to_string().contains("example.com/nope:1"));
    assert!(!tar.exists());

    // push: an unknown name fails before any registry is contacted.
    let pusher = Pusher::new(fx.store.clone(), PushOptions::default());
    let err = push_image(
        &pusher,
        fx.store.as_ref(),
        "example.com/nope:1",
        Some("127.0.0.1:9/x:1"),
        &Progress::discard(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::NoImage { name } if name == "example.com/nope:1"),
        "{err}"
    );

    // An existing tar is replaced whole.
    std::fs::write(&tar, b"old contents").unwrap();
    save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/app:v1".into()],
        &save_opts(OutputKind::Oci, &[("dest", &tar_text)]),
        &Progress::discard(),
    )
    .await
    .unwrap();
    assert!(common::run("tar", &["-tf", &tar_text]).contains("index.json"));

    let bad: BTreeMap<&str, Result<SaveOptions, Error>> = [
        (
            "name",
            SaveOptions::parse(OutputKind::Oci, &opts(&[("dest", "x"), ("name", "a")])),
        ),
        (
            "dest",
            SaveOptions::parse(OutputKind::Oci, &opts(&[("tar", "false")])),
        ),
        (
            "tar",
            SaveOptions::parse(
                OutputKind::Docker,
                &opts(&[("dest", "x"), ("tar", "false")]),
            ),
        ),
        (
            "type",
            SaveOptions::parse(OutputKind::Image, &opts(&[("dest", "x")])),
        ),
    ]
    .into();
    for (key, res) in bad {
        let err = res.unwrap_err();
        assert!(
            err.to_string().contains(&format!("{key:?}")),
            "{key}: {err}"
        );
    }
    // Nothing above touched the store's records.
    assert_eq!(fx.store.list_images().await.unwrap().len(), 1);
}

/// Writes `value` as a blob of `media_type` into the fixture's store.
async fn put_json(fx: &Fixture, media_type: &str, value: &Value) -> Descriptor {
    let bytes = serde_json::to_vec(value).unwrap();
    let desc = Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as u64);
    write_blob(fx.store.as_ref(), "test-json", &bytes, &desc, Labels::new())
        .await
        .unwrap();
    desc
}

#[tokio::test]
async fn attestation_manifests_are_saved_in_a_layout_and_left_out_of_a_docker_archive() {
    let fx = Fixture::new().await;
    fx.chain("a", "amd64").await;
    export(
        &fx,
        Source::single(Some(fx.load("a-top").await), None),
        "example.com/app:1",
    )
    .await;
    let app = fx.store.get_image("example.com/app:1").await.unwrap();
    // BuildKit's layout: the image, and an attestation manifest for it.
    let statement = put_json(
        &fx,
        "application/vnd.in-toto+json",
        &serde_json::json!({"_type": "https://in-toto.io/Statement/v1"}),
    )
    .await;
    let config = put_json(&fx, media_types::OCI_CONFIG, &serde_json::json!({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers", "diff_ids": [statement.digest]}})).await;
    let attestation = put_json(
        &fx,
        media_types::OCI_MANIFEST,
        &serde_json::json!({"schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST, "config": config, "layers": [statement]}),
    )
    .await;
    let mut app_entry = app.target.clone();
    app_entry.platform = Some(Platform::parse("linux/amd64").unwrap());
    let mut attestation_entry = attestation.clone();
    attestation_entry.platform = Some(Platform::parse("unknown/unknown").unwrap());
    attestation_entry.annotations = [
        (
            annotations::DOCKER_REFERENCE_TYPE.to_string(),
            annotations::ATTESTATION_MANIFEST.to_string(),
        ),
        (
            "vnd.docker.reference.digest".to_string(),
            app.target.digest.to_string(),
        ),
    ]
    .into();
    let index = put_json(
        &fx,
        media_types::OCI_INDEX,
        &serde_json::json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": [app_entry, attestation_entry]}),
    )
    .await;
    let now = std::time::SystemTime::now();
    fx.store
        .create_image(Image {
            name: "example.com/attested:1".into(),
            target: index.clone(),
            labels: Labels::new(),
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();

    let stored = StoredImage::read(
        fx.store.as_ref(),
        fx.store.as_ref(),
        "example.com/attested:1",
    )
    .await
    .unwrap();
    let platforms = stored.platform_images();
    assert_eq!(platforms.len(), 1);
    assert_eq!(platforms[0].manifest.digest, app.target.digest);
    for d in [&index, &attestation, &config, &statement] {
        assert!(
            stored.blobs().iter().any(|b| b.digest == d.digest),
            "{}",
            d.digest
        );
    }

    // The layout holds the index with both manifests.
    let dir = fx.path("attested");
    save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/attested:1".into()],
        &save_opts(
            OutputKind::Oci,
            &[("dest", &dir.to_string_lossy()), ("tar", "false")],
        ),
        &Progress::discard(),
    )
    .await
    .unwrap();
    assert_eq!(
        read_json(&dir.join("index.json"))["manifests"][0]["digest"],
        index.digest.to_string()
    );
    assert!(dir
        .join("blobs/sha256")
        .join(statement.digest.hex())
        .is_file());

    // The docker archive has the image alone.
    let tar = fx.path("attested.docker.tar");
    save_images(
        fx.store.clone(),
        fx.store.as_ref(),
        &["example.com/attested:1".into()],
        &save_opts(OutputKind::Docker, &[("dest", &tar.to_string_lossy())]),
        &Progress::discard(),
    )
    .await
    .unwrap();
    let manifest = common::run("tar", &["-xOf", &tar.to_string_lossy(), "manifest.json"]);
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", platforms[0].config.digest.hex())
    );
}
