//! `[pull]`: the pull-through cache (upstreams, policies, credentials).

use serde::{Deserialize, Deserializer};
use site_pull::{Endpoint, Policy, PullConfig, RegistryRule};
use std::path::PathBuf;
use std::time::Duration;

/// `[pull]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullSection {
    /// `Always`, `IfNotPresent` or `Never`: the policy of every registry without its own.
    #[serde(deserialize_with = "policy")]
    pub policy: Policy,
    /// Docker `config.json` with upstream credentials, re-read at every pull ("" = none).
    pub auth_file: PathBuf,
    /// Hosts reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) for upstream TLS ("" = none).
    pub ca_file: PathBuf,
    /// Connect and first-byte limit of one upstream request.
    #[serde(with = "super::humantime_serde_compat")]
    pub timeout: Duration,
    /// `[[pull.registry]]`
    pub registry: Vec<RegistryEntry>,
}

impl Default for PullSection {
    fn default() -> Self {
        PullSection {
            policy: Policy::Never,
            auth_file: PathBuf::new(),
            insecure_registries: Vec::new(),
            ca_file: PathBuf::new(),
            timeout: Duration::from_secs(10),
            registry: Vec::new(),
        }
    }
}

/// `[[pull.registry]]`: one registry's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// The registry as image names spell it.
    pub host: String,
    /// Fetch its content from this mirror (`https://HOST[:PORT]`, or `http://` for plain
    /// HTTP).
    #[serde(default, deserialize_with = "endpoint")]
    pub endpoint: Option<Endpoint>,
    /// Its policy.
    #[serde(default, deserialize_with = "opt_policy")]
    pub policy: Option<Policy>,
}

fn policy<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

fn opt_policy<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Policy>, D::Error> {
    policy(d).map(Some)
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Endpoint>, D::Error> {
    String::deserialize(d)?
        .parse()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl PullSection {
    /// Checks what parsing cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("[pull] timeout must be > 0".into());
        }
        for r in &self.registry {
            if site_core::Repository::new(&r.host, "x").is_err() {
                return Err(format!(
                    "[[pull.registry]] host {:?} is not a registry host[:port]",
                    r.host
                ));
            }
        }
        Ok(())
    }

    /// The settings of the pull-through cache; reads `ca_file`.
    pub fn settings(&self) -> Result<PullConfig, String> {
        let ca_pem = if self.ca_file.as_os_str().is_empty() {
            Vec::new()
        } else {
            std::fs::read(&self.ca_file)
                .map_err(|e| format!("[pull] ca_file {}: {e}", self.ca_file.display()))?
        };
        Ok(PullConfig {
            policy: self.policy,
            auth_file: (!self.auth_file.as_os_str().is_empty()).then(|| self.auth_file.clone()),
            insecure_registries: self.insecure_registries.clone(),
            ca_pem,
            timeout: self.timeout,
            registries: self
                .registry
                .iter()
                .map(|r| RegistryRule {
                    host: r.host.clone(),
                    endpoint: r.endpoint.clone(),
                    policy: r.policy,
                })
                .collect(),
        })
    }
}
