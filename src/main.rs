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
}

fn main() -> ExitCode {
    let Command::Run { config, log_format } = Cli::parse().command;
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
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("site-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let site = Site::start(config).await?;
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    site.shutdown().await
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r?; Ok("SIGINT") }
        _ = term.recv() => Ok("SIGTERM"),
    }
}
