//! `[registry]`: the OCI Distribution API's listener, limits, HTTPS and push users.

use super::{humantime_serde_compat, size};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[registry]`: the OCI Distribution API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Registry of names that carry no host.
    pub default_upstream: String,
    /// Largest manifest accepted.
    #[serde(deserialize_with = "size")]
    pub max_manifest_size: u64,
    /// Largest blob accepted.
    #[serde(deserialize_with = "size")]
    pub max_blob_size: u64,
    /// Upload sessions older than this are dropped at start-up.
    #[serde(with = "humantime_serde_compat")]
    pub upload_ttl: Duration,
    /// `[registry.push]`
    pub push: PushSection,
    /// `[registry.tls]`: HTTPS instead of HTTP when present.
    pub tls: Option<RegistryTls>,
    /// `[registry.auth]`: users and who may pull.
    pub auth: AuthSection,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            listen: ([127, 0, 0, 1], 5000).into(),
            default_upstream: "docker.io".into(),
            max_manifest_size: 4 << 20,
            max_blob_size: 32 << 30,
            upload_ttl: Duration::from_secs(24 * 3600),
            push: PushSection::default(),
            tls: None,
            auth: AuthSection::default(),
        }
    }
}

/// `[registry.push]`: HTTP push, off unless enabled with users.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Whether push over HTTP is on.
    pub enabled: bool,
    /// Users allowed to push, with plain-text passwords (deprecated: use
    /// `[registry.auth] htpasswd`).
    pub users: Vec<UserEntry>,
}

/// `[registry.auth]`: the registry's users, and who may pull.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// An htpasswd file of bcrypt entries (`htpasswd -B`), read again when it changes.
    pub htpasswd: Option<PathBuf>,
    /// `"anonymous"` (anyone may pull) or `"authenticated"` (users only).
    pub read: ReadSetting,
}

/// Who may pull.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadSetting {
    /// Anyone who reaches the listener.
    #[default]
    Anonymous,
    /// Users with valid credentials only.
    Authenticated,
}

/// A push user.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `[registry.tls]`: the registry listener speaks HTTPS only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    /// The server certificate, then any intermediates (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for a change ("0s": only on SIGHUP).
    #[serde(default = "reload_interval", with = "humantime_serde_compat")]
    pub reload_interval: Duration,
}

fn reload_interval() -> Duration {
    Duration::from_secs(2)
}

impl RegistryTls {
    /// The files as the registry takes them.
    pub fn files(&self) -> site_http::TlsFiles {
        site_http::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
        }
    }
}

impl RegistrySection {
    /// The access settings the registry takes.
    pub fn access(&self) -> site_http::AccessConfig {
        site_http::AccessConfig {
            push_enabled: self.push.enabled,
            read: match self.auth.read {
                ReadSetting::Anonymous => site_http::ReadAccess::Anonymous,
                ReadSetting::Authenticated => site_http::ReadAccess::Authenticated,
            },
            users: self
                .push
                .users
                .iter()
                .map(|u| site_http::User {
                    name: u.name.clone(),
                    password: u.password.clone(),
                })
                .collect(),
            htpasswd: self.auth.htpasswd.clone(),
        }
    }

    /// What is wrong with the section, if anything.
    pub(super) fn check(&self) -> Result<(), String> {
        let no_users = self.push.users.is_empty() && self.auth.htpasswd.is_none();
        if self.push.enabled && no_users {
            return Err(
                "[registry.push] is enabled but there are no users: push needs credentials ([registry.auth] htpasswd)".into(),
            );
        }
        if self.auth.read == ReadSetting::Authenticated && no_users {
            return Err(
                "[registry.auth] read = \"authenticated\" needs users ([registry.auth] htpasswd)"
                    .into(),
            );
        }
        if self
            .push
            .users
            .iter()
            .any(|u| u.name.is_empty() || u.name.contains(':') || u.password.is_empty())
        {
            return Err(
                "[registry.push] users need a name (without ':') and a non-empty password".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn tls_keys() {
        let c = Config::parse("[registry.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        let t = c.registry.tls.unwrap();
        assert_eq!(t.cert.to_str(), Some("c.pem"));
        assert!(t.client_ca.is_none());
        assert_eq!(t.reload_interval, Duration::from_secs(2));
        let c = Config::parse(
            "[registry.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\nreload_interval = \"0s\"\n",
        )
        .unwrap();
        let t = c.registry.tls.unwrap();
        assert_eq!(t.client_ca.unwrap().to_str(), Some("ca"));
        assert!(t.reload_interval.is_zero());
        // Both files are needed; unknown keys are refused.
        assert!(Config::parse("[registry.tls]\ncert = \"c\"\n").is_err());
        assert!(Config::parse("[registry.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n").is_err());
        assert!(Config::parse("").unwrap().registry.tls.is_none());
    }

    #[test]
    fn auth_keys() {
        use super::ReadSetting;
        let c = Config::parse("").unwrap();
        assert_eq!(c.registry.auth.read, ReadSetting::Anonymous);
        let c = Config::parse(
            "[registry.auth]\nhtpasswd = \"h\"\nread = \"authenticated\"\n[registry.push]\nenabled = true\n",
        )
        .unwrap();
        assert_eq!(c.registry.auth.read, ReadSetting::Authenticated);
        assert_eq!(c.registry.access().htpasswd.unwrap().to_str(), Some("h"));
        // Authenticated reads and push need users; the setting is one of two words.
        assert!(Config::parse("[registry.auth]\nread = \"authenticated\"\n").is_err());
        assert!(Config::parse("[registry.push]\nenabled = true\n").is_err());
        assert!(Config::parse("[registry.auth]\nread = \"everyone\"\n").is_err());
    }
}
