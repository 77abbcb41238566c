//! Attestations end to end, through the `strata` command, checked with the real
//! tools and PyPI's `in-toto-attestation`:
//!
//! - a two-platform export with SLSA provenance (`mode=max`) and caller statements
//!   (one for every platform, one for `linux/arm64` only) is an index listing the image
//!   manifests, then one attestation manifest per platform (`unknown/unknown`,
//!   `vnd.docker.reference.*`), in the legacy form and with `oci-artifact=true`
//!   (`artifactType`, the empty config, `subject`); every statement validates, its
//!   subjects are the image's purls with the manifest digest the index holds, its
//!   layer carries its predicate type; with `source-date-epoch` a second export has
//!   the same digest; `skopeo copy --all` to another layout keeps it whole;
//! - both forms pushed by `type=registry`, by `skopeo copy --all` from a layout and by
//!   `strata push` read back the same from the registry, image manifests pushed
//!   before attestation manifests; `strata inspect` lists the attestations;
//! - a single-platform export on a base image becomes an index when attested; its
//!   provenance names the base's digest and the layer directory's fingerprint;
//! - an SBOM of a base image (its dpkg database read from the base's blob) under a
//!   layer directory that installs one more package lists exactly what `dpkg-query`
//!   lists for the final tree, each package attributed to the layer that introduced
//!   it; the statement validates with in-toto-attestation, the document with
//!   spdx-tools, and a second export with `source-date-epoch` has the same digest;
//! - bad statement files (not JSON, not in-toto v1, a platform the export lacks),
//!   an SBOM request with a scanner image, Docker media types and `oci-artifact` with Docker media types
//!   fail with one line naming the file or option, and write nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use strata_oci::{media_types, Digest};
use strata_tests::servers::Registry;
use strata_tests::{run, strata_command, tool, umoci_base, unique_name, validate_statements};

/// The epoch the reproducible exports use, and its RFC 3339 form.
const EPOCH: &str = "1700000000";
const EPOCH_TIME: &str = "2023-11-14T22:13:20Z";
const CUSTOM_ALL: &str = "https://example.com/strata-test/all/v1";
const CUSTOM_ARM: &str = "https://example.com/strata-test/arm64/v1";
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// A test's temp dir: two platforms' layer trees, a spec naming them, statement files.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("strata-attest-")
            .tempdir()
            .unwrap();
        let w = World { tmp };
        for (dir, text) in [("amd64", "x86 app\n"), ("arm64", "arm app\n")] {
            fs::create_dir_all(w.path(dir).join("app")).unwrap();
            fs::write(w.path(dir).join("app/hello"), text).unwrap();
        }
        let spec = json!({"platforms": [
            {"platform": "linux/amd64", "layers": ["amd64"]},
            {"platform": "linux/arm64", "layers": ["arm64"]},
        ]});
        fs::write(w.path("spec.json"), spec.to_string()).unwrap();
        w.statement("all.json", CUSTOM_ALL);
        w.statement("arm.json", CUSTOM_ARM);
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes an in-toto v1 statement without subjects (about the image) to `name`.
    fn statement(&self, name: &str, predicate_type: &str) -> PathBuf {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": predicate_type,
            "predicate": {"note": format!("written by the test as {name}")},
        });
        fs::write(self.path(name), statement.to_string()).unwrap();
        self.path(name)
    }

    fn strata(&self, args: &[&str]) -> Output {
        strata_command(&self.path("store"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs strata, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs strata, which must fail with one line on stderr; the line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "strata {args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "not one line: {err}");
        err
    }

    /// `export --spec` with the test's attestations and `output`.
    fn export_attested(&self, output: &str) -> String {
        let spec = self.path("spec.json");
        let (all, arm) = (self.path("all.json"), self.path("arm.json"));
        self.ok(&[
            "export",
            "--spec",
            spec.to_str().unwrap(),
            "--attest",
            "type=provenance,mode=max",
            "--attest",
            &format!("type=file,path={}", all.display()),
            "--attest",
            &format!("type=file,path={},platform=linux/arm64", arm.display()),
            "--progress",
            "quiet",
            "-o",
            output,
        ])
        .trim()
        .to_string()
    }
}

/// The blobs of an OCI layout.
struct Layout(PathBuf);

impl Layout {
    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let bytes = fs::read(self.0.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest} of {}: {e}", self.0.display()));
        assert_eq!(
            Digest::sha256_of(&bytes).to_string(),
            format!("sha256:{hex}")
        );
        bytes
    }

    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.0.join("blobs/sha256").join(hex)
    }

    /// The digest of the only root `index.json` lists.
    fn root(&self) -> String {
        let index: Value =
            serde_json::from_slice(&fs::read(self.0.join("index.json")).unwrap()).unwrap();
        let [entry] = index["manifests"].as_array().unwrap().as_slice() else {
            panic!("not one root: {index}");
        };
        entry["digest"].as_str().unwrap().to_string()
    }
}

