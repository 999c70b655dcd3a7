use clap::Parser;
use site_towerd::cli::{Cli, Command, StoreArgs, TokenAction};
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
        Command::Migrate { from, to, to_ca } => {
            let copied = site_towerd::store::move_to_postgres(&from, &to, to_ca.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "moved {} sites, {} rollouts, {} manifests, {} tokens from {} to PostgreSQL",
                copied.sites,
                copied.rollouts,
                copied.manifests,
                copied.tokens,
                from.display()
            );
            Ok(())
        }
        Command::Token { action, store } => token(action, store).await,
    }
}

async fn token(action: TokenAction, at: StoreArgs) -> Result<(), String> {
    let store = match (&at.database, &at.data) {
        (Some(url), _) => {
            site_towerd::store::open_at(None, Some(url), at.database_ca.as_deref()).await
        }
        (None, Some(dir)) => site_towerd::store::open_at(Some(dir), None, None).await,
        (None, None) => return Err("give the tower's --data DIR or --database URL".into()),
    }
    .map_err(|e| e.to_string())?;
    match action {
        TokenAction::Create { name, role } => {
            let Some(role) = site_towerd::access::Role::parse(&role) else {
                return Err(format!("--role is read or write, not {role:?}"));
            };
            if name.is_empty()
                || name.len() > 64
                || name.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(format!(
                    "a token's name is 1 to 64 characters without spaces, not {name:?}"
                ));
            }
            let (secret, hash) = site_towerd::access::new_token()?;
            if !store
                .put_token(&name, role.name(), &hash)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("a token named {name:?} exists (revoke it first)"));
            }
            eprintln!(
                "token {name:?} created with the role {}; it is shown once, here:",
                role.name()
            );
            println!("{secret}");
        }
        TokenAction::Revoke { name } => {
            if !store.revoke_token(&name).await.map_err(|e| e.to_string())? {
                return Err(format!("no token named {name:?}"));
            }
            println!("token {name:?} revoked");
        }
        TokenAction::List => {
            for t in store.tokens().await.map_err(|e| e.to_string())? {
                println!("{}\t{}", t.name, t.role);
            }
        }
    }
    Ok(())
}
