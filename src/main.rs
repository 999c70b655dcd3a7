//! `site-agent`: runs a site node until SIGINT or SIGTERM.

use clap::{Parser, Subcommand};
use site_agent::config::LogFormat;
use site_agent::{init_logging, Config, Site};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "site-agent",
    version,
    about = "Embedded OCI registry of an edge site"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node and run until SIGINT or SIGTERM.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format, overriding `[log] format`.
        #[arg(long, value_parser = ["human", "json"])]
        log_format: Option<String>,
    },
    /// Make an image present on the running node (its EnsureImage call); prints
    /// `DIGEST SIZE SOURCE`. Exit codes: 0 ok, 1 other, 2 invalid request, 3 not found,
    /// 4 authentication failed, 5 upstream unreachable, 6 rate limited, 7 out of space,
    /// 8 node unreachable, 10 not present under the policy Never.
    Ensure {
        /// The node's configuration file (its [api] address and [tls] identity); without
        /// it, the defaults (127.0.0.1:50051, no TLS).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The node's gRPC address, when not its [api] listen (e.g. it listens on port 0).
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// Always, IfNotPresent or Never (default: the node's for the image's registry).
        #[arg(long)]
        policy: Option<String>,
        /// os/arch[/variant] of an index's child to make present (default: the node's).
        #[arg(long)]
        platform: Option<String>,
        /// NAME:TAG, NAME@DIGEST or NAME:TAG@DIGEST.
        image: String,
    },
}

/// The exit status of a node whose storage failed while it ran (sysexits' EX_IOERR).
const NODE_FAILED_EXIT: u8 = 74;

fn main() -> ExitCode {
    let (config, log_format) = match Cli::parse().command {
        Command::Run { config, log_format } => (config, log_format),
        Command::Ensure {
            config,
            api,
            policy,
            platform,
            image,
        } => {
            return ensure(
                config.as_deref(),
                api,
                &image,
                policy.as_deref(),
                platform.as_deref(),
            )
        }
    };
    let mut config = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("site-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(f) = log_format {
        config.log.format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Human
        };
    }
    init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("site-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Its storage failed while it ran: a distinct exit status for the supervisor.
        Err(e) if e.downcast_ref::<site_agent::NodeFailed>().is_some() => {
            tracing::error!("{e:#}");
            eprintln!("site-agent: {e:#}");
            ExitCode::from(NODE_FAILED_EXIT)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("site-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ensure(
    config: Option<&std::path::Path>,
    api: Option<std::net::SocketAddr>,
    image: &str,
    policy: Option<&str>,
    platform: Option<&str>,
) -> ExitCode {
    let mut config = match config
        .map(Config::load)
        .unwrap_or_else(|| Ok(Config::default()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("site-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(api) = api {
        config.api.listen = api;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(site_agent::ensure::ensure(&config, image, policy, platform)),
        Err(e) => {
            eprintln!("site-agent: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let site = Site::start(config).await?;
    let signal = run_until_stopped(&site).await?;
    tracing::info!(signal, "shutting down");
    site.shutdown().await
}

/// Waits for SIGINT or SIGTERM; on SIGHUP, reads the registry's certificates again.
async fn run_until_stopped(site: &site_agent::SiteHandle) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; return Ok("SIGINT") }
            _ = term.recv() => return Ok("SIGTERM"),
            _ = hangup.recv() => {
                let changed = site.reload_certificates();
                tracing::info!(changed, "SIGHUP: registry certificates read again");
            }
        }
    }
}
