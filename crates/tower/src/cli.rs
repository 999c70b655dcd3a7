//! The command line (DESIGN.md, "CLI (contract)").

use crate::exit;
use crate::platform::Platform;
use clap::{Args, Parser, Subcommand};
use site_core::ImageReference;
use std::path::PathBuf;

/// towerctl: deliver digest-pinned images to an edge site and manage what it keeps.
#[derive(Debug, Parser)]
#[command(name = "towerctl", version, after_help = exit::HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The site to talk to.
#[derive(Debug, Clone, Args)]
pub struct SiteArg {
    /// The site's gRPC address (`[api] listen` of any of its nodes), plain HTTP/2. Give
    /// several nodes of the site (repeated, or separated by commas) and towerctl goes on
    /// with the next one when a node becomes unreachable.
    #[arg(
        long,
        env = "TOWERCTL_SITE",
        value_name = "HOST:PORT",
        value_parser = parse_site,
        value_delimiter = ',',
        required = true
    )]
    pub site: Vec<String>,
    /// The site CA (PEM): talk TLS to the site, verifying its nodes against this CA.
    #[arg(long, env = "TOWERCTL_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present to the site (a site with `[tls]` requires one
    /// signed by its CA).
    #[arg(
        long,
        env = "TOWERCTL_TLS_CERT",
        value_name = "FILE",
        requires_all = ["tls_key", "tls_ca"]
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(
        long,
        env = "TOWERCTL_TLS_KEY",
        value_name = "FILE",
        requires_all = ["tls_cert", "tls_ca"]
    )]
    pub tls_key: Option<PathBuf>,
    /// How long to wait while every node answers that it knows no leader of its site
    /// (right after a site's nodes start, before their first election) before the site
    /// is reported unreachable.
    #[arg(
        long,
        env = "TOWERCTL_LEADER_WAIT",
        value_name = "DURATION",
        default_value = "15s",
        value_parser = humantime::parse_duration
    )]
    pub leader_wait: std::time::Duration,
}

