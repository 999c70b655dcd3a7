//! The upstream registry client: the distribution API's blob reads over reqwest (its
//! manifests: `manifest.rs`), with the registry's own authentication (`authorize.rs`),
//! plain HTTP to the hosts configured for it, and bounded reads of everything held in
//! memory.

use crate::auth::Credentials;
use crate::classify;
use crate::error::UpstreamError as Error;
use crate::reference::{Reference, RegistryAuth};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use site_core::{Digest, Repository};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connect timeout towards upstream registries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the next bytes of an upstream response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of an error answer or a token answer read.
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// A stream of blob bytes from the upstream.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The upstream registries of one command (towerctl) or one set of credentials (a node).
/// Clones share the connections, the credentials and the tokens.
#[derive(Clone)]
pub struct Upstream {
    pub(crate) http: reqwest::Client,
    /// Hosts spoken to in plain HTTP.
    plain: Arc<Vec<String>>,
    pub(crate) grants: Arc<Mutex<crate::authorize::Grants>>,
}

/// How an [`Upstream`] client talks to registries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hosts spoken to in plain HTTP.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM, one or several) for upstream TLS.
    pub ca_pem: Vec<u8>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the first or the next bytes of a response.
    pub read_timeout: Duration,
    /// The `User-Agent` sent.
    pub user_agent: &'static str,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            insecure: Vec::new(),
            ca_pem: Vec::new(),
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: READ_TIMEOUT,
            user_agent: concat!("site-registry/", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A host as a registry name spells it: no scheme, no trailing slash.
pub fn bare_host(h: &str) -> String {
    let h = h.trim();
    let h = h
        .strip_prefix("http://")
        .or_else(|| h.strip_prefix("https://"))
        .unwrap_or(h);
    h.trim_end_matches('/').to_owned()
}

/// The reference of a repository and a tag or digest.
pub fn reference(repository: &Repository, tag: Option<&str>, digest: Option<&Digest>) -> Reference {
    let (host, path) = (repository.host().to_owned(), repository.path().to_owned());
    match (digest, tag) {
        (Some(d), _) => Reference::with_digest(host, path, d.to_string()),
        (None, t) => Reference::with_tag(host, path, t.unwrap_or("latest").to_owned()),
    }
}

/// The credentials to ask with: basic when the auth file had some, else anonymous.
pub fn registry_auth(credentials: Option<Credentials>) -> RegistryAuth {
    match credentials {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    }
}

/// Whether an upstream error is a broken link worth a retry.
pub fn is_transient(err: &Error) -> bool {
    matches!(err, Error::Unreachable(_))
}

/// The `Retry-After` of an answer, in seconds (the form registries use; an HTTP date is
/// not read).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// At most `max` bytes of a response body; `None` when it is longer.
pub(crate) async fn read_at_most(
    response: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Option<Vec<u8>>, Error> {
    if response.content_length().is_some_and(|l| l > max) {
        return Ok(None);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| classify::request(&e, what))?;
        if body.len() as u64 + chunk.len() as u64 > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The error of an answer that is not a success, from its status, headers and the start
/// of its body.
pub(crate) async fn refusal(response: reqwest::Response, what: &str) -> Error {
    let code = response.status().as_u16();
    let after = retry_after(response.headers());
    let body = read_at_most(response, SMALL_BODY, what)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    classify::status(code, &body, what, after)
}

impl Upstream {
    /// A client speaking HTTPS, except plain HTTP to the `insecure` hosts, with the
    /// default timeouts (towerctl's).
    pub fn new(insecure: &[String]) -> Result<Upstream, Error> {
        Upstream::with(&Settings {
            insecure: insecure.to_vec(),
            ..Settings::default()
        })
    }

    /// A client with these settings.
    pub fn with(settings: &Settings) -> Result<Upstream, Error> {
        // reqwest is built without a crypto provider: TLS goes through ring. Installing
        // it again (another client, or the binary did) changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain: Vec<String> = settings.insecure.iter().map(|h| bare_host(h)).collect();
        let roots = crate::pem::certificates(&settings.ca_pem)
            .iter()
            .map(|p| reqwest::Certificate::from_pem(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Other(format!("CA certificates: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(settings.user_agent)
            .build()
            .map_err(|e| Error::Other(format!("cannot set up the upstream client: {e}")))?;
        Ok(Upstream {
            http,
            plain: Arc::new(plain),
            grants: Arc::default(),
        })
    }

    /// The URL of `path` (after `/v2/`) at `image`'s registry.
    pub(crate) fn url(&self, image: &Reference, path: &str) -> String {
        let host = image.resolve_registry();
        let plain = self
            .plain
            .iter()
            .any(|h| h == image.registry() || h == host);
        let scheme = if plain { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}/{path}", image.repository())
    }

    /// Streams a whole blob; returns the stream and the length the upstream declared.
    /// The bytes are not verified here: the caller hashes what it keeps.
    pub async fn blob_whole(
        &self,
        image: &Reference,
        digest: &Digest,
    ) -> Result<(ByteStream, Option<u64>), Error> {
        let what = format!("{}@{digest}", image.repository());
        let url = self.url(image, &format!("blobs/{digest}"));
        let response = self.send(image, |c| c.get(&url), &what).await?;
        if !response.status().is_success() {
            return Err(refusal(response, &what).await);
        }
        let length = response.content_length();
        Ok((stream(response), length))
    }

    /// Streams a blob from `offset`. Returns the stream and how many leading bytes of it
    /// to drop (a registry that ignores `Range` sends the whole blob).
    pub async fn blob(
        &self,
        image: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<(ByteStream, u64), Error> {
        if offset == 0 {
            return Ok((self.blob_whole(image, digest).await?.0, 0));
        }
        let what = format!("{}@{digest}", image.repository());
        let url = self.url(image, &format!("blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let response = self
            .send(
                image,
                |c| c.get(&url).header(reqwest::header::RANGE, &range),
                &what,
            )
            .await?;
        match response.status().as_u16() {
            206 => {
                let start = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if start.is_some_and(|s| s != offset) {
                    return Err(Error::Invalid(format!(
                        "{what}: asked for the bytes from {offset}, the upstream sent them from {}",
                        start.unwrap_or_default()
                    )));
                }
                Ok((stream(response), 0))
            }
            200 => Ok((stream(response), offset)),
            _ => Err(refusal(response, &what).await),
        }
    }
}

/// The first byte of a `Content-Range: bytes START-END/SIZE`.
fn range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    v.split('-').next()?.trim().parse().ok()
}

fn stream(response: reqwest::Response) -> ByteStream {
    response
        .bytes_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_pin_the_digest_when_there_is_one() {
        let r = site_core::ImageReference::parse(
            "nginx:1.25@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let o = reference(&r.repository, r.tag.as_deref(), r.digest.as_ref());
        assert_eq!(o.registry(), "docker.io");
        assert_eq!(o.repository(), "library/nginx");
        assert!(o.digest().is_some());
        let r = site_core::ImageReference::parse("localhost:5000/a/b").unwrap();
        let o = reference(&r.repository, r.tag.as_deref(), r.digest.as_ref());
        assert_eq!(o.tag(), Some("latest"));
        assert_eq!(o.registry(), "localhost:5000");
    }

    #[test]
    fn plain_hosts_and_docker_hub() {
        let up = Upstream::new(&["http://localhost:5000/".into(), "docker.io".into()]).unwrap();
        let local = Reference::with_tag("localhost:5000".into(), "a/b".into(), "1".into());
        assert_eq!(
            up.url(&local, "manifests/1"),
            "http://localhost:5000/v2/a/b/manifests/1"
        );
        let hub = Reference::with_tag("docker.io".into(), "library/x".into(), "1".into());
        assert_eq!(
            up.url(&hub, "blobs/d"),
            "http://registry-1.docker.io/v2/library/x/blobs/d"
        );
        let up = Upstream::new(&[]).unwrap();
        assert_eq!(
            up.url(&hub, "blobs/d"),
            "https://registry-1.docker.io/v2/library/x/blobs/d"
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/*"), Some(0));
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
