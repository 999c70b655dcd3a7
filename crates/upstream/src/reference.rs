//! What a request to an upstream names: a repository at a registry host, by tag or by
//! digest, and the credentials it is asked with.

use std::fmt;

/// A repository at the registry host contacted, and a tag or a digest in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// `registry/repository:tag`.
    pub fn with_tag(registry: String, repository: String, tag: String) -> Reference {
        Reference {
            registry,
            repository,
            tag: Some(tag),
            digest: None,
        }
    }

    /// `registry/repository@digest`.
    pub fn with_digest(registry: String, repository: String, digest: String) -> Reference {
        Reference {
            registry,
            repository,
            tag: None,
            digest: Some(digest),
        }
    }

    /// The registry as named (`docker.io`, `host:port`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host the registry's API answers on: Docker Hub's is `registry-1.docker.io`.
    pub fn resolve_registry(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        }
    }

    /// The repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What the manifest request asks for: the digest, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The whole reference as text (`registry/repository:tag@digest`).
    pub fn whole(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The credentials a registry is asked with. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials: anonymous pulls (and anonymous tokens).
    #[default]
    Anonymous,
    /// A user name and password (or token), sent as HTTP Basic to the registry or to its
    /// token service, whichever the registry asks for.
    Basic(String, String),
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic(user, _) => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_print_and_resolve() {
        let r = Reference::with_tag("docker.io".into(), "library/nginx".into(), "1".into());
        assert_eq!(r.whole(), "docker.io/library/nginx:1");
        assert_eq!(r.resolve_registry(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::with_digest("h:5000".into(), "a/b".into(), d.clone());
        assert_eq!(r.whole(), format!("h:5000/a/b@{d}"));
        assert_eq!(r.resolve_registry(), "h:5000");
        assert_eq!(r.manifest_reference(), d);
    }

    #[test]
    fn passwords_are_not_printed() {
        let a = RegistryAuth::Basic("robot".into(), "s3cret".into());
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
