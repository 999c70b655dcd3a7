//! Upstream credentials from a Docker `config.json`.
//!
//! For a registry host, as Docker looks them up: the credential helper `credHelpers`
//! names for that host, else the `credsStore` helper, else the `auths` map. Each `auths`
//! key names a registry (`https://index.docker.io/v1/`, `host`, `host:port`, with or
//! without scheme and path), each value carries either `auth` (base64 of
//! `user:password`) or `username` and `password`; the first entry, in file order, whose
//! host matches and that carries credentials wins. A helper is the program
//! `docker-credential-NAME`, run as `get` with the server on stdin (`helper.rs`); one that
//! fails or is missing is an authentication failure, never a silent anonymous pull. A
//! `credsStore` that has nothing for the host (the protocol's "credentials not found")
//! leaves `auths` to answer. Credentials go to the registry they are for only; they are
//! never printed.

use crate::error::UpstreamError as Error;
use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// A user name and password for one registry. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Deserialize, Default)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// What of a Docker `config.json` names credentials: `auths` in file order, and the
/// credential helpers.
#[derive(Default)]
pub struct DockerConfig {
    auths: Vec<(String, Entry)>,
    helpers: Vec<(String, String)>,
    store: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default, deserialize_with = "in_file_order")]
    auths: Vec<(String, Entry)>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// Reads a JSON object as a list of entries, keeping the order of the file (serde_json's
/// own `Map` sorts its keys unless a crate-wide feature is on).
fn in_file_order<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Entry)>, D::Error> {
    struct Ordered;
    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, Entry)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of registry to credentials")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut out = Vec::new();
            while let Some((key, entry)) = map.next_entry::<String, Entry>()? {
                out.push((key, entry));
            }
            Ok(out)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Ordered)
}

impl DockerConfig {
    /// Parses the text of a `config.json`. The error never quotes the file's content.
    pub fn parse(text: &str) -> Result<DockerConfig, Error> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            Error::AuthFailed(format!(
                "not a valid Docker config.json (line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(DockerConfig {
            auths: raw.auths,
            helpers: raw.cred_helpers.into_iter().collect(),
            store: raw.creds_store.filter(|s| !s.trim().is_empty()),
        })
    }

    /// The credentials for `registry`, as Docker finds them: its `credHelpers` helper,
    /// else the `credsStore` helper, else [`DockerConfig::credentials_for`]. Runs a
    /// helper when one applies.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let wanted = normalize_host(registry);
        let helper = self
            .helpers
            .iter()
            .find(|(host, _)| normalize_host(host) == wanted)
            .map(|(_, helper)| helper);
        if let Some(helper) = helper {
            return crate::helper::get(helper, registry).await?.map_or_else(
                || {
                    Err(Error::AuthFailed(format!(
                        "credential helper docker-credential-{helper} has no credentials for {registry}"
                    )))
                },
                |c| Ok(Some(c)),
            );
        }
        if let Some(store) = &self.store {
            if let Some(c) = crate::helper::get(store, registry).await? {
                return Ok(Some(c));
            }
        }
        self.credentials_for(registry)
    }

    /// The credentials for `registry` (a host as in a repository name, e.g. `docker.io`
    /// or `127.0.0.1:5001`): the first matching entry that carries any.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let wanted = normalize_host(registry);
        for (key, entry) in &self.auths {
            if normalize_host(key) != wanted {
                continue;
            }
            if let Some(auth) = entry.auth.as_deref().filter(|a| !a.trim().is_empty()) {
                return decode_auth(auth).map(Some).ok_or_else(|| {
                    Error::AuthFailed(format!(
                        "auth file: the `auth` of entry {key:?} is not base64 of user:password"
                    ))
                });
            }
            if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
                return Ok(Some(Credentials {
                    username: username.clone(),
                    password: password.clone(),
                }));
            }
        }
        Ok(None)
    }
}

/// `base64(user:password)` to credentials; `None` when it is not that.
fn decode_auth(auth: &str) -> Option<Credentials> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let auth = auth.trim();
    let bytes = STANDARD
        .decode(auth)
        .or_else(|_| STANDARD_NO_PAD.decode(auth))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| Credentials {
        username: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The registry host an `auths` key or a repository host names: no scheme, no path,
/// lower case, Docker Hub's aliases folded into `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let lower = key.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

/// The default auth file from `DOCKER_CONFIG` and `HOME`: `$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`.
pub fn default_path(docker_config: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker").join("config.json")),
    }
}

