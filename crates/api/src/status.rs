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
        StoreError::Unavailable(_) | StoreError::NotLeader(_) | StoreError::LeaderMoving(_) => {
            Code::Unavailable
        }
        StoreError::NoQuorum(_) | StoreError::NodeFailed(_) => {
            // The message starts with the reason, and the details carry it (as
            // `EnsureImage`'s failures): towerctl goes on with another node at once.
            let reason = match &e {
                StoreError::NoQuorum(_) => "NO_QUORUM",
                _ => "NODE_FAILED",
            };
            let message = bounded(e.to_string());
            let details = tonic_types::ErrorDetails::with_error_info(
                reason,
                crate::ensure::DOMAIN,
                [("message".to_owned(), message.clone())],
            );
            return <Status as tonic_types::StatusExt>::with_error_details(
                Code::Unavailable,
                message,
                details,
            );
        }
        StoreError::Refused(r) => match r {
            StateError::ImagesNotReady(_) | StateError::InUse(_) => Code::FailedPrecondition,
            StateError::NotFound(_)
            | StateError::BlobUnknown(_)
            | StateError::ManifestUnknown(_) => Code::NotFound,
            StateError::ManifestBlobUnknown(_) => Code::FailedPrecondition,
            StateError::Invalid(_) | StateError::ManifestInvalid(_) => Code::InvalidArgument,
        },
        _ if e.is_out_of_space() => {
            tracing::error!(error = %e, "the site's disk is full");
            return Status::resource_exhausted(format!(
                "site out of space: {e}; free space or let GC remove what no application needs"
            ));
        }
        StoreError::Io(_) | StoreError::Db(_) => {
            tracing::error!(error = %e, "storage failure");
            return Status::internal("storage failure on the site; see its log");
        }
    };
    Status::new(code, bounded(e.to_string()))
}

/// `INVALID_ARGUMENT` for a malformed field.
pub fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(bounded(format!("{field}: {e}")))
}

/// Longest message a status carries: standard gRPC clients refuse response metadata
/// over 16 KiB (the message travels in it, percent-encoded, beside the details).
const MESSAGE_MAX: usize = 2048;

/// `message`, cut to [`MESSAGE_MAX`] bytes with how much was left out, so that a caller's
/// long input or a long list never makes the answer one clients cannot read.
pub fn bounded(mut message: String) -> String {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let total = message.len();
    let mut end = MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes)", total - end));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_whatever_they_quote() {
        let name = "é".repeat(10_000);
        let s = status(StoreError::Refused(StateError::NotFound(name)));
        assert!(s.message().len() < 2100, "{}", s.message().len());
        assert!(s.message().ends_with(" more bytes)"), "{}", s.message());
        let s = invalid("address", "x".repeat(20_000));
        assert!(s.message().len() < 2100);
        let short = status(StoreError::Refused(StateError::NotFound("pos".into())));
        assert_eq!(short.message(), "pos not found");
    }

    #[test]
    fn a_full_disk_is_resource_exhausted_and_other_io_failures_internal() {
        let full = StoreError::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(status(full).code(), Code::ResourceExhausted);
        let quota = StoreError::Io(std::io::Error::from_raw_os_error(122));
        assert_eq!(status(quota).code(), Code::ResourceExhausted, "EDQUOT");
        let enospc = StoreError::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(status(enospc).code(), Code::ResourceExhausted, "ENOSPC");
        let other = StoreError::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let s = status(other);
        assert_eq!(s.code(), Code::Internal);
        assert!(
            !s.message().contains("denied"),
            "no detail: {}",
            s.message()
        );
    }
}
