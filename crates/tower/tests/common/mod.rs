//! Fakes shared by the integration tests.
#![allow(dead_code)]

pub mod proxy;
pub mod registry;
pub mod site;