/// Loads the auth file: `explicit` must exist; the default one is used when it exists.
/// Unreadable or malformed, it is an authentication failure.
pub fn load(explicit: Option<&Path>) -> Result<DockerConfig, Error> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => match default_path(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME")) {
            Some(p) if p.is_file() => p,
            _ => return Ok(DockerConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::AuthFailed(format!("auth file {}: {e}", path.display())))?;
    DockerConfig::parse(&text)
        .map_err(|e| Error::AuthFailed(format!("auth file {}: {}", path.display(), e.detail())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn creds(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn auth_base64_form() {
        let cfg = DockerConfig::parse(&format!(
            r#"{{"auths": {{"registry.example.com:4433": {{"auth": "{}"}}}}}}"#,
            b64("ci:s3:cret")
        ))
        .unwrap();
        assert_eq!(
            cfg.credentials_for("registry.example.com:4433").unwrap(),
            creds("ci", "s3:cret")
        );
        assert_eq!(cfg.credentials_for("registry.example.com").unwrap(), None);
    }

    #[test]
    fn username_password_form() {
        let cfg = DockerConfig::parse(
            r#"{"auths": {"https://ghcr.io/v2/": {"username": "bot", "password": "pw"}}}"#,
        )
        .unwrap();
        assert_eq!(cfg.credentials_for("ghcr.io").unwrap(), creds("bot", "pw"));
        assert_eq!(cfg.credentials_for("GHCR.io").unwrap(), creds("bot", "pw"));
    }

    #[test]
    fn docker_hub_aliases() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io",
        ] {
            let cfg = DockerConfig::parse(&format!(
                r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#,
                b64("hub:pw")
            ))
            .unwrap();
            assert_eq!(
                cfg.credentials_for("docker.io").unwrap(),
                creds("hub", "pw"),
                "{key}"
            );
        }
    }

    #[test]
    fn first_match_in_file_order_wins() {
        // Keys sorted would put "docker.io" first; the file has the v1 URL first.
        let cfg = DockerConfig::parse(&format!(
            r#"{{"auths": {{
                "other.example.com": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "docker.io": {{"username": "second", "password": "pw2"}}
            }}}}"#,
            b64("other:x"),
            b64("first:pw1")
        ))
        .unwrap();
        assert_eq!(
            cfg.credentials_for("docker.io").unwrap(),
            creds("first", "pw1")
        );
    }

    #[test]
    fn entries_without_credentials_are_skipped() {
        let cfg = DockerConfig::parse(
            r#"{"auths": {"docker.io": {}, "index.docker.io": {"username": "u", "password": "p"}},
                "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(cfg.credentials_for("docker.io").unwrap(), creds("u", "p"));
    }

    #[test]
    fn no_match_and_no_auths_mean_anonymous() {
        let cfg = DockerConfig::parse(r#"{"credsStore": "desktop"}"#).unwrap();
        assert_eq!(cfg.credentials_for("docker.io").unwrap(), None);
        let cfg = DockerConfig::parse(r#"{"auths": {}}"#).unwrap();
        assert_eq!(cfg.credentials_for("docker.io").unwrap(), None);
    }

    #[test]
    fn bad_auth_is_an_error_that_does_not_quote_it() {
        let cfg =
            DockerConfig::parse(r#"{"auths": {"docker.io": {"auth": "!!secret!!"}}}"#).unwrap();
        let err = cfg.credentials_for("docker.io").unwrap_err();
        assert!(!err.to_string().contains("secret"));
        let cfg = DockerConfig::parse(&format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{}"}}}}}}"#,
            b64("no-colon")
        ))
        .unwrap();
        assert!(cfg.credentials_for("docker.io").is_err());
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let err = DockerConfig::parse(r#"{"auths": {"docker.io": "hunter2"}}"#)
            .err()
            .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn default_path_prefers_docker_config() {
        assert_eq!(
            default_path(Some("/etc/dc".into()), Some("/home/u".into())),
            Some(PathBuf::from("/etc/dc/config.json"))
        );
        assert_eq!(
            default_path(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(default_path(None, None), None);
    }
}
