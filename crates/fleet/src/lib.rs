#![deny(missing_docs)]
//! The tower's side of a fleet, as pure code: what a site of the inventory is
//! ([`site`]), how the inventory is queried ([`filter`]), and how a rollout moves each
//! selected site from waiting to scheduled ([`rollout`], [`schedule`], [`missing`]).
//!
//! Nothing here reads a clock, a disk or a socket: the tower service (`towerd`) and the
//! fleet simulation (`simulations/fleet`) pass time in milliseconds and report what their
//! links did, so both run the same scheduler, retry and resume arithmetic.

pub mod error;
pub mod filter;
#[cfg(test)]
mod filter_test;
pub mod missing;
pub mod rollout;
#[cfg(test)]
mod rollout_test;
pub mod schedule;
pub mod site;
#[cfg(test)]
mod site_test;

pub use error::Error;
pub use filter::Filter;
pub use rollout::{Rollout, SiteProgress, State};
pub use site::Site;
