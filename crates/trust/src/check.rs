//! A verdict for an image: the requirements of its scope, each of which must hold. A
//! `sigstoreSigned` requirement holds when one of the image's signatures (the layers of
//! its `sha256-<hex>.sig` manifest) verifies with the key, signs this very manifest
//! digest and was made for an identity the rule accepts.

use crate::identity::Reference;
use crate::keys::PublicKey;
use crate::payload::{Payload, PAYLOAD_MEDIA_TYPE, SIGNATURE_ANNOTATION};
use crate::policy::Requirement;
use crate::SignedIdentity;
use site_core::{Digest, Manifest, ManifestKind};

/// One signature of an image: the payload signed (a layer's bytes) and the signature
/// (its annotation, base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The payload's bytes.
    pub payload: Vec<u8>,
    /// The signature, base64.
    pub signature: String,
}

/// An image the policy admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The scope whose requirements it met.
    pub scope: String,
    /// Whether a signature was needed (and found).
    pub signed: bool,
}

/// An image the policy refuses: the scope, the requirement that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (trust policy scope {scope:?}, requirement {requirement})")]
pub struct Untrusted {
    /// The scope that applied (`default` when none did).
    pub scope: String,
    /// The requirement's `type`.
    pub requirement: String,
    /// Why it failed.
    pub reason: String,
}

/// The tag of the manifest holding the signatures of manifest `d` (`sha256-<hex>.sig`).
pub fn signature_tag(d: &Digest) -> String {
    format!("{}-{}.sig", d.algorithm().name(), d.hex())
}

/// The signature layers of a `.sig` manifest: each layer of the simple signing media
/// type with a signature annotation, as (payload blob digest, signature). Other layers
/// are not signatures and are skipped.
pub fn signatures_in(manifest: &[u8]) -> Vec<(Digest, String)> {
    let Ok(m) = Manifest::parse(manifest, None) else {
        return Vec::new();
    };
    let ManifestKind::Image { layers, .. } = m.kind else {
        return Vec::new();
    };
    layers
        .into_iter()
        .filter(|l| l.media_type == PAYLOAD_MEDIA_TYPE)
        .filter_map(|l| Some((l.digest, l.annotations.get(SIGNATURE_ANNOTATION)?.clone())))
        .collect()
}

/// The verdict of `list`, the requirements of `scope`, for `image` (manifest `digest`)
/// with `signatures`: every requirement must hold.
pub(crate) fn verdict(
    scope: String,
    list: &[Requirement],
    image: &Reference,
    digest: &Digest,
    signatures: &[SignatureLayer],
) -> Result<Accepted, Untrusted> {
    let mut signed = false;
    for requirement in list {
        let failed = |reason: String| Untrusted {
            scope: scope.clone(),
            requirement: requirement.name().to_owned(),
            reason,
        };
        match requirement {
            Requirement::InsecureAcceptAnything => {}
            Requirement::Reject => {
                return Err(failed(format!(
                    "the policy rejects every image of {scope:?}"
                )))
            }
            Requirement::SigstoreSigned {
                key,
                key_source,
                identity,
            } => {
                signed_by(key, identity, image, digest, signatures)
                    .map_err(|e| failed(format!("{e} (key {key_source})")))?;
                signed = true;
            }
        }
    }
    Ok(Accepted { scope, signed })
}

/// Whether one of `signatures` stands for `image` (manifest `digest`) under `key` and
/// `identity`.
fn signed_by(
    key: &PublicKey,
    identity: &SignedIdentity,
    image: &Reference,
    digest: &Digest,
    signatures: &[SignatureLayer],
) -> Result<(), String> {
    if signatures.is_empty() {
        return Err(format!(
            "image {image} is not signed: a signature is required"
        ));
    }
    let mut reasons = Vec::new();
    for s in signatures {
        match one(key, identity, image, digest, s) {
            Ok(()) => return Ok(()),
            Err(e) => reasons.push(e),
        }
    }
    if let [only] = reasons.as_slice() {
        return Err(only.clone());
    }
    Err(format!(
        "none of the {} signatures of {image} is accepted: {}",
        reasons.len(),
        reasons.join("; ")
    ))
}

