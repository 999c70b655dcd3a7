//! The policy file (`containers-policy.json(5)`): a `default` list of requirements and,
//! under `transports.docker`, lists for scopes (`scope.rs`); every requirement of the
//! list that applies must hold. Read strictly, as containers/image reads it: an unknown
//! key, an empty list or a requirement this site cannot check offline makes the whole
//! file invalid, so a policy is never enforced weaker than it reads. Transports other
//! than `docker` do not apply to a registry and are not read.

use crate::check::{verdict, Accepted, SignatureLayer, Untrusted};
use crate::identity::{Reference, SignedIdentity};
use crate::keys::PublicKey;
use crate::scope::scopes;
use base64::Engine as _;
use serde::Deserialize;
use site_core::reference::Repository;
use site_core::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a policy file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trust policy {file}: {why}")]
pub struct PolicyError {
    /// The file (or `inline` for text given directly).
    pub file: String,
    /// What is wrong with it.
    pub why: String,
}

/// One requirement of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Any image.
    InsecureAcceptAnything,
    /// No image.
    Reject,
    /// A sigstore signature by `key`, made for an identity `identity` accepts.
    SigstoreSigned {
        /// The key signatures must verify with.
        key: PublicKey,
        /// Where the key came from (`keyPath`'s file, or `keyData`), for messages.
        key_source: String,
        /// The identities accepted.
        identity: SignedIdentity,
    },
}

impl Requirement {
    /// Its `type`, as the policy names it.
    pub fn name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// A trust policy, its keys loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) default: Vec<Requirement>,
    /// `transports.docker`, by scope.
    pub(crate) docker: BTreeMap<String, Vec<Requirement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Vec<RawRequirement>,
    #[serde(default)]
    transports: BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawRequirement {
    // Struct variants, so that an unknown key beside the type is refused.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    #[serde(rename = "reject")]
    Reject {},
    #[serde(rename = "sigstoreSigned")]
    SigstoreSigned {
        #[serde(rename = "keyPath")]
        key_path: Option<String>,
        #[serde(rename = "keyData")]
        key_data: Option<String>,
        fulcio: Option<serde_json::Value>,
        #[serde(rename = "rekorPublicKeyPath")]
        rekor_path: Option<serde_json::Value>,
        #[serde(rename = "rekorPublicKeyData")]
        rekor_data: Option<serde_json::Value>,
        #[serde(rename = "signedIdentity", default)]
        signed_identity: SignedIdentity,
    },
}

impl Policy {
    /// Reads the policy file at `path`, and the key files it names (a relative
    /// `keyPath` is read from the policy file's directory).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bad = |why: String| PolicyError {
            file: path.display().to_string(),
            why,
        };
        let text = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Policy::parse(&text, dir).map_err(bad)
    }

    /// Reads policy text; relative key paths are read from `dir`.
    pub fn parse(text: &[u8], dir: &Path) -> Result<Policy, String> {
        let raw: RawPolicy = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let default = requirements(raw.default, dir).map_err(|e| format!("default: {e}"))?;
        let mut docker = BTreeMap::new();
        for (scope, list) in raw.transports.get("docker").cloned().unwrap_or_default() {
            let list = list
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<Vec<RawRequirement>, _>>()
                .map_err(|e| format!("transports.docker[{scope:?}]: {e}"))?;
            let list = requirements(list, dir)
                .map_err(|e| format!("transports.docker[{scope:?}]: {e}"))?;
            docker.insert(scope, list);
        }
        Ok(Policy { default, docker })
    }

    /// Whether an image of `repository` (admitted by `tag`, or by its digest without one)
    /// falls under a scope that asks for signatures: the caller then finds them.
    pub fn needs_signatures(
        &self,
        repository: &Repository,
        tag: Option<&str>,
        digest: &Digest,
    ) -> bool {
        let image = Reference::image(repository, tag, digest);
        let (_, list) = self.scope_for(&image);
        list.iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }))
    }

    /// The verdict for the image of `repository` whose manifest has digest `digest`,
    /// admitted by `tag` (or by digest, without one), given the signatures found for
    /// that digest (`check.rs`).
    pub fn check(
        &self,
        repository: &Repository,
        tag: Option<&str>,
        digest: &Digest,
        signatures: &[SignatureLayer],
    ) -> Result<Accepted, Untrusted> {
        let image = Reference::image(repository, tag, digest);
        let (scope, list) = self.scope_for(&image);
        verdict(scope, list, &image, digest, signatures)
    }

    /// The scope that applies to `image` (`default` when none does, `scope.rs`) and its
    /// requirements.
    pub(crate) fn scope_for(&self, image: &Reference) -> (String, &[Requirement]) {
        for scope in scopes(image) {
            if let Some(list) = self.docker.get(&scope) {
                return (scope, list);
            }
        }
        ("default".to_owned(), &self.default)
    }

    /// Whether some image could need a signature under it (a policy of
    /// `insecureAcceptAnything` alone never does).
    pub fn asks_for_signatures(&self) -> bool {
        self.default
            .iter()
            .chain(self.docker.values().flatten())
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }))
    }
}

