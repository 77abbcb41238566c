//! Importing images built by real tools (umoci, skopeo): the refs carry the base's
//! blobs byte for byte, their tree is the base's, and bad inputs fail with typed errors
//! naming the image and the blob, leaving nothing half-written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use strata_cache::{
    import_image, open_image, pull_image, read_image, ImageLocation, ImageRecords, ImportError,
    ImportedImage, Materializer, RefError,
};
use strata_content::{ContentStore, Filter, ImageStore, MemoryStore};
use strata_differ::WalkingDiffer;
use strata_oci::{media_types, Descriptor, Digest, Platform};
use strata_snapshotter::{NativeSnapshotter, Snapshotter, TempMount};

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?} (skopeo and umoci must be installed): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout `L` with the image `base` built by umoci in two layers: the first
/// adds `etc/greeting` and `etc/keep`, the second adds `usr/second` and deletes
/// `etc/greeting` (a whiteout).
struct Base {
    tmp: tempfile::TempDir,
}

impl Base {
    fn new() -> Base {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("L");
        let bundle = tmp.path().join("B");
        let image = format!("{}:base", layout.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        let step = |change: &dyn Fn(&Path)| {
            run(Command::new("umoci")
                .args(["unpack", "--rootless", "--image", &image])
                .arg(&bundle));
            change(&bundle.join("rootfs"));
            run(Command::new("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle));
            std::fs::remove_dir_all(&bundle).unwrap();
        };
        step(&|root| {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/greeting"), "hello").unwrap();
            std::fs::write(root.join("etc/keep"), "kept").unwrap();
        });
        step(&|root| {
            std::fs::create_dir_all(root.join("usr")).unwrap();
            std::fs::write(root.join("usr/second"), "two").unwrap();
            std::fs::remove_file(root.join("etc/greeting")).unwrap();
        });
        Base { tmp }
    }

    fn layout(&self) -> PathBuf {
        self.tmp.path().join("L")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `skopeo copy oci:L:base DEST`.
    fn copy_to(&self, dest: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:base", self.layout().display()))
            .arg(dest));
    }

    fn blob(&self, digest: &Digest) -> Vec<u8> {
        std::fs::read(self.layout().join("blobs/sha256").join(digest.hex())).unwrap()
    }

    /// Adds `bytes` as a blob of the layout.
    fn put(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let d = Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64);
        std::fs::write(
            self.layout().join("blobs/sha256").join(d.digest.hex()),
            bytes,
        )
        .unwrap();
        d
    }

    fn index_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.layout().join("index.json")).unwrap()).unwrap()
    }

    /// The descriptor of the manifest tagged `base`.
    fn manifest_desc(&self) -> Descriptor {
        let index = self.index_json();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "base")
            .unwrap()
            .clone();
        let mut d: Descriptor = serde_json::from_value(entry).unwrap();
        d.annotations.clear();
        d
    }

    fn manifest(&self) -> Value {
        serde_json::from_slice(&self.blob(&self.manifest_desc().digest)).unwrap()
    }

    /// Tags `target` as `tag` in the layout's index.json.
    fn tag(&self, target: &Descriptor, tag: &str) {
        let mut index = self.index_json();
        let mut entry = serde_json::to_value(target).unwrap();
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        index["manifests"].as_array_mut().unwrap().push(entry);
        std::fs::write(
            self.layout().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// A copy of the base's manifest with `edit` applied to it, tagged `tag`.
    fn tag_edited_manifest(&self, tag: &str, edit: impl Fn(&mut Value)) -> Descriptor {
        let mut manifest = self.manifest();
        edit(&mut manifest);
        let d = self.put(
            media_types::OCI_MANIFEST,
            &serde_json::to_vec(&manifest).unwrap(),
        );
        self.tag(&d, tag);
        d
    }
}

struct World {
    _tmp: tempfile::TempDir,
    store: Arc<MemoryStore>,
    materializer: Materializer,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let content: Arc<dyn ContentStore> = store.clone();
    let snapshotter: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(tmp.path().join("snapshots")).unwrap());
    World {
        materializer: Materializer {
            store: content.clone(),
            applier: Arc::new(WalkingDiffer::new(content)),
            snapshotter,
        },
        store,
        _tmp: tmp,
    }
}

async fn import(w: &World, reference: &str) -> Result<ImportedImage, ImportError> {
    let reference = ImageLocation::parse(reference).unwrap();
    let root = open_image(&reference, None, None, &Default::default()).await?;
    import_image(&root, None, &w.materializer).await
}

