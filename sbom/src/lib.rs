//! # strata-sbom
//!
//! An SPDX 2.3 SBOM of an image, read from the layers being exported, without
//! extracting the image and without a scanner image.
//!
//! [`scan_layers`] takes the chain of [`Layer`]s (base first), each either the full
//! tree after that layer ([`LayerSource::Tree`]: a snapshot mount, a `--layer`
//! directory; only the database files are opened, confined to the tree) or the layer's
//! uncompressed tar ([`LayerSource::Tar`]: a base image's blob; streamed once, only the
//! database entries' data read, whiteouts and opaque directories honoured), and finds
//! the packages of the final tree in the dpkg (`var/lib/dpkg/status`,
//! `var/lib/dpkg/status.d/*`), apk (`lib/apk/db/installed`) and rpm (`rpmdb.sqlite`)
//! databases. Each [`Package`] is attributed to the layer that introduced it: the
//! lowest layer from which it is present at its final version in every layer up to the
//! top. [`spdx_document`] writes the [`Inventory`] as an SPDX 2.3 JSON document (the
//! predicate of an in-toto statement with predicate type `https://spdx.dev/Document`).
//! [`layers_of_chain`] turns an exported chain of [`strata_cache::ImmutableRef`]s
//! (with their blob infos) into the layers to scan ([`ChainLayers`]).
//!
//! Which packages count: every package of apk's and rpm's databases (rpm's
//! `gpg-pubkey` key entries aside); dpkg's packages in every state `dpkg-query -W`
//! lists except `config-files` (a removed package whose configuration files remain).
//! A package's name is never arch-qualified (`libc6` for dpkg's `libc6:i386`): its
//! architecture is [`Package::arch`] and the purl's `arch` qualifier. A package is
//! keyed by manager, name and architecture; the rpm database read is
//! `usr/lib/sysimage/rpm/rpmdb.sqlite`, else `var/lib/rpm/rpmdb.sqlite` (rpm ≥ 4.16's
//! sqlite backend; BerkeleyDB and ndb databases are not read).
//!
//! Licenses: apk and rpm say them; Debian's database does not, so a package's
//! machine-readable `usr/share/doc/<package>/copyright` is read for its `License:`
//! names. A string that is not a valid SPDX expression (and cannot be made one) is
//! declared as a `LicenseRef-` with its text, never left invalid.
//!
//! Databases come from the image, so they are bounded ([`ScanLimits`]) and an rpm
//! header is parsed with every count checked ([`RpmHeaderError`]). Errors
//! ([`SbomError`]) name the layer and the path.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use strata_oci::Digest;
//! use strata_sbom::{scan_layers, spdx_document, DocumentOptions, Layer, ScanLimits};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tree = tempfile::tempdir()?;
//! std::fs::create_dir_all(tree.path().join("lib/apk/db"))?;
//! std::fs::write(
//!     tree.path().join("lib/apk/db/installed"),
//!     "P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\n",
//! )?;
//! let diff_id = Digest::sha256_of(b"the layer tar");
//! let inventory = scan_layers(vec![Layer::tree(diff_id.clone(), tree.path())], &ScanLimits::default())?;
//! assert_eq!(inventory.packages[0].name, "musl");
//! assert_eq!(inventory.packages[0].layer, diff_id);
//!
//! let document = spdx_document(
//!     &inventory,
//!     &DocumentOptions {
//!         name: "example/musl:1".into(),
//!         namespace: None,
//!         created: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
//!         image_digest: None,
//!     },
//! );
//! assert_eq!(document["spdxVersion"], "SPDX-2.3");
//! assert_eq!(
//!     document["packages"][1]["externalRefs"][0]["referenceLocator"],
//!     "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
//! );
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod apk;
mod db_files;
mod dpkg;
mod error;
mod from_chain;
mod license;
mod package;
mod rpm;
mod scan;
mod spdx;

pub use error::{RpmHeaderError, SbomError};
pub use from_chain::{layers_of_chain, ChainLayers};
pub use package::{OsRelease, Package, PackageKind};
pub use scan::{scan_layers, Inventory, Layer, LayerSource, ScanLimits};
pub use spdx::{spdx_document, DocumentOptions};
