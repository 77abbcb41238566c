//! The SPDX 2.3 JSON document of an [`Inventory`]: one root package for the image,
//! which the document `DESCRIBES` and which `CONTAINS` every package found, each with
//! its version, supplier, declared license, purl and the layer that introduced it (a
//! `layerID: sha256:…` comment, as BuildKit's syft scanner writes it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use strata_oci::Digest;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::license::{declared_license, DeclaredLicense};
use crate::package::{Package, PackageKind};
use crate::scan::Inventory;

/// The SPDX id of the root package (the image).
const ROOT_ID: &str = "SPDXRef-DocumentRoot-Image";

/// What the caller says about the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentOptions {
    /// The document's (and the root package's) name: the image name, or what stands
    /// for it.
    pub name: String,
    /// The `documentNamespace` (a unique URI); `None` to derive one from the document's
    /// contents (the same inputs give the same namespace).
    pub namespace: Option<String>,
    /// `creationInfo.created` (whole seconds; pass `SOURCE_DATE_EPOCH` for a
    /// reproducible document).
    pub created: SystemTime,
    /// The image's digest (its config or manifest), the root package's `versionInfo`.
    pub image_digest: Option<Digest>,
}

/// `creators`' tool: strata and its version.
fn creator() -> String {
    format!("Tool: strata-{}", env!("CARGO_PKG_VERSION"))
}

/// The SPDX license list the expressions were checked against, as `MAJOR.MINOR` (the
/// form SPDX 2.3 requires).
fn license_list_version() -> String {
    spdx::license_version()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn short_hash(s: &str) -> String {
    let mut out = String::new();
    for b in &Sha256::digest(s.as_bytes())[..4] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `Name <email>` → `Person: Name (email)`; an rpm vendor is an `Organization`.
fn supplier(package: &Package) -> String {
    let Some(raw) = package
        .supplier
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return "NOASSERTION".to_string();
    };
    let kind = if package.kind == PackageKind::Rpm {
        "Organization"
    } else {
        "Person"
    };
    let clean = |s: &str| s.replace(['(', ')', '<', '>'], "").trim().to_string();
    match raw.split_once('<') {
        Some((name, rest)) => {
            let email = rest.split('>').next().unwrap_or_default();
            format!("{kind}: {} ({})", clean(name), clean(email))
        }
        None => format!("{kind}: {}", clean(raw)),
    }
}

fn version_info(package: &Package) -> String {
    match package.epoch {
        Some(epoch) => format!("{epoch}:{}", package.version),
        None => package.version.clone(),
    }
}

fn created(time: SystemTime) -> String {
    let time = OffsetDateTime::from(time);
    let time = time.replace_nanosecond(0).unwrap_or(time);
    time.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The SPDX 2.3 JSON document of `inventory`. Deterministic: packages in inventory
/// order, ids derived from their purls, object keys sorted.
pub fn spdx_document(inventory: &Inventory, options: &DocumentOptions) -> Value {
    let os = inventory.os_release.as_ref();
    let mut references: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = vec![json!({
        "SPDXID": ROOT_ID,
        "name": options.name,
        "versionInfo": options.image_digest.as_ref().map_or("NOASSERTION".to_string(), Digest::to_string),
        "supplier": "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": ROOT_ID,
    })];
    let mut ids = BTreeMap::new();
    for package in &inventory.packages {
        let purl = package.purl(os);
        let mut id = format!(
            "SPDXRef-Package-{}-{}-{}",
            package.kind.purl_type(),
            spdx_id_part(&package.name),
            short_hash(&purl)
        );
        // Two packages with one purl (a database listing a package twice) keep
        // distinct ids.
        let n = ids.entry(id.clone()).or_insert(0u32);
        *n += 1;
        if *n > 1 {
            let _ = write!(id, "-{n}");
        }
        let license = match declared_license(package.license.as_deref()) {
            DeclaredLicense::NoAssertion => "NOASSERTION".to_string(),
            DeclaredLicense::Expression(e) => e,
            DeclaredLicense::Reference { id, text } => {
                references.insert(id.clone(), text);
                id
            }
        };
        packages.push(json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": version_info(package),
            "supplier": supplier(package),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license,
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
            "comment": format!("layerID: {}", package.layer),
        }));
        relationships.push(json!({
            "spdxElementId": ROOT_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": options.name,
        "creationInfo": {
            "created": created(options.created),
            "creators": [creator()],
            "licenseListVersion": license_list_version(),
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !references.is_empty() {
        document["hasExtractedLicensingInfos"] = references
            .into_iter()
            .map(|(id, text)| json!({ "licenseId": id, "extractedText": text, "name": text }))
            .collect();
    }
    let namespace = match &options.namespace {
        Some(namespace) => namespace.clone(),
        None => {
            let bytes = serde_json::to_vec(&document).unwrap_or_default();
            let mut hash = String::new();
            for b in Sha256::digest(&bytes) {
                let _ = write!(hash, "{b:02x}");
            }
            format!(
                "https://strata.invalid/spdx/{}-{hash}",
                spdx_id_part(&options.name)
            )
        }
    };
    document["documentNamespace"] = Value::String(namespace);
    document
}
