//! Attestations: in-toto statements about a platform's image, packaged as BuildKit's
//! `exporter/containerimage` does (one attestation manifest per platform, listed in
//! the index after the image manifests; see `writer/attestations.rs`).
//!
//! A platform gets its statements two ways:
//!
//! - [`Attestation`]s known before the export (a frontend's SBOM, a statement file):
//!   [`PlatformSource::attestations`](crate::PlatformSource::attestations);
//! - [`AttestationGenerator`]s, run once the platform's image manifest is written,
//!   for statements that need the finished image: its layers (with their refs and
//!   diffIDs), its manifest, the export's finishing time. SLSA provenance
//!   ([`ProvenanceGenerator`](crate::ProvenanceGenerator)) is one; an SBOM read from
//!   the layers is another.

pub(crate) mod provenance;
mod purl;
mod request;
pub(crate) mod sbom;
pub(crate) mod statement;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use strata_cache::ImmutableRef;
use strata_content::ContentStore;
use strata_oci::{Descriptor, Digest, Platform};

use crate::base_image::BaseImageRef;
use crate::error::Result;

pub use provenance::ExportRequest;
pub use purl::image_purl;
pub use request::AttestRequest;

/// The in-toto statement type strata writes and reads (`_type`).
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The largest statement file read ([`AttestRequest::File`]), as BuildKit limits
/// attestation files.
pub const MAX_STATEMENT_SIZE: u64 = 40 << 20;

/// One in-toto statement to attach to a platform's image, before its subjects are
/// resolved: BuildKit's `exporter.Attestation` of kind in-toto.
#[derive(Clone, Debug, PartialEq)]
pub struct Attestation {
    /// The predicate type URI (`https://slsa.dev/provenance/v1`,
    /// `https://spdx.dev/Document`, …).
    pub predicate_type: String,
    /// The predicate (a JSON object).
    pub predicate: serde_json::Value,
    /// The statement's subjects; empty means `[AttestationSubject::Image]`.
    pub subjects: Vec<AttestationSubject>,
    /// BuildKit's `inline-only`: this attestation alone does not turn a
    /// single-platform export into an index; without an index it is dropped, unless
    /// the output sets `attestation-inline=true` (the default of the `image` and
    /// `registry` outputs).
    pub inline_only: bool,
}

impl Attestation {
    /// A statement about the image itself (subjects `[Image]`), not inline-only.
    pub fn new(predicate_type: impl Into<String>, predicate: serde_json::Value) -> Attestation {
        Attestation {
            predicate_type: predicate_type.into(),
            predicate,
            subjects: Vec::new(),
            inline_only: false,
        }
    }
}

/// A subject of an [`Attestation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestationSubject {
    /// The platform's image (BuildKit's `self`): one subject per image name, named by
    /// its purl (`pkg:docker/REPO@TAG?platform=…`, [`image_purl`]), with the digest of
    /// the platform's manifest; an export without names gets one subject carrying
    /// only the digest.
    Image,
    /// An explicit subject (BuildKit's `raw`).
    Raw {
        /// The subject's name.
        name: String,
        /// Its digests by algorithm (`sha256` → hex).
        digest: BTreeMap<String, String>,
    },
}

/// Where one layer of a platform's chain came from, as provenance names it among the
/// build's resolved dependencies. Filled by whoever builds the [`PlatformSource`]
/// (the CLI: from `--layer`, `--copy` and `--snapshot`).
///
/// [`PlatformSource`]: crate::PlatformSource
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerSource {
    /// A directory holding a layer's full tree (`--layer DIR`) or the tree a layer
    /// copies (`--copy SRC`).
    Directory {
        /// The directory (absolute).
        path: PathBuf,
        /// Its `strata_cache::fingerprint` (SHA-256 hex over every entry's metadata).
        fingerprint: String,
        /// Where a copy puts the tree (`--copy SRC:DEST`); `None` for a `--layer`.
        copy_to: Option<String>,
    },
    /// A committed containerd snapshot (`--snapshot KEY`).
    ContainerdSnapshot {
        /// The snapshotter (`overlayfs`, …).
        snapshotter: String,
        /// The snapshot's key.
        key: String,
    },
}

