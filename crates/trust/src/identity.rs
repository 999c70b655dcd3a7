//! `signedIdentity`: which identity a signature must have been made for, given the
//! reference the image is admitted under. As containers/image compares them: a name is
//! `host[:port]/path` after Docker's normalisation (`busybox` is
//! `docker.io/library/busybox`), a reference is the name with `:tag` or `@digest`.

use serde::Deserialize;
use site_core::reference::{validate_tag, Repository, DOCKER_HUB};
use site_core::Digest;
use std::fmt;

/// A reference as a signature or a policy writes it, or as an image is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `host[:port]/path`, normalised.
    pub(crate) name: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<Digest>,
}

impl Reference {
    /// Reads `[host[:port]/]path[:tag][@digest]`, keeping a name alone as it is (no
    /// `latest` added).
    pub(crate) fn parse(s: &str) -> Result<Reference, String> {
        let bad = |e: String| format!("invalid reference {s:?}: {e}");
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(e.to_string()))?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(t[1..].to_owned()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(|e| bad(e.to_string()))?;
        }
        let repository =
            Repository::parse_normalized(name, DOCKER_HUB).map_err(|e| bad(e.to_string()))?;
        Ok(Reference {
            name: repository.to_string(),
            tag,
            digest,
        })
    }

    /// An image admitted under `repository`, by `tag` or (without one) by `digest`.
    pub(crate) fn image(repository: &Repository, tag: Option<&str>, digest: &Digest) -> Reference {
        Reference {
            name: repository.to_string(),
            tag: tag.map(str::to_owned),
            digest: tag.is_none().then(|| digest.clone()),
        }
    }

    fn name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Which identities a signature may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawIdentity")]
pub enum SignedIdentity {
    /// The image's reference exactly (tag or digest included).
    MatchExact,
    /// The image's reference exactly when it has a tag; its repository when it is by
    /// digest. The default.
    #[default]
    MatchRepoDigestOrExact,
    /// The image's repository, any tag.
    MatchRepository,
    /// This reference (`host/path:tag` or `host/path@digest`), whatever the image's.
    ExactReference {
        /// The reference.
        docker_reference: String,
    },
    /// This repository (`host/path`), whatever the image's.
    ExactRepository {
        /// The repository.
        docker_repository: String,
    },
    /// An image under `prefix` (`host[:port]` or `host[:port]/path`) is matched (as
    /// `matchRepoDigestOrExact`) as if it were under `signed_prefix`: images copied
    /// from where they were signed.
    RemapIdentity {
        /// Where the image is now.
        prefix: String,
        /// What `prefix` was when the image was signed.
        signed_prefix: String,
    },
}

/// `signedIdentity` as the policy writes it: every variant a struct, so that an unknown
/// key beside `type` is refused.
#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawIdentity {
    #[serde(rename = "matchExact")]
    MatchExact {},
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    #[serde(rename = "exactReference")]
    ExactReference {
        #[serde(rename = "dockerReference")]
        docker_reference: String,
    },
    #[serde(rename = "exactRepository")]
    ExactRepository {
        #[serde(rename = "dockerRepository")]
        docker_repository: String,
    },
    #[serde(rename = "remapIdentity")]
    RemapIdentity {
        prefix: String,
        #[serde(rename = "signedPrefix")]
        signed_prefix: String,
    },
}

impl From<RawIdentity> for SignedIdentity {
    fn from(raw: RawIdentity) -> SignedIdentity {
        match raw {
            RawIdentity::MatchExact {} => SignedIdentity::MatchExact,
            RawIdentity::MatchRepoDigestOrExact {} => SignedIdentity::MatchRepoDigestOrExact,
            RawIdentity::MatchRepository {} => SignedIdentity::MatchRepository,
            RawIdentity::ExactReference { docker_reference } => {
                SignedIdentity::ExactReference { docker_reference }
            }
            RawIdentity::ExactRepository { docker_repository } => {
                SignedIdentity::ExactRepository { docker_repository }
            }
            RawIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            },
        }
    }
}