fn requirements(raw: Vec<RawRequirement>, dir: &Path) -> Result<Vec<Requirement>, String> {
    if raw.is_empty() {
        return Err(
            "the list of requirements is empty (say insecureAcceptAnything or reject)".into(),
        );
    }
    raw.into_iter().map(|r| requirement(r, dir)).collect()
}

fn requirement(raw: RawRequirement, dir: &Path) -> Result<Requirement, String> {
    Ok(match raw {
        RawRequirement::InsecureAcceptAnything {} => Requirement::InsecureAcceptAnything,
        RawRequirement::Reject {} => Requirement::Reject,
        RawRequirement::SigstoreSigned {
            key_path,
            key_data,
            fulcio,
            rekor_path,
            rekor_data,
            signed_identity,
        } => {
            if fulcio.is_some() || rekor_path.is_some() || rekor_data.is_some() {
                return Err("sigstoreSigned with fulcio or a Rekor key needs a certificate authority or transparency log, which a site does not ask offline: give keyPath or keyData".into());
            }
            let (pem, key_source) = match (key_path, key_data) {
                (Some(p), None) => {
                    let file = resolve(dir, &p);
                    let pem = std::fs::read(&file)
                        .map_err(|e| format!("keyPath {}: {e}", file.display()))?;
                    (pem, file.display().to_string())
                }
                (None, Some(d)) => {
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(d.trim())
                        .map_err(|e| format!("keyData is not base64: {e}"))?;
                    (pem, "keyData".to_owned())
                }
                _ => return Err("sigstoreSigned needs exactly one of keyPath and keyData".into()),
            };
            let key = PublicKey::from_pem(&pem).map_err(|e| format!("{key_source}: {e}"))?;
            signed_identity.validate()?;
            Requirement::SigstoreSigned {
                key,
                key_source,
                identity: signed_identity,
            }
        }
    })
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text.as_bytes(), Path::new("/nonexistent"))
    }

    fn key_data() -> String {
        base64::engine::general_purpose::STANDARD.encode(crate::keys::tests::KEY)
    }

    #[test]
    fn a_policy_as_podman_reads_it_loads() {
        let text = format!(
            r#"{{"default":[{{"type":"reject"}}],
               "transports":{{
                 "docker":{{
                   "reg.example:5000/team":[{{"type":"sigstoreSigned","keyData":"{}"}}],
                   "docker.io":[{{"type":"insecureAcceptAnything"}}]
                 }},
                 "docker-daemon":{{"":[{{"type":"insecureAcceptAnything"}}]}}
               }}}}"#,
            key_data()
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.default, vec![Requirement::Reject]);
        match &p.docker["reg.example:5000/team"][0] {
            Requirement::SigstoreSigned { identity, .. } => {
                assert_eq!(*identity, SignedIdentity::MatchRepoDigestOrExact)
            }
            other => panic!("{other:?}"),
        }
        assert!(p.asks_for_signatures());
    }

    #[test]
    fn a_policy_this_site_cannot_enforce_as_written_is_refused() {
        let cases = [
            (r#"{}"#, "missing field `default`"),
            (r#"{"default":[]}"#, "empty"),
            (
                r#"{"default":[{"type":"reject"}],"extra":1}"#,
                "unknown field",
            ),
            (r#"{"default":[{"type":"reject","x":1}]}"#, "unknown field"),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyData":"eA==","signedIdentity":{"type":"matchExact","x":1}}]}"#,
                "unknown field",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned"}]}"#,
                "exactly one of keyPath and keyData",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyPath":"/nonexistent/k.pub"}]}"#,
                "keyPath",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyData":"bm90IGEga2V5","fulcio":{}}]}"#,
                "offline",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyData":"bm90IGEga2V5"}]}"#,
                "keyData",
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"docker":{"a":[]}}}"#,
                "empty",
            ),
        ];
        for (text, why) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        let identity = format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}","signedIdentity":{{"type":"exactReference","dockerReference":"a.example/app"}}}}]}}"#,
            key_data()
        );
        assert!(parse(&identity)
            .unwrap_err()
            .contains("neither tag nor digest"));
    }
}
