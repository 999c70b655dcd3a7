//! `towerd`'s command line.

use clap::{Args, Parser, Subcommand};
use site_fleet::schedule::Backoff;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// towerd: the Control Tower's fleet service (site inventory, health, rollouts).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "towerd",
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Something else than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How the tower serves (without a command).
    #[command(flatten)]
    pub config: Option<Config>,
}

/// What towerd does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Moves a tower's state from its embedded store to PostgreSQL (an empty database;
    /// the source is only read). Stop the tower first.
    Migrate {
        /// The data directory of the tower whose state moves (its `db`).
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The PostgreSQL database it moves to (a libpq URL).
        #[arg(long, value_name = "postgres://USER[:PASSWORD]@HOST[:PORT]/DB")]
        to: String,
        /// Reach it over TLS, its certificate verified against this CA (PEM).
        #[arg(long, value_name = "FILE")]
        to_ca: Option<PathBuf>,
    },
    /// Makes, revokes or lists the API's bearer tokens (in the tower's store: give
    /// --data or --database as to towerd).
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
        /// Where the tower keeps its state.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The token commands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Makes a token; prints it alone on the last line (it is not kept: only its hash).
    Create {
        /// Its name (to revoke it by; shown in the tower's log).
        name: String,
        /// `read` (list and query) or `write` (also create, change, cancel).
        #[arg(long, value_name = "read|write")]
        role: String,
    },
    /// Revokes a token: requests with it are refused from then on.
    Revoke {
        /// Its name.
        name: String,
    },
    /// Lists the tokens' names and roles.
    List,
}

/// Where the tower's state is, for the commands that open it.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The tower's data directory (its embedded store).
    #[arg(long, global = true, env = "TOWERD_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The tower's PostgreSQL database instead.
    #[arg(
        long,
        global = true,
        env = "TOWERD_DATABASE",
        value_name = "postgres://...",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Reach the database over TLS, its certificate verified against this CA (PEM).
    #[arg(long, global = true, env = "TOWERD_DATABASE_CA", value_name = "FILE")]
    pub database_ca: Option<PathBuf>,
}

/// How towerd serves.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory of the tower's embedded database (unless --database) and of its
    /// registry (unless --registry).
    #[arg(long, env = "TOWERD_DATA", value_name = "DIR")]
    pub data: PathBuf,
    /// Keep the tower's state in this PostgreSQL database (a libpq URL) instead of the
    /// embedded store under --data; its schema is created and migrated at start. Every
    /// towerd given the same database is a replica of one tower.
    #[arg(
        long,
        env = "TOWERD_DATABASE",
        value_name = "postgres://USER[:PASSWORD]@HOST[:PORT]/DB",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Reach the database over TLS (always: no fallback to plain TCP), its certificate
    /// verified against this CA (PEM) and the host of --database.
    #[arg(
        long,
        env = "TOWERD_DATABASE_CA",
        value_name = "FILE",
        requires = "database"
    )]
    pub database_ca: Option<PathBuf>,
    /// HTTPS on the API: its certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS on the API: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Clients may present a certificate this CA issued (with --tls-cert); its
    /// organisational unit is its role, `read` or `write`. Every request then needs a
    /// certificate or a token.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Address of the JSON API and the status page. Other than loopback only with
    /// users (a token made by `towerd token create`, or --client-ca).
    #[arg(
        long,
        env = "TOWERD_LISTEN",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7070"
    )]
    pub listen: SocketAddr,
    /// Docker config.json with upstream credentials for the default registry, instead of
    /// the default one.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Upstream host the default registry speaks to in plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Wait before the first retry of a failed site; doubles with each retry.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub retry_first: Duration,
    /// Longest wait between two attempts at a site.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,
    /// How long an attempt at a site waits while every node answers that it knows no
    /// leader (a site electing one) before the attempt counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_wait: Duration,
    /// The tower's registry: a `site-agent.toml` for its embedded node (listen, TLS,
    /// users, `[pull]`, `[gc]`, cluster peers). Default: a single node under
    /// DATA/registry on 127.0.0.1:5100 that fills itself from upstreams (IfNotPresent).
    #[arg(long, env = "TOWERD_REGISTRY", value_name = "FILE")]
    pub registry: Option<PathBuf>,
}

impl Config {
    /// The tower's settings.
    pub fn settings(&self) -> crate::tower::Settings {
        crate::tower::Settings {
            backoff: Backoff {
                first_ms: self.retry_first.as_millis().max(1) as u64,
                max_ms: self.retry_max.as_millis().max(1) as u64,
            },
            leader_wait: self.leader_wait,
            users_required: self.client_ca.is_some() || !self.listen.ip().is_loopback(),
        }
    }
}
