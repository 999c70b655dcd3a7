//! Content digests: `sha256:` followed by 64 lower-case hex characters.
//!
//! The OCI digest grammar is `algorithm ":" encoded`. Any well-formed digest of another
//! algorithm (`sha512:...`, `blake3:...`) is recognised and refused as unsupported, so a
//! client learns why rather than seeing a generic parse error.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// A validated `sha256` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// Always `sha256:` + 64 lower-case hex characters.
    text: String,
}

/// Why a string is not a digest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string does not follow the OCI digest grammar, or a sha256 digest is malformed.
    #[error("invalid digest {0:?}")]
    Invalid(String),
    /// A well-formed digest of an algorithm this registry does not implement.
    #[error("unsupported digest algorithm {0:?}: only sha256 is supported")]
    Unsupported(String),
}

const SHA256_PREFIX: &str = "sha256:";

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let invalid = || DigestError::Invalid(truncate(s));
        let (algorithm, encoded) = s.split_once(':').ok_or_else(invalid)?;
        if !valid_algorithm(algorithm) || !valid_encoded(encoded) {
            return Err(invalid());
        }
        if algorithm != "sha256" {
            return Err(DigestError::Unsupported(truncate(algorithm)));
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if encoded.len() != 64 || !encoded.bytes().all(lower_hex) {
            return Err(invalid());
        }
        Ok(Digest { text: s.to_owned() })
    }

    /// The digest of raw 32 bytes of sha256 output.
    pub fn from_sha256(bytes: &[u8]) -> Digest {
        Digest {
            text: format!("{SHA256_PREFIX}{}", hex::encode(bytes)),
        }
    }

    /// The digest of a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256(&Sha256::digest(data))
    }

    /// The full text, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.text[SHA256_PREFIX.len()..]
    }
}

/// Digest grammar: `component ([+._-] component)*`, component = `[a-z0-9]+`.
fn valid_algorithm(a: &str) -> bool {
    !a.is_empty()
        && a.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Digest grammar: encoded = `[a-zA-Z0-9=_-]+`.
fn valid_encoded(e: &str) -> bool {
    !e.is_empty()
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// Keeps error messages (and the log lines they end up in) short for hostile input.
fn truncate(s: &str) -> String {
    s.chars().take(150).collect()
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 over a stream of chunks. Cloneable, so an upload can keep its
/// running state between requests.
#[derive(Clone, Default)]
pub struct DigestHasher {
    inner: Sha256,
    len: u64,
}

impl DigestHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no bytes were fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_sha256(&self.inner.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_sha256() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.as_str(), EMPTY);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(Digest::of(b""), d);
        assert_eq!(DigestHasher::new().finish(), d);
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:../../etc/passwd",
            "sha256:e3b0/c44",
            "sha-:abc",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn recognises_other_algorithms_as_unsupported() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(
            Digest::parse(&sha512),
            Err(DigestError::Unsupported("sha512".into()))
        );
        assert!(matches!(
            Digest::parse("blake3:abcd"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"),
            Err(DigestError::Unsupported(_))
        ));
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::parse(EMPTY).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
    }
}
