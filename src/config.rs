//! The node's configuration file (TOML; durations in humantime, sizes like "4MiB").
//!
//! Every key has a safe default where one exists; unknown keys are refused so that a
//! typo is an error at start-up rather than a silently ignored setting.

mod pull;
mod registry;

pub use pull::{PullSection, RegistryEntry};
pub use registry::{
    AuthSection, PushSection, ReadSetting, RegistrySection, RegistryTls, UserEntry,
};

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration of a node.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[node]`
    pub node: NodeConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[registry]`
    pub registry: RegistrySection,
    /// `[api]`
    pub api: ApiSection,
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[gc]`
    pub gc: GcSection,
    /// `[tls]`
    pub tls: Option<TlsSection>,
    /// `[pull]`
    pub pull: PullSection,
}

/// `[node]`: identity and data directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Unique within the site, > 0.
    pub id: u64,
    /// Blobs, metadata and the Raft log.
    pub data_dir: PathBuf,
    /// Every blob file is read back and checked against its digest once per this
    /// interval; zero turns the check off.
    #[serde(with = "humantime_serde_compat")]
    pub scrub_interval: Duration,
    /// Which whole reads of a blob file are hashed: `first` after the node starts
    /// (default), `always`, or `never` (copies are checked when written and by the scrub).
    pub verify_reads: site_node::VerifyReads,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            data_dir: PathBuf::from("./site-data"),
            scrub_interval: Duration::from_secs(7 * 24 * 3600),
            verify_reads: site_node::VerifyReads::First,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `site_node=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// `[api]`: gRPC for the Control Tower.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address of the gRPC listener.
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: ([127, 0, 0, 1], 50051).into(),
        }
    }
}

/// `[cluster]`: node-to-node traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Address of the peer listener.
    pub listen: SocketAddr,
    /// The other nodes of the site.
    pub peers: Vec<Peer>,
    /// `true`: this node joins a running site (added with `towerctl node add`) instead of
    /// founding one with its peers; `peers` are the nodes it first reaches.
    pub join: bool,
    /// Log entries applied between snapshots of the state; the log is compacted behind
    /// each snapshot, and a node further behind is sent the snapshot.
    pub snapshot_entries: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            listen: ([127, 0, 0, 1], 50061).into(),
            peers: Vec::new(),
            join: false,
            snapshot_entries: 1000,
        }
    }
}

/// Another node of the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Its cluster address.
    pub address: String,
}

/// `[gc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// How long an unreferenced image is kept.
    #[serde(with = "humantime_serde_compat")]
    pub grace_period: Duration,
    /// How long an unreferenced image the pull-through cache fetched is kept after its
    /// last pull.
    #[serde(with = "humantime_serde_compat")]
    pub cache_ttl: Duration,
    /// Share of disk capacity above which eligible images are evicted.
    pub high_watermark: f64,
    /// Share of disk capacity eviction brings usage down to.
    pub low_watermark: f64,
    /// Time between periodic sweeps.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Bytes of blobs the site may hold, when it shares its disk; none = the whole disk.
    #[serde(deserialize_with = "opt_size")]
    pub capacity: Option<u64>,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            grace_period: Duration::from_secs(15 * 60),
            cache_ttl: Duration::from_secs(7 * 24 * 3600),
            high_watermark: 0.85,
            low_watermark: 0.70,
            interval: Duration::from_secs(60),
            capacity: None,
        }
    }
}

/// `[tls]`: mTLS for gRPC when present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Node certificate (PEM).
    pub cert: PathBuf,
    /// Node private key (PEM).
    pub key: PathBuf,
    /// Site CA (PEM).
    pub ca: PathBuf,
}

impl TlsSection {
    /// The node's TLS identity and its site CA, read from the files.
    pub fn load(&self) -> Result<site_api::tls::NodeTls, String> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("[tls] {what} {}: {e}", path.display()))
        };
        site_api::tls::NodeTls::from_pem(
            &read("cert", &self.cert)?,
            &read("key", &self.key)?,
            &read("ca", &self.ca)?,
        )
        .map_err(|e| format!("[tls] ca {}: {e}", self.ca.display()))
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or bad values.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Values that parse but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            e => e,
        })?;
        Ok(config)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.node.id == 0 {
            return invalid("[node] id must be > 0");
        }
        let c = &self.cluster;
        if c.snapshot_entries == 0 {
            return invalid("[cluster] snapshot_entries must be > 0");
        }
        if c.join && c.peers.is_empty() {
            return invalid("[cluster] join needs the peers of the site it joins");
        }
        if c.peers.iter().any(|p| p.id == 0 || p.id == self.node.id) {
            return invalid("[cluster] peers need ids > 0 other than this node's [node] id");
        }
        self.registry.check().map_err(ConfigError::Invalid)?;
        if site_core::Repository::new(&self.registry.default_upstream, "x").is_err() {
            return invalid("[registry] default_upstream must be a registry host[:port]");
        }
        let g = &self.gc;
        if !(0.0 < g.low_watermark
            && g.low_watermark <= g.high_watermark
            && g.high_watermark <= 1.0)
        {
            return invalid("[gc] watermarks need 0 < low_watermark <= high_watermark <= 1");
        }
        if g.interval.is_zero() || g.capacity == Some(0) {
            return invalid("[gc] interval and capacity must be > 0");
        }
        if self.registry.max_manifest_size == 0 || self.registry.max_blob_size == 0 {
            return invalid("[registry] size limits must be > 0");
        }
        self.pull.check().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