/// One layer of a platform's image, as a generator sees it.
#[derive(Clone, Debug)]
pub struct GeneratedLayer {
    /// The layer's descriptor, as the image manifest lists it.
    pub descriptor: Descriptor,
    /// The digest of its uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// The ref whose diff this layer is: a snapshot-backed ref, or a blob-backed one
    /// (a base image's layer; [`ImmutableRef::blob_layer`] says where its blob is
    /// fetched from when the content store does not hold it).
    pub layer_ref: ImmutableRef,
}

/// What an [`AttestationGenerator`] is given about one platform's finished image.
#[derive(Clone)]
pub struct GeneratedImageInfo {
    /// The image's platform (for a single-platform source, its config's).
    pub platform: Platform,
    /// The image manifest's descriptor: the digest the statement's `Image` subjects
    /// get.
    pub manifest: Descriptor,
    /// The image config's descriptor.
    pub config: Descriptor,
    /// The image's layers, base first (empty layers dropped, as in the manifest).
    pub layers: Vec<GeneratedLayer>,
    /// The base image the chain starts from, if any.
    pub base: Option<BaseImageRef>,
    /// Where the platform's layers came from
    /// ([`PlatformSource::layer_sources`](crate::PlatformSource::layer_sources)).
    pub layer_sources: Vec<LayerSource>,
    /// The export's `source-date-epoch`: a generator clamps the times it writes to
    /// it, so the statement is reproducible.
    pub source_date_epoch: Option<i64>,
    /// When the image's manifests were written.
    pub finished_on: SystemTime,
    /// The content store holding the image's blobs (under the export's lease); a base
    /// layer it lacks is read through its ref's blob provider.
    pub content: Arc<dyn ContentStore>,
}

/// Makes one statement about a platform's image once the image is written: the hook
/// for attestations that need the finished image (SLSA provenance, an SBOM read from
/// the layers). Put one on every [`PlatformSource`](crate::PlatformSource) that
/// should carry its statement ([`PlatformSource::generators`]); the exporter calls
/// [`generate`](AttestationGenerator::generate) once per such platform, after the
/// platform's image manifest and before the index.
///
/// ```
/// use async_trait::async_trait;
/// use strata_exporter::{Attestation, AttestationGenerator, GeneratedImageInfo};
///
/// /// Lists each layer's diffID.
/// #[derive(Debug)]
/// struct LayerList;
///
/// #[async_trait]
/// impl AttestationGenerator for LayerList {
///     fn name(&self) -> &str {
///         "layer-list"
///     }
///     async fn generate(&self, image: &GeneratedImageInfo) -> strata_exporter::Result<Attestation> {
///         let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
///         Ok(Attestation::new("https://example.com/layer-list/v1", serde_json::json!({ "diffIDs": diff_ids })))
///     }
/// }
/// ```
///
/// [`PlatformSource::generators`]: crate::PlatformSource::generators
#[async_trait]
pub trait AttestationGenerator: Send + Sync + std::fmt::Debug {
    /// The generator's name, for progress and errors (`provenance`, `sbom`).
    fn name(&self) -> &str;

    /// Whether its statements are inline-only ([`Attestation::inline_only`]): decided
    /// before the image is written, since it decides whether the root is an index.
    fn inline_only(&self) -> bool {
        false
    }

    /// The statement about `image`. An error fails the export (wrap a foreign error
    /// in [`Error::Generator`](crate::Error::Generator)).
    async fn generate(&self, image: &GeneratedImageInfo) -> Result<Attestation>;
}

/// A shared generator, as a [`PlatformSource`](crate::PlatformSource) holds it.
pub type SharedGenerator = Arc<dyn AttestationGenerator>;
