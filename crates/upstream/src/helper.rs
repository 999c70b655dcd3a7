//! Docker credential helpers: `docker-credential-NAME get`, the server on stdin, a JSON
//! object `{"Username", "Secret"}` on stdout. Run afresh at every lookup, so short-lived
//! credentials (a cloud registry's tokens, a secret manager's) are current.

use crate::auth::Credentials;
use crate::error::{one_line, UpstreamError as Error};
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest a helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);

/// What the helper protocol prints when it has nothing for the server.
const NOT_FOUND: &str = "credentials not found";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    username: String,
    secret: String,
}

/// The server name a helper is asked about: Docker Hub's is its v1 URL, as `docker
/// login` stores it; any other registry is its host.
fn server_of(registry: &str) -> String {
    if crate::auth::normalize_host(registry) == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// Asks helper `name` for the credentials of `registry`. `Ok(None)`: it has none.
pub async fn get(name: &str, registry: &str) -> Result<Option<Credentials>, Error> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(Error::AuthFailed(format!(
            "credential helper name {name:?} is not valid"
        )));
    }
    let program = format!("docker-credential-{name}");
    let failed = |what: String| Error::AuthFailed(format!("credential helper {program}: {what}"));
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading (it failed) closes the pipe: its exit
        // status and message say why, not the write.
        let _ = stdin.write_all(server_of(registry).as_bytes()).await;
    }
    let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer in {} s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if said.to_ascii_lowercase().contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(failed(format!("{}: {}", out.status, one_line(&said))));
    }
    // The answer holds the secret: never quote it in an error.
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|_| failed("did not answer {\"Username\", \"Secret\"}".into()))?;
    if answer.secret.is_empty() {
        return Err(failed(format!("answered an empty secret for {registry}")));
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_asked_by_its_v1_url() {
        assert_eq!(server_of("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_of("ghcr.io"), "ghcr.io");
        assert_eq!(server_of("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[tokio::test]
    async fn a_missing_or_bad_helper_is_an_auth_failure() {
        let e = get("site-registry-test-no-such-helper", "ghcr.io")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "AUTH_FAILED");
        assert!(e.to_string().contains("cannot run it"), "{e}");
        let e = get("../sh", "ghcr.io").await.unwrap_err();
        assert_eq!(e.reason(), "AUTH_FAILED");
    }
}