/// One platform's attestations as the index and its statements hold them.
#[derive(Debug)]
struct Attested {
    platform: String,
    manifest: String,
    predicate_types: Vec<String>,
    statements: Vec<Value>,
}

/// Checks the attested index `root` in `layout` as BuildKit lays it out (`artifact`:
/// the OCI artifact form), validates every statement with in-toto-attestation, and
/// returns each attested platform's statements.
fn check_attested(layout: &Layout, root: &str, artifact: bool, names: &[&str]) -> Vec<Attested> {
    let index = layout.json(root);
    assert_eq!(index["mediaType"], media_types::OCI_INDEX);
    let entries = index["manifests"].as_array().unwrap();
    let is_attestation =
        |e: &Value| e["annotations"]["vnd.docker.reference.type"] == "attestation-manifest";
    let images: Vec<&Value> = entries.iter().filter(|e| !is_attestation(e)).collect();
    // The attestation manifests come after every image manifest.
    assert!(
        entries[..images.len()].iter().all(|e| !is_attestation(e)),
        "{index}"
    );
    let mut out = Vec::new();
    let mut statement_files = Vec::new();
    for entry in &entries[images.len()..] {
        assert_eq!(
            entry["platform"],
            json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(entry["mediaType"], media_types::OCI_MANIFEST);
        let about = entry["annotations"]["vnd.docker.reference.digest"]
            .as_str()
            .unwrap();
        let image = images
            .iter()
            .find(|i| i["digest"] == about)
            .unwrap_or_else(|| panic!("{about} is no image manifest of {index}"));
        let platform = format!(
            "{}/{}",
            image["platform"]["os"].as_str().unwrap(),
            image["platform"]["architecture"].as_str().unwrap()
        );
        let manifest = layout.json(entry["digest"].as_str().unwrap());
        let config = layout.json(manifest["config"]["digest"].as_str().unwrap());
        if artifact {
            assert_eq!(
                manifest["artifactType"],
                media_types::DOCKER_ATTESTATION_MANIFEST
            );
            assert_eq!(manifest["config"]["mediaType"], media_types::OCI_EMPTY);
            assert_eq!(config, json!({}));
            assert_eq!(manifest["subject"]["digest"], about);
            assert_eq!(manifest["subject"]["size"], image["size"]);
        } else {
            assert!(manifest.get("artifactType").is_none() && manifest.get("subject").is_none());
            assert_eq!(manifest["config"]["mediaType"], media_types::OCI_CONFIG);
            assert_eq!(
                (config["os"].as_str(), config["architecture"].as_str()),
                (Some("unknown"), Some("unknown"))
            );
        }
        let mut attested = Attested {
            platform: platform.clone(),
            manifest: about.to_string(),
            predicate_types: Vec::new(),
            statements: Vec::new(),
        };
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            let digest = layer["digest"].as_str().unwrap();
            let statement = layout.json(digest);
            assert_eq!(
                layer["annotations"]["in-toto.io/predicate-type"],
                statement["predicateType"]
            );
            let subjects = statement["subject"].as_array().unwrap();
            assert_eq!(subjects.len(), names.len().max(1), "{statement}");
            for (subject, name) in subjects.iter().zip(names) {
                assert_eq!(subject["name"], purl(name, &platform));
            }
            for subject in subjects {
                assert_eq!(
                    format!("sha256:{}", subject["digest"]["sha256"].as_str().unwrap()),
                    about
                );
            }
            attested
                .predicate_types
                .push(statement["predicateType"].as_str().unwrap().to_string());
            attested.statements.push(statement);
            statement_files.push(layout.blob_path(digest));
        }
        out.push(attested);
    }
    let files: Vec<&Path> = statement_files.iter().map(PathBuf::as_path).collect();
    validate_statements(&files);
    out
}

/// The purl BuildKit gives `name` (`host/repo:tag`, a registry name) on `platform`.
fn purl(name: &str, platform: &str) -> String {
    let (repo, tag) = name.rsplit_once(':').unwrap();
    format!(
        "pkg:docker/{repo}@{tag}?platform={}",
        platform.replace('/', "%2F")
    )
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new(tool("skopeo")).args(args))
}

