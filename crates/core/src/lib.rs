#![deny(missing_docs)]
//! Domain core of the site registry.
//!
//! Rule of this crate: it knows nothing of HTTP, gRPC, Raft or storage. It holds the
//! vocabulary every adapter shares (digests, repository names and image references,
//! manifests and the descriptors they reference, the OCI error codes) and pure
//! functions over it.

pub mod application;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod platform;
pub mod reference;

pub use application::check_application_name;
pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use error::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use platform::Platform;
pub use reference::{ImageReference, ReferenceError, Repository};
