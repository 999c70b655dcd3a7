//! A digest-pinned image reference: `repository@sha256:...`.

use site_core::{Digest, ImageReference, ReferenceError, Repository};
use std::fmt;

/// An image as applications and pins name it: a repository and a manifest digest. Tags
/// never appear here: the tower resolves them before it schedules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// The fully qualified repository.
    pub repo: Repository,
    /// The manifest digest the reference is pinned to.
    pub digest: Digest,
}

/// Why a string is not a digest-pinned reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The reference does not parse.
    #[error(transparent)]
    Invalid(#[from] ReferenceError),
    /// The reference has a tag but no digest.
    #[error("{0} is not pinned to a digest (write it as NAME@sha256:...)")]
    NotPinned(String),
}

impl ImageRef {
    /// Parses `name[:tag]@sha256:...`; a reference without a digest is refused. A tag
    /// beside the digest is ignored, as container runtimes do.
    pub fn parse(s: &str, default_registry: &str) -> Result<ImageRef, ImageRefError> {
        let r = ImageReference::parse_with_default(s, default_registry)?;
        match r.digest {
            Some(digest) => Ok(ImageRef {
                repo: r.repository,
                digest,
            }),
            None => Err(ImageRefError::NotPinned(s.chars().take(300).collect())),
        }
    }
}

impl ImageRef {
    /// Reads an image as this registry writes it (`host/path@digest`, see
    /// [`Repository::parse_canonical`]).
    pub fn parse_canonical(s: &str) -> Result<ImageRef, String> {
        let (repo, digest) = s.split_once('@').ok_or_else(|| {
            format!(
                "image {:?} names no digest",
                s.chars().take(300).collect::<String>()
            )
        })?;
        Ok(ImageRef {
            repo: site_core::Repository::parse_canonical(repo).map_err(|e| e.to_string())?,
            digest: site_core::Digest::parse(digest).map_err(|e| e.to_string())?,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repo, self.digest)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageRef::parse_canonical(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_only() {
        let d = Digest::of(b"m");
        let r = ImageRef::parse(&format!("nginx@{d}"), "docker.io").unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{d}"));
        let r2 = ImageRef::parse(&format!("docker.io/library/nginx:1.27@{d}"), "x.io").unwrap();
        assert_eq!(r, r2);
        assert!(matches!(
            ImageRef::parse("nginx:1.27", "docker.io"),
            Err(ImageRefError::NotPinned(_))
        ));
        assert!(matches!(
            ImageRef::parse("", "docker.io"),
            Err(ImageRefError::Invalid(_))
        ));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
    }
}
