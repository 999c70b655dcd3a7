use clap::Parser;
use site_towerd::cli::{Cli, Command};
use std::process::ExitCode;
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sled=warn,h2=warn,hyper=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // TLS towards upstreams and sites with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("towerd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(command) = cli.command {
        return match runtime.block_on(run(command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("towerd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = cli.config else {
        eprintln!("towerd: --data is required (towerd --help)");
        return ExitCode::from(2);
    };
    let (stop, shutdown) = watch::channel(false);
    runtime.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    match runtime.block_on(site_towerd::serve(config, shutdown, None)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("towerd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Migrate { from, to } => {
            let copied = site_towerd::store::move_to_postgres(&from, &to)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "moved {} sites, {} rollouts, {} manifests from {} to PostgreSQL",
                copied.sites,
                copied.rollouts,
                copied.manifests,
                from.display()
            );
            Ok(())
        }
    }
}