#[test]
fn multi_platform_attestations_in_both_forms_survive_skopeo_copy() {
    let w = World::new();
    let name = "strata.test/attest/app:1";
    for artifact in [false, true] {
        let dest = w.path(&format!("layout-{artifact}"));
        let output = format!(
            "type=oci,tar=false,dest={},name={name},oci-artifact={artifact},source-date-epoch={EPOCH}",
            dest.display()
        );
        let digest = w.export_attested(&output);
        let layout = Layout(dest.clone());
        assert_eq!(layout.root(), digest);
        let attested = check_attested(&layout, &digest, artifact, &[name]);
        let types: Vec<(&str, Vec<&str>)> = attested
            .iter()
            .map(|a| {
                (
                    a.platform.as_str(),
                    a.predicate_types.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("linux/amd64", vec![CUSTOM_ALL, PROVENANCE]),
                ("linux/arm64", vec![CUSTOM_ALL, CUSTOM_ARM, PROVENANCE]),
            ]
        );
        for a in &attested {
            let provenance = &a.statements.last().unwrap()["predicate"];
            let run = &provenance["runDetails"];
            assert!(run["builder"]["id"]
                .as_str()
                .unwrap()
                .starts_with("pkg:generic/strata@"));
            assert_eq!(run["metadata"]["startedOn"], EPOCH_TIME);
            assert_eq!(run["metadata"]["finishedOn"], EPOCH_TIME);
            let definition = &provenance["buildDefinition"];
            assert_eq!(
                definition["externalParameters"]["request"]["platform"],
                a.platform
            );
            assert_eq!(definition["internalParameters"]["manifest"], a.manifest);
            let arch = a.platform.rsplit('/').next().unwrap();
            let dir = w.path(arch).canonicalize().unwrap();
            let deps = definition["resolvedDependencies"].as_array().unwrap();
            assert_eq!(deps.len(), 1, "{provenance}");
            assert_eq!(deps[0]["uri"], format!("file://{}", dir.display()));
            assert_eq!(
                deps[0]["digest"]["strata-fingerprint"],
                strata_cache::fingerprint(&dir).unwrap()
            );
            // max: the layers are byproducts.
            assert_eq!(
                run["byproducts"].as_array().map(Vec::len),
                Some(1),
                "{provenance}"
            );
        }
        // With source-date-epoch the statements, so the image, are reproducible: the
        // same request again (the same options, `dest` among them) gives the same
        // digest.
        fs::remove_dir_all(&dest).unwrap();
        assert_eq!(w.export_attested(&output), digest);
        assert_eq!(layout.root(), digest);

        // skopeo copies the whole index, attestation manifests and statements too.
        let copy = w.path(&format!("copy-{artifact}"));
        skopeo(&[
            "copy",
            "--all",
            &format!("oci:{}:1", dest.display()),
            &format!("oci:{}:1", copy.display()),
        ]);
        let copied = Layout(copy);
        assert_eq!(copied.root(), digest);
        assert_eq!(check_attested(&copied, &digest, artifact, &[name]).len(), 2);
    }
}

#[test]
fn attestations_survive_registry_pushes_in_both_forms() {
    let w = World::new();
    let registry = Registry::start();
    let host = registry.host();
    for artifact in [false, true] {
        // type=registry: the exporter's own push.
        let repo = unique_name("attest/pushed");
        let name = format!("{host}/{repo}:1");
        let digest = w.export_attested(&format!(
            "type=registry,name={name},registry.insecure=true,oci-artifact={artifact}"
        ));
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]);
        assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);
        let pulled = w.path(&format!("pulled-{artifact}"));
        skopeo(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:1", pulled.display()),
        ]);
        let attested = check_attested(&Layout(pulled.clone()), &digest, artifact, &[&name]);
        assert_eq!(attested.len(), 2);
        // Every image manifest went to the registry before any attestation manifest.
        let manifest_puts: Vec<String> = registry
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.uri.starts_with(&format!("/v2/{repo}/manifests/")))
            .map(|r| r.uri.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        let images: Vec<&String> = attested.iter().map(|a| &a.manifest).collect();
        let first_attestation = manifest_puts
            .iter()
            .position(|d| !images.contains(&d) && d.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no attestation manifest pushed: {manifest_puts:?}"));
        for image in &images {
            let at = manifest_puts.iter().position(|d| d == *image);
            assert!(
                at.is_some_and(|at| at < first_attestation),
                "{manifest_puts:?}"
            );
        }

        // skopeo copy --all from the layout pulled back to another repository.
        let copied = format!("{host}/{}:1", unique_name("attest/copied"));
        skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:1", pulled.display()),
            &format!("docker://{copied}"),
        ]);
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{copied}"),
        ]);
        assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), digest);

        // An image record with attestations, listed by inspect and pushed by strata push.
        let stored = format!("strata.test/attest/stored-{artifact}:1");
        let digest =
            w.export_attested(&format!("type=image,name={stored},oci-artifact={artifact}"));
        let inspect = w.ok(&["inspect", &stored]);
        let form = if artifact {
            "OCI artifact"
        } else {
            "attestation image"
        };
        assert_eq!(inspect.matches("Attestations: ").count(), 2, "{inspect}");
        assert!(
            inspect.contains(form) && inspect.contains(PROVENANCE),
            "{inspect}"
        );
        assert!(
            inspect.contains("(linux/arm64)") && inspect.contains(CUSTOM_ARM),
            "{inspect}"
        );
        let target = format!("{host}/{}:1", unique_name("attest/strata-push"));
        let out = w.ok(&[
            "--insecure-registry",
            &host,
            "push",
            &stored,
            &target,
            "--progress",
            "quiet",
        ]);
        assert_eq!(out.trim(), digest);
        let back = w.path(&format!("strata-pushed-{artifact}"));
        skopeo(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{target}"),
            &format!("oci:{}:1", back.display()),
        ]);
        check_attested(&Layout(back), &digest, artifact, &[&stored]);
    }
}

