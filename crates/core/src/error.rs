//! The OCI Distribution error codes, and the one table of their messages.
//!
//! Adapters map these codes once: the HTTP layer to status codes, the gRPC layer to
//! statuses. Domain errors name the code they stand for.

use std::fmt;

/// An error code of the OCI Distribution Specification v1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content, or is malformed.
    DigestInvalid,
    /// A manifest references a blob unknown to the registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length, or is over a limit.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The registry cannot take the request now (a site without a quorum for writes).
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// The spec's short message for the code.
    pub fn message(self) -> &'static str {
        self.entry().1
    }

    fn entry(self) -> (&'static str, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid"),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
            DigestInvalid => (
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                "provided length did not match content length",
            ),
            Unauthorized => ("UNAUTHORIZED", "authentication required"),
            Denied => ("DENIED", "requested access to the resource is denied"),
            Unsupported => ("UNSUPPORTED", "the operation is unsupported"),
            TooManyRequests => ("TOOMANYREQUESTS", "too many requests"),
            Unavailable => ("UNAVAILABLE", "service unavailable"),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
