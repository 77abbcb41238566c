//! skopeo reads an image committed through the LocalStore API straight from its root.

use std::io::Write;
use std::process::Command;
use std::time::SystemTime;

use strata_content::{write_blob, Image, ImageStore, Labels, LocalStore};
use strata_oci::{media_types, Descriptor, Digest};

fn gzip_layer() -> Vec<u8> {
    let mut tar = Vec::new();
    {
        let data = b"hello from strata\n";
        // A one-file ustar archive: header, data padded to 512, two zero blocks.
        let mut header = [0u8; 512];
        header[..9].copy_from_slice(b"hello.txt");
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&header);
        tar.extend_from_slice(data);
        tar.resize(1024, 0);
        tar.resize(2048, 0);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

#[tokio::test]
async fn skopeo_inspects_an_image_record() {
    let skopeo = which("skopeo").unwrap_or_else(|| {
        panic!("skopeo is not installed: install it (apt-get install skopeo) to run this test")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).await.expect("open");

    let layer = gzip_layer();
    let layer_desc = Descriptor::new(
        media_types::OCI_LAYER_GZIP,
        Digest::sha256_of(&layer),
        layer.len() as u64,
    );
    write_blob(&store, "layer", &layer, &layer_desc, Labels::new())
        .await
        .expect("layer");
    let diff_id = {
        let mut d = flate2::read::GzDecoder::new(&layer[..]);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut tar).expect("gunzip");
        Digest::sha256_of(&tar)
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
    }))
    .expect("config json");
    let config_desc = Descriptor::new(
        media_types::OCI_CONFIG,
        Digest::sha256_of(&config),
        config.len() as u64,
    );
    write_blob(&store, "config", &config, &config_desc, Labels::new())
        .await
        .expect("config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }))
    .expect("manifest json");
    let manifest_desc = Descriptor::new(
        media_types::OCI_MANIFEST,
        Digest::sha256_of(&manifest),
        manifest.len() as u64,
    );
    write_blob(&store, "manifest", &manifest, &manifest_desc, Labels::new())
        .await
        .expect("manifest");
    store
        .create_image(Image {
            name: "demo".into(),
            target: manifest_desc.clone(),
            labels: Labels::new(),
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        })
        .await
        .expect("image record");

    let reference = format!("oci:{}:demo", dir.path().display());
    let out = Command::new(&skopeo)
        .args(["inspect", &reference])
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo json");
    assert_eq!(v["Digest"], manifest_desc.digest.as_str());
    assert_eq!(v["Layers"][0], layer_desc.digest.as_str());
    assert_eq!(v["Architecture"], "amd64");

    let raw = Command::new(&skopeo)
        .args(["inspect", "--raw", &reference])
        .output()
        .expect("running skopeo");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(
        raw.stdout, manifest,
        "--raw gives the committed manifest bytes"
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