impl SiteArg {
    /// Nodes of a site spoken to in plain HTTP/2.
    pub fn plain(sites: Vec<String>) -> SiteArg {
        SiteArg {
            site: sites,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            leader_wait: std::time::Duration::from_secs(15),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve images at their upstream registries and deliver them to the site.
    Deliver(DeliverArgs),
    /// Schedule an application with exactly this set of digest-pinned images.
    Schedule {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Application name.
        #[arg(value_name = "APP")]
        app: String,
        /// The images it needs, each pinned by digest.
        #[arg(value_name = "IMAGE@DIGEST", required = true, value_parser = parse_pinned)]
        images: Vec<String>,
    },
    /// Unschedule an application: its images become eligible for GC.
    Unschedule {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Application name.
        #[arg(value_name = "APP")]
        app: String,
    },
    /// Pin an image so that it stays with no application (pre-cache for offline use).
    Pin {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// The image, pinned by digest.
        #[arg(value_name = "IMAGE@DIGEST", value_parser = parse_pinned)]
        image: String,
    },
    /// Remove a pin.
    Unpin {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// The image, pinned by digest.
        #[arg(value_name = "IMAGE@DIGEST", value_parser = parse_pinned)]
        image: String,
    },
    /// List the images the site holds.
    Images {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Only repositories whose name contains SUBSTR.
        #[arg(long, value_name = "SUBSTR")]
        repository: Option<String>,
        /// Only images of this application.
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// Only manifests with this annotation (KEY, or KEY=VALUE).
        #[arg(long, value_name = "K[=V]")]
        annotation: Option<String>,
    },
    /// List the scheduled applications and their images.
    Apps {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
    },
    /// Show the site's status: disk, images, applications, last GC.
    Status {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
    },
    /// Print the site's events as they happen, until Ctrl-C.
    Events {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
    },
    /// Add a node to the site, or remove one.
    Node {
        /// What to do.
        #[command(subcommand)]
        action: NodeAction,
    },
    /// The fleet's sites, at the tower service (towerd).
    Sites {
        /// The tower service.
        #[command(flatten)]
        tower: crate::fleet_cli::TowerArg,
        /// What to do.
        #[command(subcommand)]
        action: crate::fleet_cli::SitesAction,
    },
    /// Rollouts of an application to many sites, at the tower service (towerd).
    Rollout {
        /// The tower service.
        #[command(flatten)]
        tower: crate::fleet_cli::TowerArg,
        /// What to do.
        #[command(subcommand)]
        action: crate::fleet_cli::RolloutAction,
    },
    /// Run one garbage collection sweep now.
    Gc {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `node add` / `node remove`.
#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Add a node, started with `[cluster] join = true`, to the site's group.
    Add {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Its `[node] id`.
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its `[cluster] listen` address, as the other nodes reach it.
        #[arg(value_name = "HOST:PORT", value_parser = parse_site)]
        address: String,
    },
    /// Remove a node from the site's group.
    Remove {
        /// The site.
        #[command(flatten)]
        site: SiteArg,
        /// Its `[node] id`.
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
}

/// Arguments of `deliver`.
#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// The site.
    #[command(flatten)]
    pub site: SiteArg,
    /// Docker config.json with upstream credentials [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json, when it exists]. Never sent to the site.
    #[arg(long, value_name = "config.json")]
    pub auth_file: Option<PathBuf>,
    /// Talk plain HTTP to this upstream registry (HOST or HOST:PORT, as in the image name).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Deliver only the manifest of this platform of a multi-platform image.
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<Platform>,
    /// Images by tag or digest, Docker naming (`nginx` is docker.io/library/nginx:latest).
    #[arg(value_name = "IMAGE", required = true, value_parser = parse_image)]
    pub images: Vec<ImageArg>,
}

/// An IMAGE argument: as typed, and parsed.
#[derive(Debug, Clone)]
pub struct ImageArg {
    /// The text as given on the command line.
    pub text: String,
    /// The parsed reference.
    pub reference: ImageReference,
}

/// Parses an IMAGE of `deliver`.
pub fn parse_image(s: &str) -> Result<ImageArg, String> {
    let reference = ImageReference::parse(s).map_err(|e| e.to_string())?;
    Ok(ImageArg {
        text: s.to_owned(),
        reference,
    })
}

/// Parses an IMAGE@DIGEST into the canonical `host/path@sha256:...` the site expects.
pub fn parse_pinned(s: &str) -> Result<String, String> {
    let r = ImageReference::parse(s).map_err(|e| e.to_string())?;
    match r.digest {
        Some(d) => Ok(format!("{}@{d}", r.repository)),
        None => Err(format!(
            "{s:?} is not pinned: expected IMAGE@sha256:<64 hex>"
        )),
    }
}

/// Checks a `--site` value: `HOST:PORT` (an `http://` prefix is tolerated).
pub fn parse_site(s: &str) -> Result<String, String> {
    let authority = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    if host.is_empty() || host.contains(['/', '@', ' ']) || port.parse::<u16>().is_err() {
        return Err(format!("{s:?} is not HOST:PORT"));
    }
    Ok(authority.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn images_follow_docker_naming() {
        let a = parse_image("nginx").unwrap();
        assert_eq!(
            a.reference.repository.to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(a.reference.tag.as_deref(), Some("latest"));
        let a = parse_image("127.0.0.1:5001/team/app:1.2").unwrap();
        assert_eq!(
            a.reference.repository.to_string(),
            "127.0.0.1:5001/team/app"
        );
        assert_eq!(a.reference.tag.as_deref(), Some("1.2"));
        let a = parse_image(&format!("ghcr.io/o/r@{D}")).unwrap();
        assert_eq!(a.reference.tag, None);
        assert_eq!(a.reference.digest.unwrap().as_str(), D);
        assert!(parse_image("team/App:x").is_err());
        assert!(parse_image("nginx@sha256:short").is_err());
    }

    #[test]
    fn pinned_images_are_canonical_and_need_a_digest() {
        assert_eq!(
            parse_pinned(&format!("nginx:1.25@{D}")).unwrap(),
            format!("docker.io/library/nginx@{D}")
        );
        assert!(parse_pinned("nginx:1.25").is_err());
        assert!(parse_pinned("nginx").is_err());
    }

    #[test]
    fn site_addresses() {
        assert_eq!(parse_site("127.0.0.1:50051").unwrap(), "127.0.0.1:50051");
        assert_eq!(parse_site("http://node1:50051/").unwrap(), "node1:50051");
        assert_eq!(parse_site("[::1]:50051").unwrap(), "[::1]:50051");
        for bad in ["node1", "node1:", ":50051", "node1:http", "a/b:1"] {
            assert!(parse_site(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deliver_flags() {
        let cli = Cli::try_parse_from([
            "towerctl",
            "deliver",
            "--site",
            "h:1",
            "--insecure-registry",
            "127.0.0.1:5001",
            "--insecure-registry",
            "reg.local",
            "--platform",
            "linux/arm/v7",
            "--auth-file",
            "/tmp/c.json",
            "nginx",
            "alpine:3.20",
        ])
        .unwrap();
        let Command::Deliver(d) = cli.command else {
            panic!("not deliver")
        };
        assert_eq!(d.site.site, ["h:1"]);
        // Several nodes of the site: repeated or comma-separated.
        let cli = Cli::try_parse_from(["towerctl", "status", "--site", "h:1,h:2", "--site", "h:3"])
            .unwrap();
        let Command::Status { site } = cli.command else {
            panic!("not status")
        };
        assert_eq!(site.site, ["h:1", "h:2", "h:3"]);
        assert_eq!(d.insecure_registries, ["127.0.0.1:5001", "reg.local"]);
        assert_eq!(d.platform.unwrap().to_string(), "linux/arm/v7");
        assert_eq!(d.images.len(), 2);
        assert!(Cli::try_parse_from(["towerctl", "deliver", "--site", "h:1"]).is_err());
        let bad = Cli::try_parse_from([
            "towerctl",
            "deliver",
            "--site",
            "h:1",
            "--platform",
            "linux",
            "x",
        ]);
        assert_eq!(bad.unwrap_err().exit_code(), 2);
    }

    #[test]
    fn other_commands_parse() {
        let ok = |args: &[&str]| {
            Cli::try_parse_from(args)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        ok(&[
            "towerctl",
            "schedule",
            "--site",
            "h:1",
            "web",
            &format!("nginx@{D}"),
        ])
        .unwrap();
        assert!(ok(&["towerctl", "schedule", "--site", "h:1", "web"]).is_err());
        assert!(ok(&["towerctl", "schedule", "--site", "h:1", "web", "nginx"]).is_err());
        ok(&["towerctl", "unschedule", "--site", "h:1", "web"]).unwrap();
        ok(&["towerctl", "pin", "--site", "h:1", &format!("nginx@{D}")]).unwrap();
        ok(&["towerctl", "unpin", "--site", "h:1", &format!("nginx@{D}")]).unwrap();
        ok(&[
            "towerctl",
            "images",
            "--repository",
            "ngi",
            "--app",
            "web",
            "--annotation",
            "k=v",
            "--site",
            "h:1",
        ])
        .unwrap();
        for c in ["apps", "status", "events", "gc"] {
            ok(&["towerctl", c, "--site", "h:1"]).unwrap();
        }
        ok(&["towerctl", "gc", "--site", "h:1", "--dry-run"]).unwrap();
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("7  site out of space"), "{help}");
    }
}