#[test]
fn an_attested_single_platform_image_on_a_base_is_an_index_naming_the_base() {
    let w = World::new();
    let base = umoci_base(w.tmp.path());
    let dest = w.path("single");
    let digest = w
        .ok(&[
            "export",
            "--base",
            &base.oci_reference(),
            "--layer",
            w.path("amd64").to_str().unwrap(),
            "--platform",
            "linux/amd64",
            "--attest",
            "type=provenance",
            "--progress",
            "quiet",
            "-o",
            &format!("type=oci,tar=false,dest={}", dest.display()),
        ])
        .trim()
        .to_string();
    let layout = Layout(dest);
    let attested = check_attested(&layout, &digest, false, &[]);
    let [only] = attested.as_slice() else {
        panic!("{attested:?}");
    };
    assert_eq!(only.platform, "linux/amd64");
    assert_eq!(only.predicate_types, [PROVENANCE]);
    let provenance = &only.statements[0]["predicate"];
    // min: the request without its options, no byproducts.
    let request = &provenance["buildDefinition"]["externalParameters"]["request"];
    assert!(request.get("options").is_none(), "{provenance}");
    assert!(provenance["runDetails"].get("byproducts").is_none());
    let deps = provenance["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let base_hex = base
        .manifest_digest()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(deps[0]["digest"]["sha256"], base_hex, "{provenance}");
    assert!(
        deps[1]["digest"]["strata-fingerprint"].is_string(),
        "{provenance}"
    );
}

#[test]
fn bad_attestations_fail_naming_the_file_or_option_and_write_nothing() {
    let w = World::new();
    fs::write(w.path("not-json.json"), "this is not json").unwrap();
    fs::write(
        w.path("v01.json"),
        json!({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "t", "predicate": {"a": 1}}).to_string(),
    )
    .unwrap();
    let spec = w.path("spec.json");
    let dest = w.path("never");
    let output = format!("type=oci,tar=false,dest={}", dest.display());
    let export = |attest: &str, output: &str| -> String {
        w.fails(&[
            "export",
            "--spec",
            spec.to_str().unwrap(),
            "--attest",
            attest,
            "-o",
            output,
        ])
    };
    for (file, says) in [
        ("not-json.json", "not JSON"),
        ("v01.json", "not an in-toto v1 statement"),
        ("missing.json", "statement file"),
    ] {
        let path = w.path(file);
        let err = export(&format!("type=file,path={}", path.display()), &output);
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(says),
            "{err}"
        );
    }
    let all = w.path("all.json");
    let err = export(
        &format!("type=file,path={},platform=linux/s390x", all.display()),
        &output,
    );
    assert!(
        err.contains(all.to_str().unwrap())
            && err.contains("linux/s390x")
            && err.contains("linux/arm64"),
        "{err}"
    );
    // strata reads the layers itself: BuildKit's scanner image option is refused.
    let err = export("type=sbom,generator=docker/scout-sbom-indexer", &output);
    assert!(err.contains("generator"), "{err}");
    let err = export("type=provenance,mode=most", &output);
    assert!(err.contains("mode"), "{err}");
    // Docker media types hold no attestation manifest.
    let err = export("type=provenance", &format!("{output},oci-mediatypes=false"));
    assert!(err.contains("oci-mediatypes"), "{err}");
    let err = export(
        "type=provenance",
        &format!("{output},oci-artifact=true,oci-mediatypes=false"),
    );
    assert!(err.contains("oci-artifact"), "{err}");
    assert!(!dest.exists());
}

