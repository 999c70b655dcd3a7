#![deny(missing_docs)]
//! What towerctl and towerd both do to reach a site: resolve images at an upstream
//! registry (`resolve`), send a blob to a site resuming from what it holds (`transfer`),
//! store manifests there (`manifest`), reach a site's nodes with retries and failover
//! (`site`), and the failure taxonomy both report (`exit`: towerctl's exit codes, and the
//! reasons towerd's API answers with).

pub mod exit;
pub mod manifest;
pub mod resolve;
pub mod site;
pub mod transfer;

pub use site_core::platform;
pub use site_upstream::{auth, client as upstream};
