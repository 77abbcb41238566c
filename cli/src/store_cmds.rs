//! `strata images`, `strata gc`, `strata fsck` and `strata inspect` on a store (the
//! local one or containerd's, through the same traits).

use std::path::Path;

use indicatif::HumanBytes;
use serde_json::Value;
use strata_cache::{prune_extracted, prune_stale_registrations, DirectoryError};
use strata_content::{fsck, read_blob};
use strata_oci::{
    annotations, media_types, walk_image, Descriptor, ImageGraph, ImageNode, WalkError,
};
use strata_snapshotter::DirectorySnapshotter;

use crate::error::CliError;
use crate::store::Store;
use crate::store::{native_snapshots_dir, snapshots_dir, NATIVE_SNAPSHOTTER};

/// The largest manifest, index or config `inspect` reads.
const MAX_JSON: u64 = 16 << 20;

fn time_text(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `strata images`: one line per image record.
pub async fn images(store: &Store) -> Result<(), CliError> {
    let images = store
        .images
        .list_images()
        .await
        .map_err(|e| CliError::context("listing images", e))?;
    println!("{:<40} {:<8} {:<71} CREATED", "NAME", "TYPE", "DIGEST");
    for img in images {
        let kind = if media_types::is_index(&img.target.media_type) {
            "index"
        } else {
            "manifest"
        };
        println!(
            "{:<40} {:<8} {:<71} {}",
            img.name,
            kind,
            img.target.digest,
            time_text(img.created_at)
        );
    }
    Ok(())
}

/// `strata gc`: removes stale snapshot registrations under `store_dir` (trees deleted
/// or changed since), leftover views, extracted base images no unpacked image
/// references, the leases and ingests of dead processes (killed exports), and every
/// blob no image, lease or root references. With containerd the registrations are pruned only if `store_dir` has
/// any, and containerd runs the collection.
pub async fn gc(store: &Store, store_dir: &Path) -> Result<(), CliError> {
    let dir = snapshots_dir(store_dir);
    let removed_snapshots = if store.containerd.is_none() || dir.is_dir() {
        let snapshots = DirectorySnapshotter::open(dir)
            .map_err(|e| CliError::context("opening snapshots", e))?;
        prune_stale_registrations(&snapshots)
            .await
            .map_err(|e| match e {
                DirectoryError::Prune { source } => CliError::context("pruning snapshots", source),
                other => CliError::context("pruning snapshots", other),
            })?
            .removed()
    } else {
        0
    };
    let report = store
        .gc
        .garbage_collect()
        .await
        .map_err(|e| CliError::context("garbage collection", e))?;
    // Extracted base images nothing references, after the blobs: a chain is kept
    // exactly as long as an unpacked image's config (kept by its record) labels it,
    // so `strata rm --prune` frees an unpacked image's blobs and chain in one pass.
    let native = native_snapshots_dir(store_dir);
    let removed_extracted = if native.is_dir() {
        let snapshots = crate::base::native(store_dir)?;
        prune_extracted(
            snapshots.as_ref(),
            store.content.as_ref(),
            NATIVE_SNAPSHOTTER,
        )
        .await
        .map_err(|e| CliError::context("pruning extracted snapshots", e))?
        .len()
    } else {
        0
    };
    println!(
        "removed {} blobs ({}), {} ingests, {} leases, {} snapshot registrations, {} extracted snapshots",
        report.removed.len(),
        HumanBytes(report.bytes_freed),
        report.removed_ingests.len(),
        report.removed_leases.len(),
        removed_snapshots,
        removed_extracted
    );
    Ok(())
}

/// `strata fsck`: verifies every blob; exit 1 naming the count of bad blobs.
pub async fn fsck_cmd(store: &Store) -> Result<(), CliError> {
    let report = fsck(store.content.as_ref())
        .await
        .map_err(|e| CliError::context("fsck", e))?;
    for (digest, err) in &report.problems {
        println!("{digest}: {err}");
    }
    if report.is_clean() {
        println!("checked {} blobs: all verified", report.checked);
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "fsck: {} of {} blobs failed verification",
            report.problems.len(),
            report.checked
        )))
    }
}

