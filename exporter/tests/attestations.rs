//! Attestations through the library: what a generator is given (the finished image's
//! layers with their refs and diffIDs, the manifest digest the index holds), GC labels
//! numbered on through the attestation manifests, and BuildKit's inline-only rule
//! (`attestation-inline`) and the attestation options' defaults.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{opts, Fixture};
use serde_json::{json, Value};
use strata_content::{read_blob, ContentStore};
use strata_exporter::{
    Attestation, AttestationGenerator, Exporter, GeneratedImageInfo, ImageExporter, OciExporter,
    OutputKind, OutputOptions, Progress, Source, RESPONSE_IMAGE_DIGEST,
};
use strata_oci::{annotations, media_types, Descriptor, Digest, Platform};

/// What the recorder saw of one image: platform, manifest digest, layer diffIDs,
/// layer ref ids.
type Seen = (String, Digest, Vec<Digest>, Vec<String>);

/// Records what it is given and attests each layer's diffID.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

#[async_trait]
impl AttestationGenerator for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn generate(&self, image: &GeneratedImageInfo) -> strata_exporter::Result<Attestation> {
        let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        let refs = image
            .layers
            .iter()
            .map(|l| l.layer_ref.id().to_string())
            .collect();
        self.seen.lock().unwrap().push((
            image.platform.to_string(),
            image.manifest.digest.clone(),
            diff_ids.clone(),
            refs,
        ));
        let diff_ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
        Ok(Attestation::new(
            "https://example.com/diff-ids/v1",
            json!({ "diffIDs": diff_ids }),
        ))
    }
}

async fn json_of(store: &dyn ContentStore, digest: &str) -> Value {
    let digest = Digest::parse(digest).unwrap();
    let size = store.info(&digest).await.unwrap().size;
    let desc = Descriptor::new(media_types::OCI_MANIFEST, digest, size);
    serde_json::from_slice(&read_blob(store, &desc, 1 << 20).await.unwrap()).unwrap()
}

async fn labels(store: &dyn ContentStore, digest: &str) -> Vec<(String, String)> {
    let info = store.info(&Digest::parse(digest).unwrap()).await.unwrap();
    info.labels
        .into_iter()
        .filter(|(k, _)| k.starts_with("containerd.io/gc.ref.content."))
        .collect()
}

#[tokio::test]
async fn generators_see_the_finished_image_and_gc_labels_cover_attestations() {
    let fx = Fixture::new().await;
    fx.chain("a", "amd64").await;
    fx.chain("b", "arm64").await;
    let mut source = Source::multi_platform([
        (
            Platform::parse("linux/amd64").unwrap(),
            fx.load("a-top").await,
            None,
        ),
        (
            Platform::parse("linux/arm64").unwrap(),
            fx.load("b-top").await,
            None,
        ),
    ]);
    let recorder = Arc::new(Recorder::default());
    for image in &mut source.images {
        image.generators.push(recorder.clone());
    }
    let response = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/attested:1")]))
        .await
        .unwrap()
        .export(source, Progress::discard())
        .await
        .unwrap();
    let store = fx.store.as_ref();
    let root = &response[RESPONSE_IMAGE_DIGEST];
    let index = json_of(store, root).await;
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");

    // The index's GC labels: the two image manifests, then the attestation manifests.
    let expected: Vec<(String, String)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                format!("containerd.io/gc.ref.content.{i}"),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut got = labels(store, root).await;
    got.sort_by_key(|(k, _)| k.clone());
    assert_eq!(got, expected);

    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (i, (platform, manifest, diff_ids, refs)) in seen.iter().enumerate() {
        // The generator saw the manifest the index lists, and the config's diffIDs.
        assert_eq!(entries[i]["digest"], manifest.to_string());
        let image = json_of(store, &manifest.to_string()).await;
        let config = json_of(store, image["config"]["digest"].as_str().unwrap()).await;
        let config_ids: Vec<String> =
            serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
        let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
        assert_eq!(ids, config_ids, "{platform}");
        let prefix = if platform == "linux/amd64" { "a" } else { "b" };
        assert_eq!(
            refs,
            &[
                format!("{prefix}-base"),
                format!("{prefix}-app"),
                format!("{prefix}-top")
            ]
        );

        // Its statement is the attestation manifest's layer; the manifest's labels
        // hold its config and statement.
        let entry = &entries[2 + i];
        assert_eq!(
            entry["annotations"][annotations::DOCKER_REFERENCE_DIGEST],
            manifest.to_string()
        );
        let attestation_digest = entry["digest"].as_str().unwrap();
        let attestation = json_of(store, attestation_digest).await;
        let statement_digest = attestation["layers"][0]["digest"].as_str().unwrap();
        let statement = json_of(store, statement_digest).await;
        assert_eq!(statement["predicate"]["diffIDs"], json!(ids));
        let mut got = labels(store, attestation_digest).await;
        got.sort_by_key(|(k, _)| k.clone());
        assert_eq!(
            got,
            [
                (
                    "containerd.io/gc.ref.content.0".to_string(),
                    attestation["config"]["digest"]
                        .as_str()
                        .unwrap()
                        .to_string()
                ),
                (
                    "containerd.io/gc.ref.content.1".to_string(),
                    statement_digest.to_string()
                ),
            ]
        );
    }
}

