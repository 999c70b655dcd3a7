//! Why a command is refused. Every refusal leaves the state exactly as it was.

use site_core::{Digest, ManifestError};

/// A refused command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StateError {
    /// The blob is not in the repository (or not on the site).
    #[error("blob {0} unknown")]
    BlobUnknown(Digest),
    /// The manifest is not in the repository.
    #[error("manifest {0} unknown")]
    ManifestUnknown(String),
    /// The manifest references blobs or manifests that are missing.
    #[error("manifest references {} missing blob(s) or manifest(s): {}", .0.len(), list(.0))]
    ManifestBlobUnknown(Vec<Digest>),
    /// The manifest does not parse, or its digest is not the one expected.
    #[error(transparent)]
    ManifestInvalid(#[from] ManifestError),
    /// An application or pin names images that are not fully present.
    #[error("images not ready: {}", .0.join("; "))]
    ImagesNotReady(Vec<String>),
    /// An argument is malformed: an empty or overlong name, an empty image list.
    #[error("{0}")]
    Invalid(String),
    /// The manifest is referenced by an application or pin and cannot be deleted.
    #[error("{0}")]
    InUse(String),
    /// Unpin or unschedule of something that is not there.
    #[error("{0} not found")]
    NotFound(String),
}

fn list(ds: &[Digest]) -> String {
    ds.iter().map(Digest::as_str).collect::<Vec<_>>().join(", ")
}