/// Materializes the image's top and checks it is the base's tree.
async fn assert_base_tree(image: &ImportedImage) {
    let top = image.top.clone().expect("the base has layers");
    let tree = TempMount::mount(&top.mounts().await.unwrap()).unwrap();
    let root = tree.path();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/keep")).unwrap(),
        "kept"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/second")).unwrap(),
        "two"
    );
    assert!(!root.join("etc/greeting").exists(), "the whiteout applied");
    drop(tree);
    top.release().await.unwrap();
}

/// The base's layer descriptors as its manifest has them.
fn base_layers(base: &Base) -> Vec<Descriptor> {
    serde_json::from_value(base.manifest()["layers"].clone()).unwrap()
}

fn config_bytes(base: &Base) -> Vec<u8> {
    let config: Descriptor = serde_json::from_value(base.manifest()["config"].clone()).unwrap();
    base.blob(&config.digest)
}

#[tokio::test]
async fn an_oci_layout_imports_as_the_bases_blobs_and_tree() {
    let base = Base::new();
    let w = world();
    let reference = format!("oci:{}:base", base.layout().display());
    let image = import(&w, &reference).await.unwrap();
    let layers = base_layers(&base);
    assert_eq!(layers.len(), 2);
    let chain = image.top.as_ref().unwrap().chain();
    let got: Vec<Descriptor> = chain
        .iter()
        .map(|r| r.blob_layer().unwrap().descriptor.clone())
        .collect();
    assert_eq!(got, layers, "digest, size, media type as the base has them");
    assert_eq!(image.config, config_bytes(&base));
    assert_eq!(image.manifest.digest, base.manifest_desc().digest);
    assert_eq!(image.platform, Platform::host());
    assert_eq!(chain[1].description(), "umoci repack");
    // Nothing fetched before a tree is asked for.
    assert!(w.store.walk(&Filter::All).await.unwrap().is_empty());
    assert_base_tree(&image).await;
}

#[tokio::test]
async fn archives_written_by_skopeo_import_as_the_same_image() {
    let base = Base::new();
    let oci_archive = base.path("oci.tar");
    let docker_archive = base.path("docker.tar");
    base.copy_to(&format!("oci-archive:{}:base", oci_archive.display()));
    base.copy_to(&format!(
        "docker-archive:{}:example.com/base:1",
        docker_archive.display()
    ));
    let w = world();

    let image = import(&w, &format!("oci-archive:{}:base", oci_archive.display()))
        .await
        .unwrap();
    assert_eq!(
        image
            .layers
            .iter()
            .map(|l| l.descriptor.clone())
            .collect::<Vec<_>>(),
        base_layers(&base)
    );
    assert_eq!(image.config, config_bytes(&base));
    assert_base_tree(&image).await;

    for name in ["", ":example.com/base:1"] {
        let reference = format!("docker-archive:{}{name}", docker_archive.display());
        let image = import(&w, &reference).await.unwrap();
        assert_eq!(image.config, config_bytes(&base), "{reference}");
        assert_eq!(image.manifest.media_type, media_types::DOCKER_MANIFEST);
        for layer in &image.layers {
            // docker save's layers are uncompressed: the blob is its diff_id.
            assert_eq!(layer.descriptor.media_type, media_types::DOCKER_LAYER);
            assert_eq!(layer.descriptor.digest, layer.diff_id);
        }
        assert_eq!(image.name, "example.com/base:1");
        assert_base_tree(&image).await;
    }
    let err = import(
        &w,
        &format!("docker-archive:{}:other:1", docker_archive.display()),
    )
    .await
    .unwrap_err();
    match &err {
        ImportError::TagNotFound { tag, available, .. } => {
            assert_eq!(tag, "other:1");
            assert_eq!(available, &["example.com/base:1".to_string()]);
        }
        other => panic!("expected TagNotFound, got {other}"),
    }
}