/// `dpkg-query -W` of the database under `root`, as `name version arch` lines, sorted;
/// removed packages whose configuration files remain are not installed and not listed
/// by an SBOM.
fn dpkg_query(root: &Path) -> Vec<String> {
    let out = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n",
        ]));
    let mut lines: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(status, _)| *status != "config-files")
        .map(|(_, rest)| rest.to_string())
        .collect();
    lines.sort();
    lines
}

#[test]
fn an_sbom_lists_the_dpkg_packages_of_base_and_layer_with_the_layer_that_added_each() {
    let w = World::new();
    // This machine's dpkg database, without its last package, is the base's; the layer
    // on it holds the whole database: it installs that package.
    let status = fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let stanzas: Vec<&str> = status
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert!(
        stanzas.len() > 10,
        "this machine has too small a dpkg database"
    );
    let (added, older) = stanzas.split_last().unwrap();
    let added_name = added
        .lines()
        .find_map(|l| l.strip_prefix("Package: "))
        .unwrap()
        .to_string();
    let (base_tree, top_tree) = (w.path("base-tree"), w.path("top-tree"));
    for (tree, text) in [
        (&base_tree, older.join("\n\n") + "\n"),
        (&top_tree, status.clone()),
    ] {
        fs::create_dir_all(tree.join("var/lib/dpkg")).unwrap();
        fs::write(tree.join("var/lib/dpkg/status"), text).unwrap();
        fs::write(tree.join("hello"), "hello\n").unwrap();
    }
    let base_layout = w.path("base-layout");
    w.ok(&[
        "export",
        "--layer",
        base_tree.to_str().unwrap(),
        "--progress",
        "quiet",
        "-o",
        &format!("type=oci,tar=false,dest={}", base_layout.display()),
    ]);
    let export = |dest: &Path| {
        w.ok(&[
            "export",
            "--base",
            &format!("oci:{}", base_layout.display()),
            "--layer",
            top_tree.to_str().unwrap(),
            "--attest",
            "type=sbom",
            "--progress",
            "quiet",
            "-o",
            &format!(
                "type=oci,tar=false,dest={},source-date-epoch={EPOCH}",
                dest.display()
            ),
        ])
        .trim()
        .to_string()
    };
    let dest = w.path("sbom-image");
    let digest = export(&dest);
    let layout = Layout(dest);
    let attested = check_attested(&layout, &digest, false, &[]);
    let [only] = attested.as_slice() else {
        panic!("{attested:?}");
    };
    assert_eq!(only.predicate_types, ["https://spdx.dev/Document"]);
    let document = &only.statements[0]["predicate"];
    let spdx_file = w.path("sbom.spdx.json");
    fs::write(&spdx_file, document.to_string()).unwrap();
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&spdx_file)
        .output()
        .expect("run pyspdxtools (scripts/test.sh puts it on PATH)");
    assert!(
        out.status.success(),
        "spdx-tools refused the SBOM:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Exactly dpkg-query's packages, each attributed to the layer that introduced it.
    let manifest = layout.json(&only.manifest);
    let config = layout.json(manifest["config"]["digest"].as_str().unwrap());
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(diff_ids.len(), 2, "{config}");
    let mut listed = Vec::new();
    for package in document["packages"].as_array().unwrap() {
        let Some(purl) = package["externalRefs"]
            .as_array()
            .and_then(|refs| refs.iter().find(|r| r["referenceType"] == "purl"))
        else {
            continue; // the image itself
        };
        let purl = purl["referenceLocator"].as_str().unwrap();
        assert!(purl.starts_with("pkg:deb/debian/"), "{purl}");
        let arch = purl
            .split(['?', '&'])
            .find_map(|q| q.strip_prefix("arch="))
            .unwrap();
        let name = package["name"].as_str().unwrap();
        listed.push(format!(
            "{name} {} {arch}",
            package["versionInfo"].as_str().unwrap()
        ));
        let layer = if name == added_name {
            diff_ids[1]
        } else {
            diff_ids[0]
        };
        assert_eq!(
            package["comment"].as_str(),
            Some(format!("layerID: {layer}").as_str()),
            "{package}"
        );
    }
    listed.sort();
    assert_eq!(listed, dpkg_query(&top_tree));

    // The same export again (a warm cache, another destination) is the same image.
    assert_eq!(export(&w.path("sbom-image-2")), digest);
}
