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
    #[error("images not ready: {}", capped(.0))]
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

/// Most items a refusal lists; the rest are counted.
const LISTED: usize = 10;

fn list(ds: &[Digest]) -> String {
    let shown: Vec<&str> = ds.iter().take(LISTED).map(Digest::as_str).collect();
    with_rest(shown.join(", "), ds.len())
}

fn capped(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(LISTED).map(String::as_str).collect();
    with_rest(shown.join("; "), items.len())
}

fn with_rest(shown: String, total: usize) -> String {
    match total.saturating_sub(LISTED) {
        0 => shown,
        rest => format!("{shown} and {rest} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_counted() {
        let many: Vec<Digest> = (0..200u32).map(|i| Digest::of(&i.to_be_bytes())).collect();
        let text = StateError::ManifestBlobUnknown(many).to_string();
        assert!(
            text.starts_with("manifest references 200 missing"),
            "{text}"
        );
        assert!(text.ends_with(" and 190 more"), "{text}");
        assert!(text.len() < 1200, "{}", text.len());
        let images: Vec<String> = (0..12).map(|i| format!("img{i}")).collect();
        let text = StateError::ImagesNotReady(images).to_string();
        assert!(text.ends_with("img9 and 2 more"), "{text}");
        let two = StateError::ImagesNotReady(vec!["a".into(), "b".into()]).to_string();
        assert_eq!(two, "images not ready: a; b");
    }
}
