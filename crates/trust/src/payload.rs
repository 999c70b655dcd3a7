//! The payload a sigstore signature signs ("simple signing", as cosign and
//! containers/image write it): the manifest digest signed and the identity it was signed
//! for. Read strictly, as containers/image reads it: `critical` holds exactly `type`
//! (`cosign container image signature`), `image` (`docker-manifest-digest`) and
//! `identity` (`docker-reference`); `optional` is free.

use serde::Deserialize;
use site_core::Digest;

/// The media type of a signature layer in a `.sig` manifest.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of a signature layer holding the signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload type signed.
const SIGNATURE_TYPE: &str = "cosign container image signature";

/// What a signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The digest of the manifest signed.
    pub manifest_digest: Digest,
    /// The reference it was signed for (`host[:port]/path[:tag]`), as written.
    pub docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)]
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    identity: Identity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

impl Payload {
    /// Reads a payload's bytes (only once its signature verified).
    pub fn parse(bytes: &[u8]) -> Result<Payload, String> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| format!("the signed payload is not a simple signing payload: {e}"))?;
        if raw.critical.kind != SIGNATURE_TYPE {
            return Err(format!(
                "the signed payload is of type {:?}, not {SIGNATURE_TYPE:?}",
                raw.critical.kind
            ));
        }
        let manifest_digest = Digest::parse(&raw.critical.image.digest)
            .map_err(|e| format!("the signed manifest digest is invalid: {e}"))?;
        Ok(Payload {
            manifest_digest,
            docker_reference: raw.critical.identity.reference,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skopeos_payload_reads_and_others_do_not() {
        let p = Payload::parse(crate::keys::tests::PAYLOAD.as_bytes()).unwrap();
        assert_eq!(p.docker_reference, "127.0.0.1:55123/myns/repo:v1");
        assert_eq!(
            p.manifest_digest.to_string(),
            "sha256:65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925"
        );
        let d = "sha256:65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925";
        let other_type = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"a/b"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"atomic container signature"}},"optional":null}}"#
        );
        assert!(Payload::parse(other_type.as_bytes())
            .unwrap_err()
            .contains("of type"));
        let extra = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"a/b"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature","x":1}}}}"#
        );
        assert!(Payload::parse(extra.as_bytes()).is_err());
        assert!(Payload::parse(b"{}").is_err());
    }
}