#[tokio::test]
async fn a_pull_stores_everything_and_the_store_record_imports_again() {
    let base = Base::new();
    let w = world();
    let reference = ImageLocation::parse(&format!("oci:{}:base", base.layout().display())).unwrap();
    let root = open_image(&reference, None, None, &Default::default())
        .await
        .unwrap();
    let read = read_image(&root, None).await.unwrap();
    let content: Arc<dyn ContentStore> = w.store.clone();
    let images: &dyn ImageStore = w.store.as_ref();
    let pulled = pull_image(&read, &content, Some((images, "example.com/base:1")))
        .await
        .unwrap();
    assert_eq!(
        pulled.fetched.len(),
        4,
        "two layers, the config, the manifest"
    );
    let manifest = w.store.info(&pulled.manifest.digest).await.unwrap();
    let layers = base_layers(&base);
    assert_eq!(
        manifest.labels.get("containerd.io/gc.ref.content.2"),
        Some(&layers[1].digest.to_string())
    );
    let layer = w.store.info(&layers[0].digest).await.unwrap();
    assert_eq!(
        layer.labels.get("containerd.io/uncompressed"),
        Some(&read.layers[0].diff_id.to_string())
    );
    // Again: nothing new.
    let again = pull_image(&read, &content, Some((images, "example.com/base:1")))
        .await
        .unwrap();
    assert!(again.fetched.is_empty());

    // Offline now: the layout is gone, the store's record imports the same image.
    std::fs::remove_dir_all(base.layout()).unwrap();
    let records = ImageRecords {
        content: content.clone(),
        images: w.store.clone(),
        name: "the test store".into(),
    };
    let reference = ImageLocation::parse("store:example.com/base:1").unwrap();
    let root = open_image(&reference, Some(&records), None, &Default::default())
        .await
        .unwrap();
    let image = import_image(&root, None, &w.materializer).await.unwrap();
    assert_eq!(image.manifest.digest, pulled.manifest.digest);
    assert_eq!(
        image
            .layers
            .iter()
            .map(|l| l.descriptor.clone())
            .collect::<Vec<_>>(),
        layers
    );
    assert_base_tree(&image).await;

    let missing = ImageLocation::parse("store:nope").unwrap();
    match open_image(&missing, Some(&records), None, &Default::default())
        .await
        .unwrap_err()
    {
        ImportError::TagNotFound { available, .. } => {
            assert_eq!(available, ["example.com/base:1".to_string()])
        }
        other => panic!("expected TagNotFound, got {other}"),
    }
}

