#![deny(missing_docs)]
//! The one upstream registry client of the site registry, used by towerctl to deliver
//! and by a node to fill its pull-through cache: manifests and blob streams through
//! oci-client, credentials from a Docker `config.json` and its credential helpers, and
//! one taxonomy of failures ([`UpstreamError`]).

pub mod auth;
pub mod client;
pub mod error;
mod helper;
mod manifest;

pub use auth::{Credentials, DockerConfig};
pub use client::{reference, registry_auth, Settings, Upstream};
pub use error::UpstreamError;
pub use oci_client::secrets::RegistryAuth;
pub use oci_client::Reference;
