//! Docker credential helpers: `docker-credential-<name> get` reads a server URL on
//! stdin and prints `{"ServerURL":…,"Username":…,"Secret":…}`; it fails with
//! "credentials not found in native keychain" when it has none.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::Credentials;
use crate::error::RegistryError;

/// What a helper prints for `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The user name helpers give for an identity token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// What helpers say when they hold nothing for a server.
const NOT_FOUND: &str = "credentials not found";

/// Asks `docker-credential-<helper>` (found on `PATH`) for the credentials of
/// `registry`, passing it `server_url`. "Credentials not found" is `None`; any other
/// failure is [`RegistryError::CredentialHelper`] naming the helper and registry.
pub(crate) fn get(
    helper: &str,
    registry: &str,
    server_url: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(server_url.as_bytes()) {
            // A helper that exits without reading: its status and output tell why.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(fail(format!("writing the server URL to {program}: {e}"))),
            Ok(()) => {}
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for {program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let said = format!("{} {}", stdout.trim(), stderr.trim());
        if said.to_ascii_lowercase().contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(fail(format!(
            "{program} get {}: {}",
            out.status,
            said.trim()
        )));
    }
    let answer: HelperAnswer = serde_json::from_str(stdout.trim())
        .map_err(|e| fail(format!("{program} get printed no credentials JSON: {e}")))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == IDENTITY_TOKEN_USER {
        Credentials::IdentityToken(answer.secret)
    } else {
        Credentials::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::super::credentials_for;
    use super::*;

    /// Writes `docker-credential-<name>` into `dir` running `body`.
    fn helper(dir: &Path, name: &str, body: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // One test owns PATH (tests run in parallel threads of one process).
    #[test]
    fn helpers_from_cred_helpers_and_creds_store() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // Answers for the server URL it reads, so the test sees what was passed.
        helper(
            &bin,
            "pass",
            r#"read url; [ "$1" = get ] || exit 3
case "$url" in
  reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"alice","Secret":"pw"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"idtok"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
        );
        helper(&bin, "broken", "echo 'keychain locked' >&2; exit 2");
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", bin.display()));

        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"reg.example:5000":"pass","docker.io":"pass",
                               "locked.example":"broken","gone.example":"absent"},
                "credsStore":"pass"}"#,
        )
        .unwrap();
        match credentials_for(&config, "reg.example:5000").unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("alice", "pw"))
            }
            other => panic!("expected alice, got {other:?}"),
        }
        assert_eq!(
            credentials_for(&config, "docker.io").unwrap(),
            Some(Credentials::IdentityToken("idtok".into()))
        );
        // The default store answers "not found": anonymous.
        assert_eq!(credentials_for(&config, "other.example").unwrap(), None);
        for (registry, helper) in [("locked.example", "broken"), ("gone.example", "absent")] {
            match credentials_for(&config, registry).unwrap_err() {
                RegistryError::CredentialHelper {
                    helper: h,
                    registry: r,
                    reason,
                } => {
                    assert_eq!((h.as_str(), r.as_str()), (helper, registry));
                    if helper == "broken" {
                        assert!(reason.contains("keychain locked"), "{reason}");
                    }
                }
                other => panic!("expected a helper error, got {other:?}"),
            }
        }
    }
}