#[tokio::test]
async fn a_tampered_manifest_is_a_digest_mismatch_naming_it() {
    let base = Base::new();
    let w = world();
    let desc = base.manifest_desc();
    let original = base.blob(&desc.digest);
    let mut bytes = original.clone();
    let at = bytes.iter().position(|b| *b == b'2').unwrap();
    bytes[at] = b'3';
    std::fs::write(
        base.layout().join("blobs/sha256").join(desc.digest.hex()),
        &bytes,
    )
    .unwrap();
    let reference = format!("oci:{}:base", base.layout().display());
    let err = import(&w, &reference).await.unwrap_err();
    let text = err.to_string();
    match &err {
        ImportError::DigestMismatch {
            role, blob, image, ..
        } => {
            assert_eq!((*role, blob, image), ("manifest", &desc.digest, &reference));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(
        text.contains(&desc.digest.to_string()) && text.contains(&reference),
        "{text}"
    );

    // The same for a config.
    std::fs::write(
        base.layout().join("blobs/sha256").join(desc.digest.hex()),
        &original,
    )
    .unwrap();
    let config: Descriptor = serde_json::from_value(base.manifest()["config"].clone()).unwrap();
    let config_path = base.layout().join("blobs/sha256").join(config.digest.hex());
    let mut bytes = std::fs::read(&config_path).unwrap();
    let at = bytes.iter().position(|b| *b == b'{').unwrap();
    bytes[at] = b' ';
    base.tag_edited_manifest("config", |_| {});
    std::fs::write(&config_path, &bytes).unwrap();
    let reference = format!("oci:{}:config", base.layout().display());
    match import(&w, &reference).await.unwrap_err() {
        ImportError::DigestMismatch { role, blob, .. } => {
            assert_eq!((role, blob), ("config", config.digest));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
}

#[tokio::test]
async fn a_layer_that_is_not_its_diff_id_fails_at_materialize_and_leaves_nothing() {
    let base = Base::new();
    let w = world();
    // A config whose second diff_id is wrong; the blobs themselves are intact.
    let mut config: Value = serde_json::from_slice(&config_bytes(&base)).unwrap();
    let wrong = Digest::sha256_of(b"not the layer");
    config["rootfs"]["diff_ids"][1] = json!(wrong.to_string());
    let config = base.put(
        media_types::OCI_CONFIG,
        &serde_json::to_vec(&config).unwrap(),
    );
    base.tag_edited_manifest("bad", |m| {
        m["config"] = serde_json::to_value(&config).unwrap()
    });
    let image = import(&w, &format!("oci:{}:bad", base.layout().display()))
        .await
        .unwrap();
    let top = image.top.clone().unwrap();
    match top.mounts().await.unwrap_err() {
        RefError::DiffIdMismatch {
            layer, expected, ..
        } => {
            assert_eq!(layer, base_layers(&base)[1].digest);
            assert_eq!(expected, wrong);
        }
        other => panic!("expected DiffIdMismatch, got {other}"),
    }
    let committed = w
        .materializer
        .snapshotter
        .walk(&strata_snapshotter::Filter::All)
        .await
        .unwrap();
    assert!(
        committed.iter().all(|s| s.name != top.id()),
        "the bad layer was not committed: {committed:?}"
    );
    assert!(w.store.list_statuses().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_layer_media_type_names_the_blob() {
    let base = Base::new();
    let w = world();
    let layer = base_layers(&base)[0].digest.clone();
    base.tag_edited_manifest("odd", |m| {
        m["layers"][0]["mediaType"] = json!("application/vnd.example.squashfs")
    });
    let reference = format!("oci:{}:odd", base.layout().display());
    match import(&w, &reference).await.unwrap_err() {
        ImportError::UnknownMediaType {
            image,
            blob,
            media_type,
            ..
        } => {
            assert_eq!((image, blob), (reference, layer));
            assert_eq!(media_type, "application/vnd.example.squashfs");
        }
        other => panic!("expected UnknownMediaType, got {other}"),
    }
}

#[tokio::test]
async fn an_index_gives_the_platform_asked_for_or_names_those_it_has() {
    let base = Base::new();
    let w = world();
    let mut entry = base.manifest_desc();
    entry.platform = Platform::parse("linux/s390x");
    let index =
        json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": [entry]});
    let index = base.put(media_types::OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    base.tag(&index, "multi");
    let reference =
        ImageLocation::parse(&format!("oci:{}:multi", base.layout().display())).unwrap();
    let root = open_image(&reference, None, None, &Default::default())
        .await
        .unwrap();
    let amd64 = Platform::parse("linux/amd64").unwrap();
    match read_image(&root, Some(&amd64)).await.unwrap_err() {
        ImportError::MissingPlatform {
            image,
            blob,
            platform,
            available,
        } => {
            assert_eq!(image, reference.to_string());
            assert_eq!(blob, index.digest);
            assert_eq!(platform, "linux/amd64");
            assert_eq!(available, ["linux/s390x".to_string()]);
        }
        other => panic!("expected MissingPlatform, got {other}"),
    }
    let s390x = Platform::parse("linux/s390x").unwrap();
    let image = import_image(&root, Some(&s390x), &w.materializer)
        .await
        .unwrap();
    assert_eq!(image.manifest.digest, entry.digest);
}

#[tokio::test]
async fn a_missing_tag_lists_the_tags_there_are() {
    let base = Base::new();
    let w = world();
    let reference = format!("oci:{}:nope", base.layout().display());
    match import(&w, &reference).await.unwrap_err() {
        ImportError::TagNotFound {
            image,
            tag,
            available,
        } => {
            assert_eq!((image, tag), (reference, "nope".to_string()));
            assert_eq!(available, ["base".to_string()]);
        }
        other => panic!("expected TagNotFound, got {other}"),
    }
    // Without a tag: the only image, else the names to choose from.
    let untagged = format!("oci:{}", base.layout().display());
    let image = import(&w, &untagged).await.unwrap();
    assert_eq!(image.manifest.digest, base.manifest_desc().digest);
    base.tag(&base.manifest_desc(), "again");
    match import(&w, &untagged).await.unwrap_err() {
        ImportError::AmbiguousImage { image, available } => {
            assert_eq!(image, untagged);
            assert_eq!(available, ["base".to_string(), "again".to_string()]);
        }
        other => panic!("expected AmbiguousImage, got {other}"),
    }
}

#[tokio::test]
async fn a_pull_of_a_tampered_layer_leaves_nothing_half_written() {
    let base = Base::new();
    let w = world();
    let layer = base_layers(&base)[1].clone();
    let path = base.layout().join("blobs/sha256").join(layer.digest.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let reference = ImageLocation::parse(&format!("oci:{}:base", base.layout().display())).unwrap();
    let root = open_image(&reference, None, None, &Default::default())
        .await
        .unwrap();
    let read = read_image(&root, None).await.unwrap();
    let content: Arc<dyn ContentStore> = w.store.clone();
    let err = pull_image(
        &read,
        &content,
        Some((w.store.as_ref(), "example.com/base:1")),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&layer.digest.to_string()), "{text}");
    assert!(text.contains(&reference.to_string()), "{text}");
    assert!(
        matches!(&err, ImportError::Ref { source, .. } if matches!(**source, RefError::Fetch { .. })),
        "{text}"
    );
    assert!(w
        .store
        .info(&layer.digest)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(w
        .store
        .info(&base.manifest_desc().digest)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(w.store.list_statuses().await.unwrap().is_empty());
    assert!(w.store.list_images().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_docker_archive_layer_that_is_not_its_diff_id_fails_naming_it() {
    let base = Base::new();
    let archive = base.path("docker.tar");
    base.copy_to(&format!(
        "docker-archive:{}:example.com/base:1",
        archive.display()
    ));
    let w = world();
    let reference = format!("docker-archive:{}", archive.display());
    let image = import(&w, &reference).await.unwrap();
    let layer = image.layers[1].clone();
    // Flip a byte inside that layer's tar, in place.
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let offset = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| {
            e.path()
                .unwrap()
                .to_string_lossy()
                .contains(layer.diff_id.hex())
        })
        .map(|e| e.raw_file_position() + e.size() / 2)
        .unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[offset as usize] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();

    let image = import(&w, &reference).await.unwrap();
    let err = image.top.clone().unwrap().mounts().await.unwrap_err();
    let text = err.to_string();
    match &err {
        RefError::Fetch {
            layer: l, source, ..
        } => {
            assert_eq!(l, &layer.descriptor.digest);
            assert!(
                matches!(source, strata_content::Error::DigestMismatch { .. }),
                "{text}"
            );
        }
        other => panic!("expected a fetch digest mismatch, got {other}"),
    }
    assert!(text.contains("docker archive"), "{text}");
    assert!(w
        .store
        .info(&layer.descriptor.digest)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(w.store.list_statuses().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_layout_blob_leading_outside_the_layout_is_refused() {
    let base = Base::new();
    let w = world();
    let layer = base_layers(&base)[0].clone();
    let inside = base.layout().join("blobs/sha256").join(layer.digest.hex());
    let outside = base.path("elsewhere");
    std::fs::rename(&inside, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
    let image = import(&w, &format!("oci:{}:base", base.layout().display()))
        .await
        .unwrap();
    let err = image.top.clone().unwrap().mounts().await.unwrap_err();
    let text = err.to_string();
    match &err {
        RefError::Fetch {
            layer: l, source, ..
        } => {
            assert_eq!(l, &layer.digest);
            assert!(
                matches!(source, strata_content::Error::InvalidArgument(_)),
                "{text}"
            );
        }
        other => panic!("expected a refused fetch, got {other}"),
    }
    assert!(text.contains("outside"), "{text}");
    assert!(w
        .store
        .info(&layer.digest)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn a_docker_archive_with_compressed_layers_keeps_their_blobs() {
    // What `crane pull --format=legacy` writes: manifest.json, the config, the layers
    // as their compressed blobs.
    let base = Base::new();
    let layers = base_layers(&base);
    let archive = base.path("legacy.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, name, data).unwrap();
    };
    let names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}.tar.gz", l.digest.hex()))
        .collect();
    let manifest =
        json!([{"Config": "config.json", "RepoTags": ["example.com/gz:1"], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("config.json", &config_bytes(&base));
    for (layer, name) in layers.iter().zip(&names) {
        add(name, &base.blob(&layer.digest));
    }
    builder.into_inner().unwrap();

    let w = world();
    let image = import(&w, &format!("docker-archive:{}", archive.display()))
        .await
        .unwrap();
    for (got, want) in image.layers.iter().zip(&layers) {
        assert_eq!(got.descriptor.digest, want.digest);
        assert_eq!(got.descriptor.size, want.size);
        assert_eq!(got.descriptor.media_type, media_types::DOCKER_LAYER_GZIP);
    }
    assert_eq!(image.layers.len(), layers.len());
    assert_eq!(image.name, "example.com/gz:1");
    assert_base_tree(&image).await;
}
