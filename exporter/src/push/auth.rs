//! Registry credentials from a docker config file (`~/.docker/config.json`), the file
//! `docker login` writes.
//!
//! Only the `auths` section is read: each entry's `auth` (base64 of `user:password`) or
//! its `username`/`password` fields. Credential helpers (`credsStore`, `credHelpers`)
//! run external programs and are not supported; a registry without an `auths` entry is
//! accessed anonymously.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::push::PushError;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The docker config file docker itself reads: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The host part of an `auths` key: `https://host:port/v1/` → `host:port`.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Docker Hub's entries are keyed `https://index.docker.io/v1/`.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

/// The credentials for `registry` (`host[:port]`) in the docker config file at `path`.
/// A missing file means no credentials; a file that cannot be read or parsed, or an
/// entry that is not valid base64 of `user:password`, is an error naming the file.
pub fn credentials_for(path: &Path, registry: &str) -> Result<Option<Credentials>, PushError> {
    let bad = |reason: String| PushError::DockerConfig {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let config: ConfigFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    // An exact key match wins over a normalized one (`host` vs `https://host/v1/`).
    let entry = config.auths.get(registry).or_else(|| {
        config
            .auths
            .iter()
            .find(|(k, _)| same_registry(k, registry))
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("auths[{registry:?}].auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths[{registry:?}].auth is not UTF-8")))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths[{registry:?}].auth is not user:password")))?;
        return Ok(Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn reads_auths_by_host_and_url_keys() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{b64}"}},
                   "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}},
                   "credsStore":"desktop"}}"#
            ),
        );
        let c = credentials_for(&p, "reg.example:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3:cret")
        );
        let hub = credentials_for(&p, "docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "bob");
        assert!(credentials_for(&p, "other.example").unwrap().is_none());
        assert!(!format!("{c:?}").contains("s3:cret"));
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(credentials_for(&dir.path().join("none.json"), "r")
            .unwrap()
            .is_none());
        let p = write(dir.path(), "{not json");
        let err = credentials_for(&p, "r").unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        let p = write(dir.path(), r#"{"auths":{"r":{"auth":"%%%"}}}"#);
        let err = credentials_for(&p, "r").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let no_colon = base64::engine::general_purpose::STANDARD.encode("justuser");
        let p = write(
            dir.path(),
            &format!(r#"{{"auths":{{"r":{{"auth":"{no_colon}"}}}}}}"#),
        );
        assert!(credentials_for(&p, "r").is_err());
    }
}
