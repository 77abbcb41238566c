//! Registry credentials from a docker config file (`~/.docker/config.json`, the file
//! `docker login` writes), looked up in this order:
//!
//! 1. `credHelpers[registry]`: that credential helper ([`credential_helper`]);
//! 2. `credsStore`: the default credential helper, when set (the file's `auths` then
//!    only name registries, as the docker CLI keeps them);
//! 3. an `auths[registry]` entry with credentials: its `auth` (base64 of
//!    `user:password`) or its `username`/`password` fields;
//!
//! else the registry is accessed anonymously.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

mod credential_helper;
use crate::error::RegistryError;

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (HTTP basic auth, or exchanged for a token).
    Basic {
        /// The user name.
        username: String,
        /// The password (or token).
        password: String,
    },
    /// An identity token from a credential helper (user name `<token>`), sent as a
    /// bearer token.
    IdentityToken(String),
}

impl Credentials {
    /// The form `oci_client` takes.
    pub fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::IdentityToken(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
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

/// The host part of an `auths` or `credHelpers` key: `https://host:port/v1/` →
/// `host:port`.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Whether `host` is one of Docker Hub's names.
fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Docker Hub's entries are keyed `https://index.docker.io/v1/`.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    host == registry || (is_docker_hub(host) && is_docker_hub(registry))
}

/// The entry of `map` for `registry`: an exact key first, else a normalized one.
fn lookup<'a, V>(map: &'a BTreeMap<String, V>, registry: &str) -> Option<&'a V> {
    map.get(registry).or_else(|| {
        map.iter()
            .find(|(k, _)| same_registry(k, registry))
            .map(|(_, v)| v)
    })
}

/// The server URL docker passes credential helpers for `registry`.
fn server_url(registry: &str) -> String {
    if is_docker_hub(registry) {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// The credentials for `registry` (`host[:port]`) from the docker config file at
/// `path`. A missing file means none; a file that cannot be read or parsed, or an
/// entry that is not valid base64 of `user:password`, is an error naming the file; a
/// failing helper is an error naming the helper and the registry.
pub fn credentials_for(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let bad = |reason: String| RegistryError::DockerConfig {
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
    // As the docker CLI: a registry's helper, else the credentials store, else the
    // file's own entries.
    if let Some(helper) = lookup(&config.cred_helpers, registry) {
        return credential_helper::get(helper, registry, &server_url(registry));
    }
    if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty()) {
        return credential_helper::get(store, registry, &server_url(registry));
    }
    if let Some(entry) = lookup(&config.auths, registry) {
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(format!("auths[{registry:?}].auth is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths[{registry:?}].auth is not UTF-8")))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths[{registry:?}].auth is not user:password")))?;
            return Ok(Some(Credentials::Basic {
                username: user.to_string(),
                password: pass.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    fn basic(c: Option<Credentials>) -> (String, String) {
        match c {
            Some(Credentials::Basic { username, password }) => (username, password),
            other => panic!("expected basic credentials, got {other:?}"),
        }
    }

    #[test]
    fn reads_auths_by_host_and_url_keys() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{b64}"}},
                   "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        );
        let c = credentials_for(&p, "reg.example:5000").unwrap();
        assert!(!format!("{c:?}").contains("s3:cret"));
        assert_eq!(basic(c), ("alice".into(), "s3:cret".into()));
        let hub = credentials_for(&p, "docker.io").unwrap();
        assert_eq!(basic(hub).0, "bob");
        assert!(credentials_for(&p, "other.example").unwrap().is_none());
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