/// The root document of an export's `response`.
async fn root_of(fx: &Fixture, response: std::collections::BTreeMap<String, String>) -> Value {
    let digest = Digest::parse(&response[RESPONSE_IMAGE_DIGEST]).unwrap();
    let info = fx.store.info(&digest).await.unwrap();
    let desc = Descriptor::new(media_types::OCI_INDEX, digest, info.size);
    serde_json::from_slice(&read_blob(fx.store.as_ref(), &desc, 1 << 20).await.unwrap()).unwrap()
}

#[tokio::test]
async fn inline_only_attestations_make_an_index_only_with_attestation_inline() {
    let fx = Fixture::new().await;
    fx.chain("a", "amd64").await;
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    let source = || async {
        let mut source = Source::single(Some(fx.load("a-top").await), Some(config.clone()));
        source.images[0].attestations.push(Attestation {
            inline_only: true,
            ..Attestation::new("https://example.com/inline/v1", json!({"k": "v"}))
        });
        source
    };
    // oci: attestation-inline defaults to false; alone, the inline-only statement
    // neither makes an index nor is written (BuildKit drops it).
    let dest = fx.path("plain.tar");
    let dest = dest.to_str().unwrap();
    let plain = OciExporter::new(fx.ctx())
        .resolve(opts(&[("dest", dest)]))
        .await
        .unwrap()
        .export(source().await, Progress::discard())
        .await
        .unwrap();
    let root = root_of(&fx, plain).await;
    assert!(
        root.get("manifests").is_none() && root["layers"].is_array(),
        "{root}"
    );

    // attestation-inline=true attaches it: an index, the image under its config's
    // platform, then the attestation manifest.
    let inline = OciExporter::new(fx.ctx())
        .resolve(opts(&[("dest", dest), ("attestation-inline", "true")]))
        .await
        .unwrap()
        .export(source().await, Progress::discard())
        .await
        .unwrap();
    let index = root_of(&fx, inline).await;
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(
        entries[0]["platform"],
        json!({"architecture": "arm64", "os": "linux"})
    );
    assert_eq!(
        entries[1]["platform"],
        json!({"architecture": "unknown", "os": "unknown"})
    );

    // The image exporter forces inline attestations by default, as BuildKit's.
    let image = ImageExporter::new(fx.ctx())
        .resolve(opts(&[("name", "example/inline:1")]))
        .await
        .unwrap()
        .export(source().await, Progress::discard())
        .await
        .unwrap();
    assert_eq!(
        root_of(&fx, image).await["manifests"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

/// `oci-artifact` and `attestation-inline` are parsed without a store, with
/// BuildKit's defaults per output.
#[test]
fn attestation_options_have_buildkits_defaults() {
    let image = |kind, pairs: &[(&str, &str)]| {
        OutputOptions::parse(kind, &opts(pairs))
            .map(|p| p.image)
            .map_err(Box::new)
    };
    let oci = image(OutputKind::Oci, &[]).unwrap();
    assert!(!oci.oci_artifact && !oci.attestation_inline);
    let registry = image(OutputKind::Registry, &[("name", "r/x")]).unwrap();
    assert!(registry.attestation_inline);
    let set = image(
        OutputKind::Oci,
        &[("oci-artifact", "true"), ("attestation-inline", "1")],
    )
    .unwrap();
    assert!(set.oci_artifact && set.attestation_inline);
    let err = image(OutputKind::Docker, &[("oci-artifact", "true")]).unwrap_err();
    assert!(
        matches!(*err, strata_exporter::Error::InvalidOption { ref key, .. } if key == "oci-artifact"),
        "{err}"
    );
    let err = image(OutputKind::Oci, &[("attestation-inline", "sometimes")]).unwrap_err();
    assert!(err.to_string().contains("attestation-inline"), "{err}");
}
