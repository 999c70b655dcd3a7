//! The one table from store and state errors to gRPC statuses.

use site_state::StateError;
use site_store::StoreError;
use tonic::{Code, Status};

/// The gRPC status of a store error. Failures of the node itself are logged here and
/// reported as `INTERNAL` without detail.
pub fn status(e: StoreError) -> Status {
    let code = match &e {
        StoreError::BlobUnknown(_)
        | StoreError::UploadUnknown(_)
        | StoreError::ManifestUnknown(_) => Code::NotFound,
        StoreError::DigestMismatch { .. } => Code::DataLoss,
        StoreError::ManifestBlobUnknown(_) | StoreError::RangeInvalid { .. } => {
            Code::FailedPrecondition
        }
        StoreError::ManifestInvalid(_) | StoreError::SizeInvalid(_) => Code::InvalidArgument,
        StoreError::Interrupted(_) => Code::Aborted,
        StoreError::Unavailable(_) | StoreError::NotLeader(_) => Code::Unavailable,
        StoreError::Refused(r) => match r {
            StateError::ImagesNotReady(_) | StateError::InUse(_) => Code::FailedPrecondition,
            StateError::NotFound(_)
            | StateError::BlobUnknown(_)
            | StateError::ManifestUnknown(_) => Code::NotFound,
            StateError::ManifestBlobUnknown(_) => Code::FailedPrecondition,
            StateError::Invalid(_) | StateError::ManifestInvalid(_) => Code::InvalidArgument,
        },
        StoreError::Io(_) | StoreError::Db(_) => {
            tracing::error!(error = %e, "storage failure");
            return Status::internal("storage failure on the site; see its log");
        }
    };
    Status::new(code, e.to_string())
}

/// `INVALID_ARGUMENT` for a malformed field.
pub fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}
