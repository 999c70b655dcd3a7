#![deny(missing_docs)]
//! The tower's fleet API, defined once: every request and response of `towerd`'s JSON
//! API as a Rust type that towerd writes and towerctl reads, so that the two cannot
//! drift apart. With the `openapi` feature, [`openapi::document`] is the OpenAPI 3.1
//! document of every route (`GET /openapi.json`), generated from these types.

pub mod error;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod rollouts;
pub mod sites;

pub use error::{ErrorBody, ErrorDetail};
pub use rollouts::{
    ImageSummary, NewRollout, PullingView, RolloutListing, RolloutSummary, RolloutView,
    SiteProgressView, Totals,
};
pub use sites::{
    NewSite, NewTls, NodeHealth, SiteHealth, SiteListing, SiteQuery, SiteView, TlsView,
};
