//! Public keys of `sigstoreSigned` requirements, as cosign and skopeo write them: a PEM
//! `PUBLIC KEY` block holding a SubjectPublicKeyInfo, of an ECDSA P-256 key (what
//! `cosign generate-key-pair` and `skopeo generate-sigstore-key` make) or an Ed25519
//! key. A signature is the key's signature over the exact payload bytes: for ECDSA, DER
//! over the SHA-256 of them; for Ed25519, over the bytes themselves.

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use std::fmt;

/// The SubjectPublicKeyInfo of a P-256 key up to its 65-byte uncompressed point.
const P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The SubjectPublicKeyInfo of an Ed25519 key up to its 32 bytes.
const ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ECDSA over P-256 with SHA-256: the uncompressed point.
    P256(Vec<u8>),
    /// Ed25519: the 32 bytes of the key.
    Ed25519(Vec<u8>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl PublicKey {
    /// Reads the first `PUBLIC KEY` block of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "the key is not PEM text".to_owned())?;
        let begin = "-----BEGIN PUBLIC KEY-----";
        let end = "-----END PUBLIC KEY-----";
        let start = text
            .find(begin)
            .ok_or_else(|| format!("no {begin} block (only public keys are read)"))?;
        let body = &text[start + begin.len()..];
        let stop = body.find(end).ok_or_else(|| format!("no {end} line"))?;
        let b64: String = body[..stop].split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the PEM block is not base64: {e}"))?;
        PublicKey::from_spki(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, String> {
        if der.len() == 91 && der.starts_with(&P256_PREFIX) && der[26] == 0x04 {
            return Ok(PublicKey::P256(der[26..].to_vec()));
        }
        if der.len() == 44 && der.starts_with(&ED25519_PREFIX) {
            return Ok(PublicKey::Ed25519(der[12..].to_vec()));
        }
        Err("unsupported public key: ECDSA P-256 and Ed25519 keys are read".to_owned())
    }

    /// The key's algorithm, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "ECDSA P-256 key",
            PublicKey::Ed25519(_) => "Ed25519 key",
        }
    }

    /// Whether `signature` (base64, as the signature annotation holds it) is this key's
    /// over `payload`.
    pub fn verify(&self, payload: &[u8], signature: &str) -> Result<(), String> {
        let sig = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        let checked = match self {
            PublicKey::P256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(payload, &sig)
            }
            PublicKey::Ed25519(key) => UnparsedPublicKey::new(&ED25519, key).verify(payload, &sig),
        };
        checked.map_err(|_| format!("the signature was not made by the policy's {}", self.kind()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key, payload and signature made by `skopeo generate-sigstore-key` and
    /// `skopeo copy --sign-by-sigstore-private-key` (checked with `openssl dgst -verify`).
    pub(crate) const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElwMF5gPO+KXj+v3ci7muHV/0zCYA
3Q7WXpdE4vuV87XO9Ro/X637DpWLL2RbhifHJfvdVaqNPVuY2oZFaTtpXA==
-----END PUBLIC KEY-----
";
    pub(crate) const PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:55123/myns/repo:v1"},"image":{"docker-manifest-digest":"sha256:65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925"},"type":"cosign container image signature"},"optional":{"creator":"containers/image 5.26.2","timestamp":1796568365}}"#;
    pub(crate) const SIGNATURE: &str = "MEUCIEFUuDvCFTa1FIxaz015Qkj3PpLrwW2gfW7EreaxPzqrAiEA+4obqiYGDlpy8Jg2aEe8th5KX2ZmTDJy3vEFMS4dOZQ=";

    #[test]
    fn a_signature_skopeo_made_verifies_with_its_key_and_nothing_else() {
        let key = PublicKey::from_pem(KEY.as_bytes()).unwrap();
        assert_eq!(key.kind(), "ECDSA P-256 key");
        key.verify(PAYLOAD.as_bytes(), SIGNATURE).unwrap();
        let mut changed = PAYLOAD.as_bytes().to_vec();
        changed[40] ^= 1;
        let e = key.verify(&changed, SIGNATURE).unwrap_err();
        assert!(
            e.contains("not made by the policy's ECDSA P-256 key"),
            "{e}"
        );
        assert!(key.verify(PAYLOAD.as_bytes(), "not base64!").is_err());
    }

    #[test]
    fn keys_of_other_kinds_and_broken_pem_are_refused() {
        assert!(PublicKey::from_pem(b"hello")
            .unwrap_err()
            .contains("no -----BEGIN PUBLIC KEY"));
        let rsa = "-----BEGIN PUBLIC KEY-----\nMCAwDQYJKoZIhvcNAQEBBQADDwAwDAIFAMVqw2UCAwEAAQ==\n-----END PUBLIC KEY-----\n";
        assert!(PublicKey::from_pem(rsa.as_bytes())
            .unwrap_err()
            .contains("unsupported"));
    }

    #[test]
    fn an_ed25519_signature_verifies() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut spki = ED25519_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = PublicKey::from_spki(&spki).unwrap();
        let sig = base64::engine::general_purpose::STANDARD.encode(pair.sign(b"payload"));
        key.verify(b"payload", &sig).unwrap();
        assert!(key.verify(b"payloaD", &sig).is_err());
    }
}