fn one(
    key: &PublicKey,
    identity: &SignedIdentity,
    image: &Reference,
    digest: &Digest,
    s: &SignatureLayer,
) -> Result<(), String> {
    key.verify(&s.payload, &s.signature)?;
    let payload = Payload::parse(&s.payload)?;
    if payload.manifest_digest != *digest {
        return Err(format!(
            "the signature is of manifest {}, not {digest}",
            payload.manifest_digest
        ));
    }
    let signed = Reference::parse(&payload.docker_reference)?;
    if !identity.matches(image, &signed) {
        return Err(format!(
            "the signature was made for {}, which does not stand for {image}",
            payload.docker_reference
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{KEY, PAYLOAD, SIGNATURE};
    use crate::Policy;
    use base64::Engine as _;
    use site_core::reference::Repository;

    const DIGEST: &str = "sha256:65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925";

    fn policy(identity: &str) -> Policy {
        let data = base64::engine::general_purpose::STANDARD.encode(KEY);
        let text = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
                "127.0.0.1:55123/myns":[{{"type":"sigstoreSigned","keyData":"{data}"{identity}}}],
                "127.0.0.1:55123/open":[{{"type":"insecureAcceptAnything"}}]}}}}}}"#
        );
        Policy::parse(text.as_bytes(), std::path::Path::new("/")).unwrap()
    }

    fn repo(s: &str) -> Repository {
        Repository::parse_canonical(s).unwrap()
    }

    fn skopeos() -> Vec<SignatureLayer> {
        vec![SignatureLayer {
            payload: PAYLOAD.as_bytes().to_vec(),
            signature: SIGNATURE.to_owned(),
        }]
    }

    #[test]
    fn a_signed_image_passes_under_its_own_repository_and_digest_only() {
        let p = policy("");
        let d = Digest::parse(DIGEST).unwrap();
        let r = repo("127.0.0.1:55123/myns/repo");
        assert!(p.needs_signatures(&r, Some("v1"), &d));
        let ok = p.check(&r, Some("v1"), &d, &skopeos()).unwrap();
        assert_eq!(
            ok,
            Accepted {
                scope: "127.0.0.1:55123/myns".into(),
                signed: true
            }
        );
        // By digest: the repository is what counts.
        p.check(&r, None, &d, &skopeos()).unwrap();
        // Another tag, another repository, another digest: refused.
        let e = p.check(&r, Some("v2"), &d, &skopeos()).unwrap_err();
        assert!(
            e.reason.contains("made for 127.0.0.1:55123/myns/repo:v1"),
            "{e}"
        );
        assert_eq!(e.requirement, "sigstoreSigned");
        let e = p
            .check(&repo("127.0.0.1:55123/myns/other"), None, &d, &skopeos())
            .unwrap_err();
        assert!(e.reason.contains("does not stand for"), "{e}");
        let other = Digest::of(b"another manifest");
        let e = p.check(&r, Some("v1"), &other, &skopeos()).unwrap_err();
        assert!(e.reason.contains("is of manifest"), "{e}");
    }

    #[test]
    fn unsigned_wrongly_signed_and_rejected_images_are_refused_with_their_scope() {
        let p = policy("");
        let d = Digest::parse(DIGEST).unwrap();
        let r = repo("127.0.0.1:55123/myns/repo");
        let e = p.check(&r, Some("v1"), &d, &[]).unwrap_err();
        assert!(e.reason.contains("not signed"), "{e}");
        assert_eq!(e.scope, "127.0.0.1:55123/myns");
        let mut forged = skopeos();
        forged[0].payload[20] ^= 1;
        forged.push(skopeos()[0].clone());
        forged[1].signature = base64::engine::general_purpose::STANDARD.encode([1u8; 70]);
        let e = p.check(&r, Some("v1"), &d, &forged).unwrap_err();
        assert!(e.reason.contains("none of the 2 signatures"), "{e}");
        let e = p
            .check(&repo("elsewhere.io/app"), Some("v1"), &d, &[])
            .unwrap_err();
        assert_eq!(
            (e.scope.as_str(), e.requirement.as_str()),
            ("default", "reject")
        );
        let open = p
            .check(&repo("127.0.0.1:55123/open/app"), Some("x"), &d, &[])
            .unwrap();
        assert!(!open.signed);
    }

    #[test]
    fn match_repository_takes_any_tag() {
        let p = policy(r#","signedIdentity":{"type":"matchRepository"}"#);
        let d = Digest::parse(DIGEST).unwrap();
        p.check(
            &repo("127.0.0.1:55123/myns/repo"),
            Some("v2"),
            &d,
            &skopeos(),
        )
        .unwrap();
    }

    #[test]
    fn signature_layers_are_read_from_a_sig_manifest_as_skopeo_writes_it() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:5927c51a9d54fcdf2176dc20b51276057eca17861932743e7b12b84e548cbd92","size":153},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:0217ff503d8415c0097e1a35c182b709bc34aace8f8eecdb3cf6cc84efb3d027","size":300,"annotations":{"dev.cosignproject.cosign/signature":"MEUCIEFUuDvCFTa1FIxaz015Qkj3PpLrwW2gfW7EreaxPzqrAiEA+4obqiYGDlpy8Jg2aEe8th5KX2ZmTDJy3vEFMS4dOZQ="}}]}"#;
        let layers = signatures_in(m.as_bytes());
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].0, Digest::of(PAYLOAD.as_bytes()));
        assert_eq!(layers[0].1, SIGNATURE);
        let d = Digest::parse(DIGEST).unwrap();
        assert_eq!(
            signature_tag(&d),
            "sha256-65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925.sig"
        );
    }
}