impl SignedIdentity {
    /// Refuses what can never match: an `exactReference` without tag or digest,
    /// references that do not parse, prefixes with a tag or digest.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            SignedIdentity::ExactReference { docker_reference }
                if Reference::parse(docker_reference)?.name_only() =>
            {
                return Err(format!(
                    "exactReference {docker_reference:?} has neither tag nor digest"
                ));
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                let r = Reference::parse(docker_repository)?;
                if !r.name_only() {
                    return Err(format!(
                        "exactRepository {docker_repository:?} is a repository, without tag or digest"
                    ));
                }
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                for p in [prefix, signed_prefix] {
                    let path = p.split_once('/').map_or("", |(_, path)| path);
                    if p.contains('@') || path.contains(':') {
                        return Err(format!("remapIdentity prefix {p:?} has a tag or digest"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a signature made for `signed` stands for `image`.
    pub(crate) fn matches(&self, image: &Reference, signed: &Reference) -> bool {
        match self {
            SignedIdentity::MatchExact => {
                !image.name_only() && !signed.name_only() && signed.to_string() == image.to_string()
            }
            SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(image, signed),
            SignedIdentity::MatchRepository => signed.name == image.name,
            SignedIdentity::ExactReference { docker_reference } => {
                Reference::parse(docker_reference)
                    .is_ok_and(|r| r.to_string() == signed.to_string())
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                Reference::parse(docker_repository).is_ok_and(|r| r.name == signed.name)
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let under = image.name == *prefix || image.name.starts_with(&format!("{prefix}/"));
                if !under {
                    return repo_digest_or_exact(image, signed);
                }
                let remapped = image
                    .to_string()
                    .replacen(prefix.as_str(), signed_prefix, 1);
                Reference::parse(&remapped).is_ok_and(|r| repo_digest_or_exact(&r, signed))
            }
        }
    }
}

/// `matchRepoDigestOrExact`: a signature of a name alone never matches; a tagged image
/// needs its exact reference, an image by digest its repository.
fn repo_digest_or_exact(image: &Reference, signed: &Reference) -> bool {
    if signed.name_only() {
        return false;
    }
    if image.tag.is_none() && image.digest.is_some() {
        return signed.name == image.name;
    }
    signed.to_string() == image.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    const D: &str = "sha256:65855d7eaf01d6d664dfafe2cd651fd2cae08a09f7b9e259d960e7b5a4cdd925";

    #[test]
    fn references_normalise_as_docker_does_and_keep_a_name_alone() {
        assert_eq!(r("busybox:1").to_string(), "docker.io/library/busybox:1");
        assert!(r("reg.example:5000/ns/app").name_only());
        assert_eq!(r("reg.example:5000/ns/app").name, "reg.example:5000/ns/app");
        assert_eq!(
            r(&format!("h.example/a@{D}")).digest.unwrap().to_string(),
            D
        );
        assert!(Reference::parse("has space/app").is_err());
        assert!(Reference::parse("h.example/app:bad tag").is_err());
    }

    #[test]
    fn each_rule_compares_what_containers_image_compares() {
        let tagged = r("h.example/ns/app:v1");
        let by_digest = r(&format!("h.example/ns/app@{D}"));
        let rule = SignedIdentity::MatchRepoDigestOrExact;
        assert!(rule.matches(&tagged, &r("h.example/ns/app:v1")));
        assert!(!rule.matches(&tagged, &r("h.example/ns/app:v2")));
        assert!(
            !rule.matches(&tagged, &r("h.example/ns/app")),
            "a name alone never matches"
        );
        assert!(rule.matches(&by_digest, &r("h.example/ns/app:v1")));
        assert!(!rule.matches(&by_digest, &r("h.example/ns/other:v1")));
        let exact = SignedIdentity::MatchExact;
        assert!(exact.matches(&tagged, &r("h.example/ns/app:v1")));
        assert!(!exact.matches(&by_digest, &r("h.example/ns/app:v1")));
        let repo = SignedIdentity::MatchRepository;
        assert!(repo.matches(&tagged, &r("h.example/ns/app:v9")));
        assert!(repo.matches(&tagged, &r("h.example/ns/app")));
        assert!(!repo.matches(&tagged, &r("h.example/ns/other:v1")));
        let fixed = SignedIdentity::ExactReference {
            docker_reference: "signer.example/app:1".into(),
        };
        assert!(fixed.matches(&tagged, &r("signer.example/app:1")));
        assert!(!fixed.matches(&tagged, &r("h.example/ns/app:v1")));
        let fixed_repo = SignedIdentity::ExactRepository {
            docker_repository: "signer.example/app".into(),
        };
        assert!(fixed_repo.matches(&tagged, &r("signer.example/app:7")));
        let remap = SignedIdentity::RemapIdentity {
            prefix: "h.example/ns".into(),
            signed_prefix: "upstream.example/team".into(),
        };
        assert!(remap.matches(&tagged, &r("upstream.example/team/app:v1")));
        assert!(!remap.matches(&tagged, &r("h.example/ns/app:v1")));
        let elsewhere = r("other.example/ns/app:v1");
        assert!(remap.matches(&elsewhere, &r("other.example/ns/app:v1")));
    }

    #[test]
    fn rules_that_can_never_match_are_refused() {
        let e = SignedIdentity::ExactReference {
            docker_reference: "a.example/app".into(),
        };
        assert!(e.validate().unwrap_err().contains("neither tag nor digest"));
        let e = SignedIdentity::ExactRepository {
            docker_repository: "a.example/app:1".into(),
        };
        assert!(e.validate().is_err());
    }
}
