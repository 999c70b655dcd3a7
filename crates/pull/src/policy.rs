//! Pull policies and the settings of the pull-through cache (`[pull]`), per registry.

use std::path::PathBuf;
use std::time::Duration;

/// When a node fetches from upstream, as container runtimes and Kubernetes define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A manifest asked by tag is checked at the upstream (HEAD) at every pull; what the
    /// site holds is served when the upstream cannot answer.
    Always,
    /// What the site holds is served without asking anyone; a miss is fetched.
    IfNotPresent,
    /// Nothing is ever fetched.
    Never,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "Always" => Ok(Policy::Always),
            "IfNotPresent" => Ok(Policy::IfNotPresent),
            "Never" => Ok(Policy::Never),
            other => Err(format!(
                "pull policy {other:?} is not one of Always, IfNotPresent, Never"
            )),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Always => "Always",
            Policy::IfNotPresent => "IfNotPresent",
            Policy::Never => "Never",
        })
    }
}

/// `[[pull.registry]]`: one registry's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRule {
    /// The registry as image names spell it (`docker.io`, `ghcr.io`, `host:port`).
    pub host: String,
    /// Where its content is fetched from instead (a mirror), if anywhere.
    pub endpoint: Option<Endpoint>,
    /// Its policy, when not the default one.
    pub policy: Option<Policy>,
}

/// A mirror endpoint: `https://host[:port]` or `http://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Spoken to in plain HTTP.
    pub plain_http: bool,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        let (plain_http, rest) = if let Some(r) = s.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (false, r)
        } else {
            (false, s)
        };
        let host = rest.trim_end_matches('/');
        let valid = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !valid {
            return Err(format!(
                "endpoint {s:?} is not https://HOST[:PORT] or http://HOST[:PORT]"
            ));
        }
        Ok(Endpoint {
            host: host.to_ascii_lowercase(),
            plain_http,
        })
    }
}

/// The settings of the pull-through cache.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// The policy of every registry without its own.
    pub policy: Policy,
    /// Docker `config.json` with credentials, read at the start of every pull.
    pub auth_file: Option<PathBuf>,
    /// Hosts reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) for upstream TLS.
    pub ca_pem: Vec<u8>,
    /// Connect and first-byte limit of one upstream request.
    pub timeout: Duration,
    /// Per-registry settings.
    pub registries: Vec<RegistryRule>,
}

impl Default for PullConfig {
    fn default() -> PullConfig {
        PullConfig {
            policy: Policy::Never,
            auth_file: None,
            insecure_registries: Vec::new(),
            ca_pem: Vec::new(),
            timeout: Duration::from_secs(10),
            registries: Vec::new(),
        }
    }
}

impl PullConfig {
    fn rule(&self, registry: &str) -> Option<&RegistryRule> {
        let wanted = site_upstream::auth::normalize_host(registry);
        self.registries
            .iter()
            .find(|r| site_upstream::auth::normalize_host(&r.host) == wanted)
    }

    /// The policy of `registry`.
    pub fn policy_for(&self, registry: &str) -> Policy {
        self.rule(registry)
            .and_then(|r| r.policy)
            .unwrap_or(self.policy)
    }

    /// Which setting gives `registry` its policy, as the configuration spells it.
    pub fn policy_source(&self, registry: &str) -> String {
        match self.rule(registry) {
            Some(r) if r.policy.is_some() => format!("[[pull.registry]] host = \"{}\"", r.host),
            _ => "[pull] policy".to_owned(),
        }
    }

    /// The host contacted for `registry`'s content: its endpoint's, or its own.
    pub fn contact_for(&self, registry: &str) -> String {
        match self.rule(registry).and_then(|r| r.endpoint.as_ref()) {
            Some(e) => e.host.clone(),
            None => registry.to_owned(),
        }
    }

    /// Whether any registry may be fetched from.
    pub fn reaches_out(&self) -> bool {
        self.policy != Policy::Never
            || self
                .registries
                .iter()
                .any(|r| r.policy.is_some_and(|p| p != Policy::Never))
    }

    /// Every host spoken to in plain HTTP: the insecure registries and the `http://`
    /// endpoints.
    pub fn plain_http_hosts(&self) -> Vec<String> {
        let mut hosts = self.insecure_registries.clone();
        hosts.extend(
            self.registries
                .iter()
                .filter_map(|r| r.endpoint.as_ref())
                .filter(|e| e.plain_http)
                .map(|e| e.host.clone()),
        );
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_kubernetes_spells_them() {
        assert_eq!("Always".parse(), Ok(Policy::Always));
        assert_eq!("IfNotPresent".parse(), Ok(Policy::IfNotPresent));
        assert_eq!("Never".parse(), Ok(Policy::Never));
        assert!("always".parse::<Policy>().is_err());
    }

    #[test]
    fn endpoints_and_per_registry_rules() {
        let config = PullConfig {
            policy: Policy::Never,
            registries: vec![RegistryRule {
                host: "docker.io".into(),
                endpoint: Some("http://127.0.0.1:5055/".parse().unwrap()),
                policy: Some(Policy::IfNotPresent),
            }],
            ..PullConfig::default()
        };
        assert_eq!(config.policy_for("docker.io"), Policy::IfNotPresent);
        assert_eq!(config.policy_for("index.docker.io"), Policy::IfNotPresent);
        assert_eq!(config.policy_for("ghcr.io"), Policy::Never);
        assert_eq!(config.contact_for("docker.io"), "127.0.0.1:5055");
        assert_eq!(config.contact_for("ghcr.io"), "ghcr.io");
        assert_eq!(config.plain_http_hosts(), vec!["127.0.0.1:5055".to_owned()]);
        assert!(config.reaches_out());
        assert!(!PullConfig::default().reaches_out());
        let https: Endpoint = "https://mirror.example:5000".parse().unwrap();
        assert!(!https.plain_http);
        assert!("https://mirror/../x".parse::<Endpoint>().is_err());
        assert!("ftp://mirror".parse::<Endpoint>().is_err());
    }
}
