//! What one `strata export` builds: per platform, the layer directories (base first),
//! their descriptions and the image config — from the command line or a `--spec`
//! file — checked completely before anything touches the store.
//!
//! The spec file (`--spec FILE`) is JSON; relative paths are relative to the file:
//!
//! ```json
//! {
//!   "platforms": [
//!     {
//!       "platform": "linux/amd64",
//!       "layers": ["rootfs/base", "rootfs/app"],
//!       "descriptions": ["debootstrap", "COPY app /app"],
//!       "config": "config.json"
//!     },
//!     {
//!       "platform": "linux/arm64",
//!       "layers": ["rootfs-arm64/base"],
//!       "config": {"config": {"Cmd": ["/bin/sh"]}}
//!     },
//!     {
//!       "platform": "linux/riscv64",
//!       "base": "docker://registry.example/debian:12",
//!       "copy": ["app/bin:/usr/local/bin"]
//!     }
//!   ]
//! }
//! ```
//!
//! `config` is a path or an inline object (put over the base's config when there is a
//! base); `descriptions` is optional (one per layer); `base` is an image reference as
//! `--base` takes it; `copy` lists `SRC[:DEST]` as `--copy` does.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use strata_oci::Platform;

use crate::error::CliError;

/// One layer: a directory holding the full filesystem state after this step.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    /// The directory as the user named it (for messages and progress).
    pub shown: String,
    /// Its canonical path.
    pub dir: PathBuf,
    /// The history `created_by` of this layer.
    pub description: String,
}

/// One `--copy SRC[:DEST]`: a layer holding SRC's tree under DEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// The source as the user named it.
    pub shown: String,
    /// The source path (checked to exist).
    pub src: PathBuf,
    /// Where it goes in the image (absolute; `/` by default).
    pub dest: String,
}

/// One image of the export.
#[derive(Clone, Debug)]
pub struct PlatformPlan {
    /// Its platform (`None`: the config's or the host's).
    pub platform: Option<Platform>,
    /// The base image reference (`--base`), if any.
    pub base: Option<String>,
    /// Its layers, base first.
    pub layers: Vec<LayerPlan>,
    /// Its `--copy` layers, stacked on the layers in this order.
    pub copies: Vec<CopyPlan>,
    /// The image config to patch, validated.
    pub config: Option<Vec<u8>>,
}

/// Every image of the export; more than one (or a spec file) makes an index.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The images.
    pub platforms: Vec<PlatformPlan>,
    /// Whether the source is multi-platform (from `--spec`).
    pub multi: bool,
}

/// The `--spec` file's format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    platforms: Vec<SpecPlatform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecPlatform {
    platform: String,
    #[serde(default)]
    layers: Vec<PathBuf>,
    #[serde(default)]
    descriptions: Vec<String>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    copy: Vec<String>,
}

/// Parses `--copy SRC[:DEST]` (relative SRCs against `dir`); SRC must exist.
pub fn parse_copy(text: &str, dir: &Path, whose: &str) -> Result<CopyPlan, CliError> {
    let (src, dest) = match text.rsplit_once(':') {
        Some((src, dest)) if dest.starts_with('/') => (src, dest.to_string()),
        _ => (text, "/".to_string()),
    };
    if src.is_empty() {
        return Err(CliError::usage(format!(
            "{whose}--copy {text:?}: expected SRC[:DEST]"
        )));
    }
    let path = dir.join(src);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(CliError::failed(format!(
            "{whose}--copy source {} does not exist",
            path.display()
        )));
    }
    Ok(CopyPlan {
        shown: src.to_string(),
        src: path,
        dest,
    })
}

/// Parses `--chown UID:GID` (numeric, as the layer records owners).
pub fn parse_chown(text: &str) -> Result<(u32, u32), CliError> {
    let parsed = text
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
    parsed.ok_or_else(|| {
        CliError::usage(format!(
            "invalid --chown {text:?}: expected numeric UID:GID, e.g. 1000:1000"
        ))
    })
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform, CliError> {
    Platform::parse(s).ok_or_else(|| {
        CliError::usage(format!(
            "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64"
        ))
    })
}

/// Checks the layer directories and pairs them with their descriptions.
fn layers(
    dirs: &[(String, PathBuf)],
    descriptions: &[String],
    whose: &str,
) -> Result<Vec<LayerPlan>, CliError> {
    if !descriptions.is_empty() && descriptions.len() != dirs.len() {
        let msg = format!(
            "{whose}{} descriptions for {} layers: give one per layer or none",
            descriptions.len(),
            dirs.len()
        );
        // On the command line this is a usage error; in a spec file, a bad file.
        return Err(if whose.is_empty() {
            CliError::usage(msg)
        } else {
            CliError::failed(msg)
        });
    }
    let mut out = Vec::new();
    for (i, (shown, path)) in dirs.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::failed(format!("{whose}layer directory {shown} does not exist"))
            } else {
                CliError::failed(format!("{whose}layer directory {shown}: {e}"))
            }
        })?;
        if !meta.is_dir() {
            return Err(CliError::failed(format!(
                "{whose}layer {shown} is not a directory (each --layer is a full filesystem tree)"
            )));
        }
        let dir = path
            .canonicalize()
            .map_err(|e| CliError::failed(format!("{whose}layer directory {shown}: {e}")))?;
        let description = descriptions
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("strata export --layer {shown}"));
        out.push(LayerPlan {
            shown: shown.clone(),
            dir,
            description,
        });
    }
    Ok(out)
}

