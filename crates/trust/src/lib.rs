#![deny(missing_docs)]
//! The site's trust policy, checked offline: which images a site may hold, in the format
//! container runtimes already read (`containers-policy.json(5)`, as Podman, CRI-O and
//! skopeo read `/etc/containers/policy.json`), with sigstore signatures stored by the
//! cosign tag scheme (`containers-registries.d(5)`'s `use-sigstore-attachments`).
//!
//! - `policy.rs`: the policy file: `default`, `transports.docker` scopes, the
//!   requirements `insecureAcceptAnything`, `reject` and `sigstoreSigned` (a public key
//!   by `keyPath` or `keyData`, and a `signedIdentity`). What this site cannot check
//!   offline (`fulcio`, Rekor keys) or does not read (`signedBy`, GPG) makes the file
//!   invalid: a policy is never taken as weaker than it reads.
//! - `scope.rs`: which scope's requirements apply to an image (most specific first).
//! - `keys.rs`: public keys (ECDSA P-256, Ed25519) and the check of a signature.
//! - `payload.rs`: the signed "simple signing" payload: the manifest digest and the
//!   identity signed.
//! - `identity.rs`: the `signedIdentity` rules.
//! - `check.rs`: a verdict for an image from its signatures.
//!
//! Nothing here does I/O but read a key file named by the policy while it loads.

mod check;
mod identity;
mod keys;
mod payload;
mod policy;
mod scope;

pub use check::{signature_tag, signatures_in, Accepted, SignatureLayer, Untrusted};
pub use identity::SignedIdentity;
pub use keys::PublicKey;
pub use payload::{Payload, PAYLOAD_MEDIA_TYPE, SIGNATURE_ANNOTATION};
pub use policy::{Policy, PolicyError, Requirement};
