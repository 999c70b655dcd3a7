//! `towerctl`, the Control Tower's command line tool: delivers digest-pinned images from
//! upstream registries to an edge site over gRPC (`proto/site.proto`), manages the
//! applications, pins and garbage collection of the site, and is the client of the tower
//! service's fleet API (`towerctl sites ...`, `towerctl rollout ...`).
//!
//! The binary is this crate's `src/main.rs`, which calls [`main`]; it builds none of the
//! node's storage, replication or HTTP server.
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod deliver;
pub mod fleet;
pub mod fleet_cli;
pub mod fleet_watch;
pub mod output;
pub mod progress;
pub mod site;

// What towerd does too (reach a site, send to it, resolve at an upstream, the failure
// taxonomy) lives in the crate both use.
pub use site_delivery::{auth, exit, platform, resolve, transfer, upstream};

use clap::Parser;
use cli::{Cli, Command, NodeAction};
use exit::Error;
use site_proto::pb::ListImagesRequest;
use std::process::ExitCode;

/// Parses `std::env::args`, runs the command, prints a one-line error on stderr and
/// returns the exit code of [`exit::TABLE`].
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    // TLS towards upstream registries with ring (reqwest is built without a provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("towerctl: cannot start the runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("towerctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one command.
pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Deliver(args) => {
            let options = deliver::Options {
                auth_file: args.auth_file.as_deref(),
                insecure_registries: &args.insecure_registries,
                platform: args.platform.as_ref(),
            };
            deliver::deliver(&args.site, &args.images, &options).await
        }
        Command::Schedule { site, app, images } => {
            commands::schedule(&site::connect_any(&site).await?, &app, &images).await
        }
        Command::Unschedule { site, app } => {
            commands::unschedule(&site::connect_any(&site).await?, &app).await
        }
        Command::Pin { site, image } => {
            commands::pin(&site::connect_any(&site).await?, &image, true).await
        }
        Command::Unpin { site, image } => {
            commands::pin(&site::connect_any(&site).await?, &image, false).await
        }
        Command::Images {
            site,
            repository,
            app,
            annotation,
        } => {
            let request = ListImagesRequest {
                repository: repository.unwrap_or_default(),
                application: app.unwrap_or_default(),
                annotation: annotation.unwrap_or_default(),
            };
            commands::images(&site::connect_any(&site).await?, request).await
        }
        Command::Apps { site } => commands::apps(&site::connect_any(&site).await?).await,
        Command::Status { site } => commands::status(&site::connect_any(&site).await?).await,
        Command::Events { site } => commands::events(&site::connect_any(&site).await?).await,
        Command::Node {
            action: NodeAction::Add { site, id, address },
        } => commands::add_node(&site::connect_any(&site).await?, id, &address).await,
        Command::Node {
            action: NodeAction::Remove { site, id },
        } => commands::remove_node(&site::connect_any(&site).await?, id).await,
        Command::Sites { tower, action } => fleet::sites(&tower, action).await,
        Command::Rollout { tower, action } => fleet::rollout(&tower, action).await,
        Command::Gc { site, dry_run } => {
            commands::gc(&site::connect_any(&site).await?, dry_run).await
        }
    }
}
