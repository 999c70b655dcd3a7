//! The whole sled keyspace of a node, drawn and built in this one file.
//!
//! ```text
//! tree            key                                   value
//! blobs           digest                                blob size, u64 big-endian
//! repo_blobs      repo \0 digest                        (empty)   blob linked into repo
//! manifests       digest                                ManifestRecord (media type, bytes)
//! repo_manifests  repo \0 digest                        (empty)   manifest in repo
//! tags            repo \0 tag                           digest
//! referrers       repo \0 subject \0 referrer digest    Descriptor JSON
//! repos           repo                                  (empty)   repository has content
//! uploads         upload id                             UploadRecord JSON
//! ```
//!
//! `repo` is the canonical repository name (`docker.io/library/nginx`) and `digest` its
//! text form (`sha256:<hex>`). Neither can contain `\0`, so `\0` separates key parts and
//! a `repo \0` prefix scans one repository.

use serde::{Deserialize, Serialize};
use site_core::{Digest, Repository};

/// Tree of blob sizes by digest.
pub const BLOBS: &str = "blobs";
/// Tree of blob links into repositories.
pub const REPO_BLOBS: &str = "repo_blobs";
/// Tree of manifest bodies by digest.
pub const MANIFESTS: &str = "manifests";
/// Tree of manifest memberships of repositories.
pub const REPO_MANIFESTS: &str = "repo_manifests";
/// Tree of tags.
pub const TAGS: &str = "tags";
/// Tree of referrers (manifests with a `subject`).
pub const REFERRERS: &str = "referrers";
/// Tree of repositories that hold content.
pub const REPOS: &str = "repos";
/// Tree of open upload sessions.
pub const UPLOADS: &str = "uploads";

const SEP: u8 = 0;

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(p);
    }
    key
}

/// Key of `blobs` and `manifests`.
pub fn digest_key(d: &Digest) -> Vec<u8> {
    d.as_str().as_bytes().to_vec()
}

/// Key of `repos`.
pub fn repo_key(r: &Repository) -> Vec<u8> {
    r.to_string().into_bytes()
}

/// Prefix of every key of one repository in `repo_blobs`, `repo_manifests`, `tags`.
pub fn repo_prefix(r: &Repository) -> Vec<u8> {
    let mut k = repo_key(r);
    k.push(SEP);
    k
}

/// Key of `repo_blobs` and `repo_manifests`.
pub fn repo_digest_key(r: &Repository, d: &Digest) -> Vec<u8> {
    join(&[r.to_string().as_bytes(), d.as_str().as_bytes()])
}

/// Key of `tags`.
pub fn tag_key(r: &Repository, tag: &str) -> Vec<u8> {
    join(&[r.to_string().as_bytes(), tag.as_bytes()])
}

/// Prefix of the referrers of `subject` in `r`.
pub fn referrers_prefix(r: &Repository, subject: &Digest) -> Vec<u8> {
    let mut k = join(&[r.to_string().as_bytes(), subject.as_str().as_bytes()]);
    k.push(SEP);
    k
}

/// Key of `referrers`.
pub fn referrer_key(r: &Repository, subject: &Digest, referrer: &Digest) -> Vec<u8> {
    let mut k = referrers_prefix(r, subject);
    k.extend_from_slice(referrer.as_str().as_bytes());
    k
}

/// The last `\0`-separated part of a key (the tag or digest after a repo prefix).
pub fn last_part(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == SEP) {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

/// Value of `blobs`.
pub fn encode_size(size: u64) -> [u8; 8] {
    size.to_be_bytes()
}

/// Reads a value of `blobs`.
pub fn decode_size(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// A stored manifest: its media type and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The media type it was stored with.
    pub media_type: String,
    /// The bytes exactly as pushed; their sha256 is the manifest's digest.
    pub body: Vec<u8>,
}

impl ManifestRecord {
    /// Encoding: media type length (u16 BE), media type, body.
    pub fn encode(&self) -> Vec<u8> {
        let mt = self.media_type.as_bytes();
        let mut v = Vec::with_capacity(2 + mt.len() + self.body.len());
        v.extend_from_slice(&(mt.len() as u16).to_be_bytes());
        v.extend_from_slice(mt);
        v.extend_from_slice(&self.body);
        v
    }

    /// Reads an encoded record; `None` if it is damaged.
    pub fn decode(v: &[u8]) -> Option<ManifestRecord> {
        let len = u16::from_be_bytes(v.get(..2)?.try_into().ok()?) as usize;
        let media_type = String::from_utf8(v.get(2..2 + len)?.to_vec()).ok()?;
        Some(ManifestRecord {
            media_type,
            body: v[2 + len..].to_vec(),
        })
    }
}

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Canonical name of the repository the blob will be linked into.
    pub repo: String,
    /// Seconds since the Unix epoch when the session was opened.
    pub started: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_record_round_trip() {
        let r = ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            body: b"{\"a\":1}".to_vec(),
        };
        assert_eq!(ManifestRecord::decode(&r.encode()), Some(r));
        assert_eq!(ManifestRecord::decode(&[0, 9, b'x']), None);
    }

    #[test]
    fn keys_split_back() {
        let r = Repository::parse_normalized("a/b", "docker.io").unwrap();
        let d = Digest::of(b"x");
        assert!(repo_digest_key(&r, &d).starts_with(&repo_prefix(&r)));
        assert_eq!(last_part(&repo_digest_key(&r, &d)), d.as_str().as_bytes());
        assert_eq!(last_part(&tag_key(&r, "v1")), b"v1");
        assert_eq!(last_part(&referrer_key(&r, &d, &d)), d.as_str().as_bytes());
        // "a/b" must not be a prefix match of "a/bc".
        let r2 = Repository::parse_normalized("a/bc", "docker.io").unwrap();
        assert!(!tag_key(&r2, "v").starts_with(&repo_prefix(&r)));
    }
}
