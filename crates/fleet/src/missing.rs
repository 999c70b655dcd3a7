//! The missing-blob arithmetic: a rollout sends each site only the blobs it lacks, and of
//! a blob it holds part of, only the rest.

use serde::{Deserialize, Serialize};

/// A blob by digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// `ALGORITHM:HEX`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// The blobs of several images, each once, in first-seen order.
pub fn union<'a>(images: impl IntoIterator<Item = &'a [Blob]>) -> Vec<Blob> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for blobs in images {
        for blob in blobs {
            if seen.insert(blob.digest.as_str()) {
                out.push(blob.clone());
            }
        }
    }
    out
}

/// Bytes still to send for missing blobs given as `(size, bytes the site holds of it)`.
pub fn bytes_to_send(missing: &[(u64, u64)]) -> u64 {
    missing
        .iter()
        .map(|(size, held)| size.saturating_sub(*held))
        .sum()
}

/// The blobs of `all` that the site named missing, as `all` describes them. A site may
/// only name blobs it was asked about: anything else is an error (its text says which).
pub fn to_send(all: &[Blob], named: &[String]) -> Result<Vec<Blob>, String> {
    named
        .iter()
        .map(|digest| {
            all.iter()
                .find(|b| &b.digest == digest)
                .cloned()
                .ok_or_else(|| {
                    format!("the site names {digest:?} missing, which it was not asked about")
                })
        })
        .collect()
}

/// What a whole-image re-send costs: every blob of every image, shared ones included.
pub fn whole_images<'a>(images: impl IntoIterator<Item = &'a [Blob]>) -> u64 {
    images
        .into_iter()
        .flat_map(|blobs| blobs.iter().map(|b| b.size))
        .sum()
}