/// Validates an image config (`what` names it in errors) and sets its platform: the
/// one given, else (without a base image, whose config has one) the host's when the
/// config has none.
fn config(
    bytes: Vec<u8>,
    platform: Option<&Platform>,
    on_base: bool,
    what: &str,
) -> Result<Vec<u8>, CliError> {
    // The exporter's own check, so a config it would refuse is refused here, before
    // the store is touched.
    let mut map = strata_exporter::parse_config(&bytes, what)
        .map_err(|e| CliError::failed(format!("config {what}: {}", strip_prefix(&e))))?;
    match platform {
        Some(p) => set_platform(&mut map, p),
        // A config without a platform describes the host's image (as in BuildKit,
        // where the frontend always fills these in).
        None if !on_base && (!map.contains_key("os") || !map.contains_key("architecture")) => {
            set_platform(&mut map, &Platform::host())
        }
        None => return Ok(bytes),
    }
    serde_json::to_vec(&Value::Object(map))
        .map_err(|e| CliError::failed(format!("config {what}: {e}")))
}

fn strip_prefix(e: &strata_exporter::Error) -> String {
    match e {
        strata_exporter::Error::InvalidConfig { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn set_platform(map: &mut Map<String, Value>, p: &Platform) {
    map.insert("os".into(), Value::String(p.os.clone()));
    map.insert("architecture".into(), Value::String(p.architecture.clone()));
    match &p.variant {
        Some(v) => map.insert("variant".into(), Value::String(v.clone())),
        None => map.remove("variant"),
    };
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::failed(format!("{what} {} does not exist", path.display()))
        } else {
            CliError::failed(format!("{what} {}: {e}", path.display()))
        }
    })
}

/// The plan of a command-line export (`--base`, `--layer`, `--description`,
/// `--copy`, `--config`, `--platform`).
pub fn from_flags(
    base: Option<&str>,
    layer_dirs: &[PathBuf],
    descriptions: &[String],
    copies: &[String],
    config_file: Option<&Path>,
    platform: Option<&str>,
) -> Result<Plan, CliError> {
    let platform = platform.map(parse_platform).transpose()?;
    let dirs: Vec<(String, PathBuf)> = layer_dirs
        .iter()
        .map(|d| (d.display().to_string(), d.clone()))
        .collect();
    let layers = layers(&dirs, descriptions, "")?;
    let config = match config_file {
        Some(path) => {
            let bytes = read_file(path, "config file")?;
            Some(config(
                bytes,
                platform.as_ref(),
                base.is_some(),
                &path.display().to_string(),
            )?)
        }
        None => platform.as_ref().map(|p| {
            let mut map = Map::new();
            set_platform(&mut map, p);
            serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
        }),
    };
    let copies = copies
        .iter()
        .map(|c| parse_copy(c, Path::new("."), ""))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        platforms: vec![PlatformPlan {
            platform,
            base: base.map(str::to_string),
            layers,
            copies,
            config,
        }],
        multi: false,
    })
}

/// The plan of a `--spec FILE` export.
pub fn from_spec(path: &Path) -> Result<Plan, CliError> {
    let bytes = read_file(path, "spec file")?;
    let spec: SpecFile = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::failed(format!("spec file {}: {e}", path.display())))?;
    if spec.platforms.is_empty() {
        return Err(CliError::failed(format!(
            "spec file {}: \"platforms\" is empty",
            path.display()
        )));
    }
    let spec_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut platforms: Vec<PlatformPlan> = Vec::new();
    for (i, entry) in spec.platforms.into_iter().enumerate() {
        let whose = format!("spec file {}: platforms[{i}]: ", path.display());
        let platform = Platform::parse(&entry.platform).ok_or_else(|| {
            CliError::failed(format!(
                "{whose}invalid platform {:?}: expected os/arch[/variant]",
                entry.platform
            ))
        })?;
        if platforms
            .iter()
            .any(|p| p.platform.as_ref() == Some(&platform))
        {
            return Err(CliError::failed(format!(
                "{whose}platform {platform} is listed twice"
            )));
        }
        let dirs: Vec<(String, PathBuf)> = entry
            .layers
            .iter()
            .map(|d| {
                let full = spec_dir.join(d);
                (full.display().to_string(), full)
            })
            .collect();
        let layers = layers(&dirs, &entry.descriptions, &whose)?;
        let config = match entry.config {
            None | Some(Value::Null) => {
                let mut map = Map::new();
                set_platform(&mut map, &platform);
                Some(serde_json::to_vec(&Value::Object(map)).unwrap_or_default())
            }
            Some(Value::String(file)) => {
                let file = spec_dir.join(file);
                let bytes = read_file(&file, &format!("{whose}config file"))?;
                Some(config(
                    bytes,
                    Some(&platform),
                    entry.base.is_some(),
                    &file.display().to_string(),
                )?)
            }
            Some(obj @ Value::Object(_)) => {
                let bytes = serde_json::to_vec(&obj).unwrap_or_default();
                Some(config(
                    bytes,
                    Some(&platform),
                    entry.base.is_some(),
                    &format!("{}: platforms[{i}].config", path.display()),
                )?)
            }
            Some(_) => {
                return Err(CliError::failed(format!(
                    "{whose}\"config\" must be a file path or an object"
                )))
            }
        };
        let copies = entry
            .copy
            .iter()
            .map(|c| parse_copy(c, spec_dir, &whose))
            .collect::<Result<Vec<_>, _>>()?;
        platforms.push(PlatformPlan {
            platform: Some(platform),
            base: entry.base,
            layers,
            copies,
            config,
        });
    }
    Ok(Plan {
        platforms,
        multi: true,
    })
}
