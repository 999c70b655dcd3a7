//! Content digests: `sha256:` followed by 64 lower-case hex characters, or `sha512:`
//! followed by 128, the two algorithms the OCI image specification registers.
//!
//! The OCI digest grammar is `algorithm ":" encoded`. Any well-formed digest of another
//! algorithm (`blake3:...`) is recognised and refused as unsupported, so a client learns
//! why rather than seeing a generic parse error.

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

/// A digest algorithm this registry implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Algorithm {
    /// SHA-256: the default, and what every digest this registry computes by itself uses.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in the order of their names.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// Its name in a digest (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Hex characters of its digests.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A validated content digest of a supported algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// `ALGORITHM:` + lower-case hex characters of its length.
    text: String,
}

/// Why a string is not a digest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string does not follow the OCI digest grammar, or a digest of a supported
    /// algorithm is malformed.
    #[error("invalid digest {0:?}")]
    Invalid(String),
    /// A well-formed digest of an algorithm this registry does not implement.
    #[error("unsupported digest algorithm {0:?}: sha256 and sha512 are supported")]
    Unsupported(String),
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let invalid = || DigestError::Invalid(truncate(s));
        let (algorithm, encoded) = s.split_once(':').ok_or_else(invalid)?;
        if !valid_algorithm(algorithm) || !valid_encoded(encoded) {
            return Err(invalid());
        }
        let Some(a) = Algorithm::from_name(algorithm) else {
            return Err(DigestError::Unsupported(truncate(algorithm)));
        };
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if encoded.len() != a.hex_len() || !encoded.bytes().all(lower_hex) {
            return Err(invalid());
        }
        Ok(Digest { text: s.to_owned() })
    }

    /// The digest of `algorithm` whose raw output is `bytes`.
    pub fn from_raw(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        Digest {
            text: format!("{}:{}", algorithm.name(), hex::encode(bytes)),
        }
    }

    /// The digest of raw 32 bytes of sha256 output.
    pub fn from_sha256(bytes: &[u8]) -> Digest {
        Digest::from_raw(Algorithm::Sha256, bytes)
    }

    /// The sha256 digest of a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        Digest::of_with(Algorithm::Sha256, data)
    }

    /// The `algorithm` digest of a byte slice.
    pub fn of_with(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = DigestHasher::with(algorithm);
        h.update(data);
        h.finish()
    }

    /// Whether `data` has this digest (hashed with this digest's algorithm).
    pub fn matches(&self, data: &[u8]) -> bool {
        Digest::of_with(self.algorithm(), data) == *self
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        if self.text.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// The full text, `ALGORITHM:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hex characters after `ALGORITHM:`.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm().name().len() + 1..]
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

/// The running state of one algorithm.
#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Incremental hashing over a stream of chunks, sha256 unless asked for another
/// algorithm. Cloneable, so an upload can keep its running state between requests.
#[derive(Clone)]
pub struct DigestHasher {
    inner: State,
    len: u64,
}

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::with(Algorithm::Sha256)
    }
}

impl DigestHasher {
    /// A sha256 hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hasher of `algorithm` that has seen no bytes.
    pub fn with(algorithm: Algorithm) -> Self {
        let inner = match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        DigestHasher { inner, len: 0 }
    }

    /// A hasher of the algorithm of `d`, to check bytes against it.
    pub fn for_digest(d: &Digest) -> Self {
        DigestHasher::with(d.algorithm())
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
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
        match self.inner {
            State::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            State::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_512: &str = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn parses_sha256() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.as_str(), EMPTY);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(Digest::of(b""), d);
        assert_eq!(DigestHasher::new().finish(), d);
        assert!(d.matches(b""));
    }

    #[test]
    fn parses_and_computes_sha512() {
        let d = Digest::parse(EMPTY_512).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hex().len(), 128);
        assert_eq!(Digest::of_with(Algorithm::Sha512, b""), d);
        assert_eq!(DigestHasher::for_digest(&d).finish(), d);
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
        let mut h = DigestHasher::with(Algorithm::Sha512);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), Digest::of_with(Algorithm::Sha512, b"abc"));
        // The sha256 digest of the same bytes is another digest.
        assert_ne!(Digest::of(b""), d);
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
            // A sha512 digest must have 128 hex characters, a sha256 one 64.
            &format!("sha512:{}", "a".repeat(64)),
            &format!("sha256:{}", "a".repeat(128)),
            &format!("sha512:{}", "A".repeat(128)),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn recognises_other_algorithms_as_unsupported() {
        assert!(matches!(
            Digest::parse("blake3:abcd"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Digest::parse("sha384:abcd"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"),
            Err(DigestError::Unsupported(_))
        ));
    }

    #[test]
    fn serde_round_trip() {
        for text in [EMPTY, EMPTY_512] {
            let d = Digest::parse(text).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        }
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
    }
}
