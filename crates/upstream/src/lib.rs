#![deny(missing_docs)]
//! The one upstream registry client of the site registry, used by towerctl to deliver
//! and by a node to fill its pull-through cache: the distribution API's manifest and
//! blob reads with the registries' token and Basic authentication, credentials from a
//! Docker `config.json` and its credential helpers, and one taxonomy of failures
//! ([`UpstreamError`]).

pub mod auth;
mod authorize;
mod challenge;
pub mod classify;
pub mod client;
pub mod error;
mod helper;
mod manifest;
mod pem;
mod reference;

pub use auth::{Credentials, DockerConfig};
pub use client::{reference, registry_auth, Settings, Upstream};
pub use error::UpstreamError;
pub use manifest::MAX_MANIFEST;
pub use reference::{Reference, RegistryAuth};
