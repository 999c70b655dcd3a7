//! Errors of the node, each naming the OCI error code it stands for.

use site_core::{Digest, ErrorCode, ManifestError};
use site_state::StateError;

/// What went wrong in the node. Request errors carry an OCI code; `Io` and `Db` are
/// failures of the node itself.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The blob is not in the repository.
    #[error("blob {0} unknown to repository")]
    BlobUnknown(Digest),
    /// No upload session with this id in this repository.
    #[error("upload session {0:?} unknown")]
    UploadUnknown(String),
    /// The uploaded bytes do not have the digest the client gave.
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// The digest the client claimed.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// No manifest under this tag or digest in the repository.
    #[error("manifest {0} unknown to repository")]
    ManifestUnknown(String),
    /// The manifest references blobs or manifests the repository does not hold.
    #[error("manifest references {} unknown blob(s) or manifest(s): {}", .0.len(), list(.0))]
    ManifestBlobUnknown(Vec<Digest>),
    /// The manifest does not parse.
    #[error(transparent)]
    ManifestInvalid(#[from] ManifestError),
    /// The body is larger than the configured limit, or its length is wrong.
    #[error("{0}")]
    SizeInvalid(String),
    /// A chunk does not start where the upload stands.
    #[error("chunk starts at {start}, upload stands at {offset}")]
    RangeInvalid {
        /// Where the chunk claimed to start.
        start: u64,
        /// Bytes received so far.
        offset: u64,
    },
    /// The client stopped sending before the body was complete.
    #[error("request body interrupted: {0}")]
    Interrupted(String),
    /// The state machine refused the change (names, images not ready, in use).
    #[error(transparent)]
    Refused(StateError),
    /// The site's log cannot take the change now (no leader, shutting down, not
    /// committed in time). Retry later.
    #[error("the site cannot order changes now: {0}")]
    Unavailable(String),
    /// This node is not the leader; the leader it knows of (0: none). Node-internal:
    /// [`crate::Orderer::execute`] forwards to the leader.
    #[error("this node is not the leader (leader: {0})")]
    NotLeader(u64),
    /// This node's storage failed: it takes no writes (reads of what is intact go on).
    #[error("NODE_FAILED: this node's storage failed ({0}); write through another node")]
    NodeFailed(String),
    /// This node cannot reach its site's leader or a majority of its nodes (it is cut
    /// off): writes go through another node.
    #[error("NO_QUORUM: {0}")]
    NoQuorum(String),
    /// This node leads and is asked to leave: leadership moves to node `{0}` first.
    /// Node-internal: [`crate::Orderer::execute`] waits for the move and forwards.
    #[error("this node leads and is leaving the site: leadership moves to node {0} first")]
    LeaderMoving(u64),
    /// A file operation failed.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The metadata database failed.
    #[error("metadata database error: {0}")]
    Db(#[from] sled::Error),
}

fn list(ds: &[Digest]) -> String {
    ds.iter().map(Digest::as_str).collect::<Vec<_>>().join(", ")
}

impl From<StateError> for NodeError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::BlobUnknown(d) => NodeError::BlobUnknown(d),
            StateError::ManifestUnknown(m) => NodeError::ManifestUnknown(m),
            StateError::ManifestBlobUnknown(ds) => NodeError::ManifestBlobUnknown(ds),
            StateError::ManifestInvalid(m) => NodeError::ManifestInvalid(m),
            other => NodeError::Refused(other),
        }
    }
}

impl NodeError {
    /// Whether the node's disk (or its quota) is full.
    pub fn is_out_of_space(&self) -> bool {
        let io = match self {
            NodeError::Io(e) => e,
            NodeError::Db(sled::Error::Io(e)) => e,
            _ => return false,
        };
        matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    }

    /// The OCI error code of a request error; `None` for failures of the node itself.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            NodeError::BlobUnknown(_) => ErrorCode::BlobUnknown,
            NodeError::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            NodeError::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            NodeError::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            NodeError::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            NodeError::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            NodeError::SizeInvalid(_) => ErrorCode::SizeInvalid,
            NodeError::RangeInvalid { .. } => ErrorCode::BlobUploadInvalid,
            NodeError::Interrupted(_) => ErrorCode::BlobUploadInvalid,
            NodeError::Refused(e) => match e {
                StateError::InUse(_) => ErrorCode::Denied,
                StateError::ImagesNotReady(_) => ErrorCode::ManifestBlobUnknown,
                StateError::NotFound(_) => ErrorCode::ManifestUnknown,
                _ => ErrorCode::ManifestInvalid,
            },
            NodeError::Unavailable(_)
            | NodeError::NotLeader(_)
            | NodeError::LeaderMoving(_)
            | NodeError::NoQuorum(_)
            | NodeError::NodeFailed(_)
            | NodeError::Io(_)
            | NodeError::Db(_) => return None,
        })
    }
}

/// Result of store operations.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;
