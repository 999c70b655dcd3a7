//! The command line of `towerctl sites ...` and `towerctl rollout ...`: the tower
//! service's client (README, "The tower's fleet service").

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The tower service to talk to, and how to print.
#[derive(Debug, Clone, Args)]
pub struct TowerArg {
    /// The tower service's URL.
    #[arg(
        long,
        global = true,
        env = "TOWERCTL_TOWER",
        value_name = "URL",
        default_value = "http://127.0.0.1:7070"
    )]
    pub tower: String,
    /// The tower's API token (`towerd token create`); sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        env = "TOWERCTL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The CA that signed an HTTPS tower's certificate, when not a system one (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    pub tower_ca: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `towerctl sites ...`.
#[derive(Debug, Subcommand)]
pub enum SitesAction {
    /// Onboard a site.
    Add(AddSite),
    /// List every site.
    List,
    /// The sites a filter selects, e.g. '{"labels.region": {"$in": ["eu"]}}'.
    Query {
        /// The filter, as JSON.
        #[arg(value_name = "FILTER")]
        filter: String,
    },
    /// Ask every node of a site how it is.
    Health {
        /// The site's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Remove a site from the inventory (and from the rollouts it is in).
    Remove {
        /// The site's id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// Arguments of `sites add`.
#[derive(Debug, Args)]
pub struct AddSite {
    /// A name for people, unique in the inventory.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A node's API address (`[api] listen`); repeat for each node.
    #[arg(long = "node", value_name = "HOST:PORT", required = true)]
    pub nodes: Vec<String>,
    /// A label selectors match on; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// A metadata entry (a string); repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// The site's id [default: generated].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The site's CA (PEM), when it speaks TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The tower's client certificate for this site (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
}

/// `towerctl rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Start a rollout of an application's images to the sites a selector picks.
    Create(CreateRollout),
    /// Where a rollout stands, site by site.
    Status {
        /// The rollout's id.
        #[arg(value_name = "ID")]
        id: String,
        /// Follow it until it is complete or cancelled.
        #[arg(long)]
        watch: bool,
    },
    /// Cancel a rollout; sites keep what they hold.
    Cancel {
        /// The rollout's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List the rollouts.
    List,
}

/// Arguments of `rollout create`.
#[derive(Debug, Args)]
pub struct CreateRollout {
    /// The application scheduled on each site.
    #[arg(value_name = "APP")]
    pub application: String,
    /// Its images, by tag or digest (tags are resolved once, at the tower).
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// Which sites: a filter, as JSON ('{}' for every site).
    #[arg(long, value_name = "FILTER", required = true)]
    pub selector: String,
    /// Most sites served at once [default: the tower's, 10].
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<u32>,
    /// Most bytes per second sent to one site.
    #[arg(long, value_name = "BYTES")]
    pub bandwidth: Option<u64>,
    /// Follow it until it is complete.
    #[arg(long)]
    pub watch: bool,
}

/// `KEY=VALUE`.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}