/// A size: an integer number of bytes, or a string such as "512KiB", "4MiB", "20GiB", "1GB".
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(t) => parse_size(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {t:?}: use bytes or a number with KiB, MiB, GiB, KB, MB, GB"
            ))
        }),
    }
}

/// An optional size.
fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

/// Parses "4MiB"-style sizes.
pub fn parse_size(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Durations as humantime strings ("30s", "15m").
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../site-agent.toml.example");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.registry.listen.to_string(), "127.0.0.1:5000");
        assert!(!c.registry.push.enabled);
        assert_eq!(c.gc.grace_period, Duration::from_secs(900));
    }

    #[test]
    fn defaults_and_errors() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.node.id, 1);
        assert_eq!(c.registry.max_manifest_size, 4 << 20);
        assert!(Config::parse("[node]\nid = 0").is_err());
        assert!(Config::parse("[registry]\nlisten = \"nope\"").is_err());
        assert!(Config::parse("[registry]\nlistn = \"127.0.0.1:1\"").is_err());
        assert!(Config::parse("[registry.push]\nenabled = true").is_err());
        assert!(Config::parse("[gc]\ngrace_period = \"soon\"").is_err());
        assert!(Config::parse("[gc]\nlow_watermark = 0.9\nhigh_watermark = 0.8").is_err());
        let c = Config::parse("[registry]\nmax_blob_size = \"1GiB\"\nmax_manifest_size = 1000")
            .unwrap();
        assert_eq!(c.registry.max_blob_size, 1 << 30);
        assert_eq!(c.registry.max_manifest_size, 1000);
        assert_eq!(parse_size("10 MB"), Some(10_000_000));
        assert_eq!(parse_size("x"), None);
        let c = Config::parse(
            "[registry.push]\nenabled = true\nusers = [{ name = \"ci\", password = \"pw\" }]",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn pull_keys() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.pull.policy, site_pull::Policy::Never);
        assert_eq!(c.gc.cache_ttl, Duration::from_secs(7 * 24 * 3600));
        let c = Config::parse(
            "[pull]\npolicy = \"IfNotPresent\"\ninsecure_registries = [\"127.0.0.1:5055\"]\ntimeout = \"3s\"\n\
             [[pull.registry]]\nhost = \"docker.io\"\nendpoint = \"http://127.0.0.1:5055\"\npolicy = \"Always\"\n",
        )
        .unwrap();
        let s = c.pull.settings().unwrap();
        assert_eq!(s.policy_for("docker.io"), site_pull::Policy::Always);
        assert_eq!(s.policy_for("ghcr.io"), site_pull::Policy::IfNotPresent);
        assert_eq!(s.contact_for("docker.io"), "127.0.0.1:5055");
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert!(Config::parse("[pull]\npolicy = \"Sometimes\"").is_err());
        assert!(Config::parse("[pull]\ntimeout = \"0s\"").is_err());
        assert!(
            Config::parse("[[pull.registry]]\nhost = \"docker.io\"\nendpoint = \"ftp://x\"")
                .is_err()
        );
        assert!(Config::parse("[[pull.registry]]\nhost = \"not a host\"").is_err());
        assert!(Config::parse("[pull]\nca_file = \"/nonexistent.pem\"")
            .unwrap()
            .pull
            .settings()
            .is_err());
    }

    #[test]
    fn cluster_keys() {
        let c = Config::parse("").unwrap();
        assert!(!c.cluster.join && c.cluster.peers.is_empty());
        assert_eq!(c.cluster.snapshot_entries, 1000);
        let two = "[cluster]\npeers = [{ id = 2, address = \"10.0.0.2:50061\" }]\n";
        let c = Config::parse(&format!("{two}join = true\nsnapshot_entries = 50")).unwrap();
        assert!(c.cluster.join);
        assert_eq!(c.cluster.snapshot_entries, 50);
        // Joining needs somebody to join; peers are others; snapshots need entries.
        assert!(Config::parse("[cluster]\njoin = true").is_err());
        assert!(Config::parse(&format!("{two}snapshot_entries = 0")).is_err());
        assert!(
            Config::parse("[cluster]\npeers = [{ id = 1, address = \"10.0.0.1:50061\" }]").is_err()
        );
    }
}