async fn json_blob(store: &Store, desc: &Descriptor) -> Result<Value, CliError> {
    let bytes = read_blob(store.content.as_ref(), desc, MAX_JSON)
        .await
        .map_err(|e| CliError::context(format!("reading {}", desc.digest), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CliError::context(format!("{} is not JSON", desc.digest), e))
}

/// `strata inspect REF`: the image record's manifest(s) and config, summarized.
pub async fn inspect(store: &Store, reference: &str) -> Result<(), CliError> {
    let image = store.images.get_image(reference).await.map_err(|e| {
        if e.is_not_found() {
            CliError::failed(format!(
                "no image {reference:?} in {} (see strata images)",
                store.shown
            ))
        } else {
            CliError::context(format!("reading image {reference}"), e)
        }
    })?;
    println!("Name:      {}", image.name);
    println!("Digest:    {}", image.target.digest);
    println!("MediaType: {}", image.target.media_type);
    let graph = walk_image(&image.target, |desc| async move {
        read_blob(store.content.as_ref(), &desc, MAX_JSON)
            .await
            .map_err(|e| CliError::context(format!("reading {}", desc.digest), e))
    })
    .await
    .map_err(|e| match e {
        WalkError::Fetch(e) => e,
        WalkError::Invalid(e) => CliError::context(format!("inspecting {reference}"), e),
    })?;
    for node in &graph.nodes {
        let ImageNode::Manifest(manifest) = &node.node else {
            continue;
        };
        let m = &node.descriptor;
        if is_attestation(m) {
            continue;
        }
        let config_desc = &manifest.config;
        let config = json_blob(store, config_desc).await?;
        let platform = match (config["os"].as_str(), config["architecture"].as_str()) {
            (Some(os), Some(arch)) => match config["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            },
            _ => "unknown".to_string(),
        };
        println!();
        println!("Platform:  {platform}");
        println!("Manifest:  {} ({})", m.digest, m.media_type);
        println!("Config:    {}", config_desc.digest);
        if let Some(c) = config["created"].as_str() {
            println!("Created:   {c}");
        }
        let cfg = &config["config"];
        for key in ["Entrypoint", "Cmd", "WorkingDir", "User"] {
            if !cfg[key].is_null() {
                println!("{:<11}{}", format!("{key}:"), cfg[key]);
            }
        }
        for env in cfg["Env"].as_array().into_iter().flatten() {
            println!("Env:       {}", env.as_str().unwrap_or_default());
        }
        if let Some(labels) = cfg["Labels"].as_object() {
            for (k, v) in labels {
                println!("Label:     {k}={}", v.as_str().unwrap_or_default());
            }
        }
        let history: Vec<&Value> = config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .collect();
        let layers = &manifest.layers;
        let total: u64 = layers.iter().map(|l| l.size).sum();
        println!("Layers:    {} ({})", layers.len(), HumanBytes(total));
        for (i, l) in layers.iter().enumerate() {
            let created_by = history
                .get(i)
                .and_then(|h| h["created_by"].as_str())
                .unwrap_or("");
            println!(
                "  {}  {:>10}  {}",
                l.digest,
                HumanBytes(l.size).to_string(),
                created_by
            );
        }
    }
    print_attestations(&graph);
    Ok(())
}

/// Whether an index entry is an attestation manifest (BuildKit's
/// `vnd.docker.reference.type=attestation-manifest`).
fn is_attestation(desc: &Descriptor) -> bool {
    desc.annotations
        .get(annotations::DOCKER_REFERENCE_TYPE)
        .is_some_and(|t| t == annotations::ATTESTATION_MANIFEST)
}

/// The attestation manifests of `graph`: which image manifest (and platform) each
/// is about, its form, and each statement's predicate type.
fn print_attestations(graph: &ImageGraph) {
    for node in &graph.nodes {
        let ImageNode::Manifest(manifest) = &node.node else {
            continue;
        };
        if !is_attestation(&node.descriptor) {
            continue;
        }
        let about = node
            .descriptor
            .annotations
            .get(annotations::DOCKER_REFERENCE_DIGEST)
            .map_or("?", String::as_str);
        let platform = graph
            .nodes
            .iter()
            .find(|n| n.descriptor.digest.to_string() == about)
            .and_then(|n| n.descriptor.platform.as_ref())
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let artifact = serde_json::from_slice::<Value>(&node.bytes)
            .ok()
            .is_some_and(|m| m["artifactType"] == media_types::DOCKER_ATTESTATION_MANIFEST);
        println!();
        println!(
            "Attestations: {} ({})",
            node.descriptor.digest,
            match artifact {
                true => "OCI artifact",
                false => "attestation image",
            }
        );
        println!("  For:       {about} ({platform})");
        for layer in &manifest.layers {
            let predicate = layer
                .annotations
                .get(annotations::IN_TOTO_PREDICATE_TYPE)
                .map_or("?", String::as_str);
            println!("  Statement: {}  {predicate}", layer.digest);
        }
    }
}
