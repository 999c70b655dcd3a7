//! The one table from store and state errors to gRPC statuses.

use site_node::NodeError;
use site_state::StateError;
use tonic::{Code, Status};

/// The gRPC status of a store error. Failures of the node itself are logged here and
/// reported as `INTERNAL` without detail.
pub fn status(e: NodeError) -> Status {
    let code = match &e {
        NodeError::BlobUnknown(_) | NodeError::UploadUnknown(_) | NodeError::ManifestUnknown(_) => {
            Code::NotFound
        }
        NodeError::DigestMismatch { .. } => Code::DataLoss,
        NodeError::ManifestBlobUnknown(_) | NodeError::RangeInvalid { .. } => {
            Code::FailedPrecondition
        }
        NodeError::ManifestInvalid(_) | NodeError::SizeInvalid(_) => Code::InvalidArgument,
        NodeError::Interrupted(_) => Code::Aborted,
        NodeError::Unavailable(_) | NodeError::NotLeader(_) | NodeError::LeaderMoving(_) => {
            Code::Unavailable
        }
        NodeError::NoQuorum(_) | NodeError::NodeFailed(_) => {
            // The message starts with the reason, and the details carry it (as
            // `EnsureImage`'s failures): towerctl goes on with another node at once.
            let reason = match &e {
                NodeError::NoQuorum(_) => "NO_QUORUM",
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
        NodeError::Refused(r) => match r {
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
        NodeError::Io(_) | NodeError::Db(_) => {
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
        let s = status(NodeError::Refused(StateError::NotFound(name)));
        assert!(s.message().len() < 2100, "{}", s.message().len());
        assert!(s.message().ends_with(" more bytes)"), "{}", s.message());
        let s = invalid("address", "x".repeat(20_000));
        assert!(s.message().len() < 2100);
        let short = status(NodeError::Refused(StateError::NotFound("pos".into())));
        assert_eq!(short.message(), "pos not found");
    }

    #[test]
    fn a_full_disk_is_resource_exhausted_and_other_io_failures_internal() {
        let full = NodeError::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(status(full).code(), Code::ResourceExhausted);
        let quota = NodeError::Io(std::io::Error::from_raw_os_error(122));
        assert_eq!(status(quota).code(), Code::ResourceExhausted, "EDQUOT");
        let enospc = NodeError::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(status(enospc).code(), Code::ResourceExhausted, "ENOSPC");
        let other = NodeError::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let s = status(other);
        assert_eq!(s.code(), Code::Internal);
        assert!(
            !s.message().contains("denied"),
            "no detail: {}",
            s.message()
        );
    }
}
