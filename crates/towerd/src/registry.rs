//! The tower's own OCI registry: an embedded site node (the `site-agent` library), the
//! same software a site runs. Users push to it with any OCI client when its
//! `[registry.push]` allows, it fills itself from upstream registries (its pull-through
//! cache), and it is what rollouts send sites.
//!
//! `--registry FILE` configures it with a `site-agent.toml` (listen, TLS, users, `[pull]`,
//! `[gc]`, cluster peers: the replicas' registry nodes may form one site). Without it, a
//! single node under `DATA/registry` on `127.0.0.1:5100` that fills itself from any
//! upstream (`IfNotPresent`) with towerd's `--auth-file` and `--insecure-registry`, push
//! off.

use crate::cli::Config;
use site_agent::{Site, SiteHandle};
use site_core::ImageReference;
use site_delivery::resolve::Location;
use site_upstream::{RegistryAuth, Upstream};
use std::net::SocketAddr;

/// Where the default registry listens.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5100";

/// The embedded node's configuration: `--registry FILE`, or the default.
pub fn config(cli: &Config) -> Result<site_agent::Config, String> {
    if let Some(path) = &cli.registry {
        return site_agent::Config::load(path).map_err(|e| format!("--registry: {e}"));
    }
    let mut config = site_agent::Config::default();
    config.node.data_dir = cli.data.join("registry");
    config.registry.listen = DEFAULT_LISTEN.parse().expect("a socket address");
    // The tower calls its node through the library: its gRPC API stays on loopback, on
    // a port of the system's choosing.
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.pull.policy = site_pull::Policy::IfNotPresent;
    config.pull.insecure_registries = cli.insecure_registries.clone();
    if let Some(auth) = &cli.auth_file {
        config.pull.auth_file = auth.clone();
    }
    Ok(config)
}

/// How the tower asks its registry for what rollouts send: over its OCI API, as any
/// client would, naming each image `HOST/PATH` (the registry's path form), so that what
/// it holds comes with no upstream request and the rest is fetched into it.
pub struct RegistryClient {
    /// Where the registry answers.
    pub address: SocketAddr,
    /// The HTTP client.
    pub client: Upstream,
    /// The node's pull-through cache: makes an image present in the registry.
    pub puller: site_pull::Puller,
    /// The registry of names without a host (its `[registry] default_upstream`): a
    /// rollout's images are named as the registry names what is pushed to it.
    pub default_upstream: String,
    /// Its applications: a rollout's images are scheduled as its application, so that the
    /// registry's GC keeps them while it is the application's latest.
    pub applications: site_agent::Applications,
}

impl RegistryClient {
    /// Where `image` is found in the tower's registry.
    pub fn location(&self, image: &ImageReference) -> Location {
        let r = &image.repository;
        Location {
            registry: self.address.to_string(),
            repository: format!("{}/{}", r.host(), r.path()),
        }
    }

    /// The registry asks no credentials of the tower.
    pub fn auth(&self) -> RegistryAuth {
        RegistryAuth::Anonymous
    }
}

/// Starts the tower's registry node, and the client the tower asks it with.
pub async fn start(cli: &Config) -> Result<(SiteHandle, RegistryClient), String> {
    let config = config(cli)?;
    let default_upstream = config.registry.default_upstream.clone();
    // The tower reads its registry over plain HTTP, anonymously.
    if config.registry.tls.is_some() {
        return Err("--registry: [registry.tls] is not supported for the tower's registry yet (the tower reads it over plain HTTP)".into());
    }
    if config.registry.auth.read == site_agent::config::ReadSetting::Authenticated {
        return Err("--registry: [registry.auth] read = \"authenticated\" is not supported for the tower's registry yet (the tower reads it anonymously)".into());
    }
    let data = config.node.data_dir.display().to_string();
    let node = Site::start(config)
        .await
        .map_err(|e| format!("the tower's registry: {e:#}"))?;
    let mut address = node.registry_addr();
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    tracing::info!(%address, api = %node.api_addr(), data, "tower registry listening");
    let client = Upstream::new(&[address.to_string()])
        .map_err(|e| format!("a client of the tower's registry: {e}"))?;
    let (puller, applications) = (node.puller(), node.applications());
    Ok((
        node,
        RegistryClient {
            address,
            client,
            puller,
            default_upstream,
            applications,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        Cli::try_parse_from(args).unwrap().config.unwrap()
    }

    #[test]
    fn the_default_registry_is_a_loopback_node_in_the_data_directory_that_fills_itself() {
        let cli = parse(&[
            "towerd",
            "--data",
            "/srv/tower",
            "--auth-file",
            "/srv/auth.json",
            "--insecure-registry",
            "mirror.lan:5000",
        ]);
        let c = config(&cli).unwrap();
        assert_eq!(c.registry.listen.to_string(), "127.0.0.1:5100");
        assert_eq!(c.node.data_dir, std::path::Path::new("/srv/tower/registry"));
        assert!(c.api.listen.ip().is_loopback());
        assert_eq!(c.pull.policy, site_pull::Policy::IfNotPresent);
        assert_eq!(c.pull.auth_file, std::path::Path::new("/srv/auth.json"));
        assert_eq!(c.pull.insecure_registries, ["mirror.lan:5000"]);
        assert!(!c.registry.push.enabled, "push is off unless configured");
        assert!(c.cluster.peers.is_empty() && c.tls.is_none());
    }

    #[test]
    fn a_registry_file_that_cannot_be_read_is_a_clear_error() {
        let cli = parse(&["towerd", "--data", "/x", "--registry", "/nope.toml"]);
        let e = config(&cli).unwrap_err();
        assert!(
            e.starts_with("--registry: ") && e.contains("/nope.toml"),
            "{e}"
        );
    }
}
