//! Repository names and image references, after the distribution reference grammar.
//!
//! A [`Repository`] is always fully qualified (`docker.io/library/nginx`): the site stores
//! and serves by this one canonical form, however a client spelled the name. Docker's
//! normalisation applies: a first component that is not a host (no `.` or `:`, not
//! `localhost`, all lower case) means the default registry, and a one-component name on
//! Docker Hub gets `library/`.

use crate::digest::{Digest, DigestError};
use std::fmt;

/// Longest repository name, host included (distribution's `NameTotalLengthMax`).
pub const NAME_MAX_LEN: usize = 255;
/// Longest tag.
pub const TAG_MAX_LEN: usize = 128;
/// Docker Hub, the registry of names that carry no host in Docker's convention.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

/// Why a name, tag or reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The repository name breaks the grammar or the length limit.
    #[error("invalid repository name {name:?}: {why}")]
    NameInvalid {
        /// The offending name (shortened).
        name: String,
        /// What rule it breaks.
        why: &'static str,
    },
    /// The tag breaks the grammar `[\w][\w.-]{0,127}`.
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    /// The digest part is malformed or of an unsupported algorithm.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

fn name_invalid(name: &str, why: &'static str) -> ReferenceError {
    ReferenceError::NameInvalid {
        name: name.chars().take(150).collect(),
        why,
    }
}

/// A fully qualified repository: registry host (with optional port) and path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    host: String,
    path: String,
}

impl Repository {
    /// Builds a repository from a host and a path, validating both.
    pub fn new(host: &str, path: &str) -> Result<Repository, ReferenceError> {
        let full = format!("{host}/{path}");
        if !valid_domain(host) {
            return Err(name_invalid(
                &full,
                "registry host is not a valid host[:port]",
            ));
        }
        validate_path(path).map_err(|why| name_invalid(&full, why))?;
        let host = canonical_host(host);
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        // The limit holds for the name as it is stored and printed (`docker.io/library/`
        // added), so that every repository taken reads back.
        if host.len() + 1 + path.len() > NAME_MAX_LEN {
            return Err(name_invalid(&full, "longer than 255 characters"));
        }
        Ok(Repository { host, path })
    }

    /// Reads a repository name the way a client wrote it, after Docker's rules: a first
    /// component that looks like a host names the registry, otherwise `default_registry`.
    pub fn parse_normalized(
        name: &str,
        default_registry: &str,
    ) -> Result<Repository, ReferenceError> {
        match split_host(name) {
            Some((host, path)) => Repository::new(host, path),
            None => Repository::new(default_registry, name),
        }
    }

    /// Reads a repository as this registry writes it (`host/path`, the host always
    /// first, as [`fmt::Display`] prints it): the stored form, where a one-word host
    /// (`?ns=harbor`) stays a host rather than becoming a Docker Hub namespace.
    pub fn parse_canonical(name: &str) -> Result<Repository, ReferenceError> {
        match name.split_once('/') {
            Some((host, path)) => Repository::new(host, path),
            None => Err(name_invalid(name, "no host/path")),
        }
    }

    /// Reads the repository of an HTTP request path, as DESIGN's mirror rules say:
    /// containerd's `?ns=HOST` names the registry; without it the name is normalised with
    /// `default_registry`.
    pub fn from_request(
        name: &str,
        ns: Option<&str>,
        default_registry: &str,
    ) -> Result<Repository, ReferenceError> {
        match ns {
            Some(host) if !host.is_empty() => Repository::new(host, name),
            _ => Repository::parse_normalized(name, default_registry),
        }
    }

    /// The registry host, with port if any.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path within the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The shortest name that [`Repository::parse_normalized`] reads back as this
    /// repository: without the host when it is `default_registry`.
    pub fn short_name(&self, default_registry: &str) -> String {
        if self.host == canonical_host(default_registry) && split_host(&self.path).is_none() {
            self.path.clone()
        } else {
            self.to_string()
        }
    }
}

impl serde::Serialize for Repository {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Repository {
    /// Reads the canonical name written by `Serialize` (`host/path`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Repository::parse_canonical(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({self})")
    }
}

/// Docker Hub answers to several names; the site keeps one.
fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

/// Splits `host/path` when the first component is a host in Docker's sense.
fn split_host(name: &str) -> Option<(&str, &str)> {
    let (first, rest) = name.split_once('/')?;
    let is_host = first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase());
    is_host.then_some((first, rest))
}

/// Path grammar: components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty name");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err("empty path component");
        }
        if component == "." || component == ".." {
            return Err("path traversal component");
        }
        if !valid_path_component(component.as_bytes()) {
            return Err(
                "path components must be lower-case [a-z0-9] separated by '.', '_', '__' or '-'",
            );
        }
    }
    Ok(())
}

fn valid_path_component(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // One run of alphanumerics.
        let start = i;
        while i < c.len() && alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        // One separator: '.', '_', '__' or '-'+.
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < c.len() && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < c.len() && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Domain grammar: components `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by `.`,
/// or a bracketed IPv6 address; then an optional `:port`.
fn valid_domain(host: &str) -> bool {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if host.len() > name.len() && port.is_none() {
        return false;
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !name.is_empty()
        && name.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

/// Validates a tag: `[\w][\w.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= TAG_MAX_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::TagInvalid(tag.chars().take(150).collect()))
    }
}

/// An image reference: `[host[:port]/]path[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The fully qualified repository.
    pub repository: Repository,
    /// The tag; `latest` when the reference had neither tag nor digest.
    pub tag: Option<String>,
    /// The digest the reference is pinned to, if any.
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// Parses a reference the way `docker pull` reads it, with `docker.io` as the default
    /// registry.
    pub fn parse(s: &str) -> Result<ImageReference, ReferenceError> {
        ImageReference::parse_with_default(s, DOCKER_HUB)
    }

    /// Parses a reference with the given default registry.
    pub fn parse_with_default(
        s: &str,
        default_registry: &str,
    ) -> Result<ImageReference, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(&t[1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(name_invalid(
                name,
                "cannot be a 64-character hexadecimal string",
            ));
        }
        let repository = Repository::parse_normalized(name, default_registry)?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(ImageReference {
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageReference({self})")
    }
}

#[cfg(test)]
#[path = "reference_test.rs"]
mod tests;
