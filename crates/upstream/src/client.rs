//! The upstream registry, through oci-client: manifests, blob streams, error classification.

use crate::auth::Credentials;
use crate::error::{chain, one_line, UpstreamError as Error};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use site_core::manifest::MANIFEST_MEDIA_TYPES;
use site_core::{Digest, Repository};
use std::time::Duration;

/// Connect timeout towards upstream registries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the next bytes of an upstream response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream of blob bytes from the upstream.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The upstream registries of one command (towerctl) or one set of credentials (a node).
#[derive(Clone)]
pub struct Upstream {
    pub(crate) client: Client,
    /// For the reads oci-client does not bound (`manifest.rs`).
    pub(crate) http: reqwest::Client,
    /// Hosts spoken to in plain HTTP.
    pub(crate) plain: Vec<String>,
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

/// The sha256 of manifest `body`, checked against the digest the registry `reported`
/// (when given) and the one `image` pins (when it pins one).
pub(crate) fn checked_digest(
    image: &Reference,
    body: &[u8],
    reported: Option<&str>,
) -> Result<Digest, Error> {
    let digest = Digest::of(body);
    if let Some(r) = reported.filter(|r| *r != digest.as_str()) {
        return Err(Error::Invalid(format!(
            "{}: the registry reports digest {r} for a manifest whose sha256 is {digest}",
            image.whole()
        )));
    }
    if let Some(pinned) = image.digest().filter(|p| *p != digest.as_str()) {
        return Err(Error::Invalid(format!(
            "{}: the registry sent a manifest of digest {digest} for {pinned}",
            image.whole()
        )));
    }
    Ok(digest)
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

/// The certificates of a PEM file, each as its own PEM block.
fn split_pem(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    out
}

/// The oci-client reference of a repository and a tag or digest.
pub fn reference(repository: &Repository, tag: Option<&str>, digest: Option<&Digest>) -> Reference {
    let (host, path) = (repository.host().to_owned(), repository.path().to_owned());
    match (digest, tag) {
        (Some(d), _) => Reference::with_digest(host, path, d.to_string()),
        (None, t) => Reference::with_tag(host, path, t.unwrap_or("latest").to_owned()),
    }
}

/// The oci-client credentials: basic when the auth file had some, else anonymous.
pub fn registry_auth(credentials: Option<Credentials>) -> RegistryAuth {
    match credentials {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    }
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
        // oci-client is built without a crypto provider: TLS goes through ring. Installing
        // it again (another client, or the binary did) changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut hosts: Vec<String> = settings.insecure.iter().map(|h| bare_host(h)).collect();
        // oci-client names Docker Hub `index.docker.io` when it picks the scheme.
        if hosts.iter().any(|h| h == "docker.io") {
            hosts.push("index.docker.io".to_owned());
        }
        let pems = split_pem(&settings.ca_pem);
        let extra_root_certificates = pems
            .iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data: data.clone(),
            })
            .collect();
        let roots = pems
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
        let config = ClientConfig {
            protocol: if hosts.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(hosts.clone())
            },
            platform_resolver: None,
            connect_timeout: Some(settings.connect_timeout),
            read_timeout: Some(settings.read_timeout),
            user_agent: settings.user_agent,
            extra_root_certificates,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::Other(format!("cannot set up the upstream client: {e}")))?;
        Ok(Upstream {
            client,
            http,
            plain: hosts,
        })
    }

    /// The digest the upstream gives for `image` (a tag), by a HEAD request.
    pub async fn manifest_digest(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Digest, Error> {
        let reported = self
            .client
            .fetch_manifest_digest(image, auth)
            .await
            .map_err(|e| classify(&e, &image.whole()))?;
        Digest::parse(&reported).map_err(|e| {
            Error::Invalid(format!(
                "{}: the registry reports a digest that is not one: {e}",
                image.whole()
            ))
        })
    }

    /// Fetches a manifest's exact bytes (any of the four manifest media types) and checks
    /// that their sha256 is the digest the registry gave and the one `image` pins, if any.
    pub async fn manifest(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Bytes, Digest), Error> {
        let (body, reported) = self
            .client
            .pull_manifest_raw(image, auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| classify(&e, &image.whole()))?;
        let digest = checked_digest(image, &body, Some(&reported))?;
        Ok((body, digest))
    }

    /// Makes `auth` the credentials of `image`'s registry for this client, if it has none
    /// yet. Manifest requests do this themselves; blob requests (oci-client's) do not,
    /// so a client that starts with a blob calls this first.
    pub async fn remember_auth(&self, image: &Reference, auth: &RegistryAuth) {
        self.client
            .store_auth_if_needed(image.resolve_registry(), auth)
            .await;
    }

    /// Streams a whole blob; returns the stream and the length the upstream declared.
    /// The bytes are not verified here: the caller hashes what it keeps.
    pub async fn blob_whole(
        &self,
        image: &Reference,
        digest: &Digest,
    ) -> Result<(ByteStream, Option<u64>), Error> {
        let what = format!("{}@{digest}", image.repository());
        let s = self
            .client
            .pull_blob_stream(image, digest.as_str())
            .await
            .map_err(|e| classify(&e, &what))?;
        Ok((s.stream, s.content_length))
    }

    /// Streams a blob from `offset`. Returns the stream and how many leading bytes of it
    /// to drop (a registry that ignores `Range` sends the whole blob).
    pub async fn blob(
        &self,
        image: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<(ByteStream, u64), Error> {
        let what = format!("{}@{digest}", image.repository());
        if offset == 0 {
            let s = self
                .client
                .pull_blob_stream(image, digest.as_str())
                .await
                .map_err(|e| classify(&e, &what))?;
            return Ok((s.stream, 0));
        }
        match self
            .client
            .pull_blob_stream_partial(image, digest.as_str(), offset, None)
            .await
            .map_err(|e| classify(&e, &what))?
        {
            BlobResponse::Partial(s) => Ok((s.stream, 0)),
            BlobResponse::Full(s) => Ok((s.stream, offset)),
        }
    }
}

/// Whether an upstream error is a broken link worth a retry.
pub fn is_transient(err: &Error) -> bool {
    matches!(err, Error::Unreachable(_))
}

/// The error, and so the exit code, an oci-client error means. `what` names the object.
pub fn classify(err: &OciDistributionError, what: &str) -> Error {
    use OciDistributionError as E;
    let text = || format!("{what}: {}", chain(err));
    match err {
        E::AuthenticationFailure(reason) => Error::AuthFailed(format!(
            "{what}: token request refused: {}",
            one_line(reason)
        )),
        E::UnauthorizedError { .. } => Error::AuthFailed(format!(
            "{what}: unauthorized (missing or wrong credentials, or no such repository)"
        )),
        E::ImageManifestNotFoundError(_) => Error::NotFound(text()),
        E::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{}: {}", code_name(&e.code), e.message))
                .collect();
            let message = format!("{what}: {}", one_line(&messages.join("; ")));
            let has = |c: &OciErrorCode| codes.contains(&c);
            if has(&OciErrorCode::Toomanyrequests) {
                Error::rate_limited(message)
            } else if has(&OciErrorCode::Unauthorized) || has(&OciErrorCode::Denied) {
                Error::AuthFailed(message)
            } else if has(&OciErrorCode::ManifestUnknown)
                || has(&OciErrorCode::NameUnknown)
                || has(&OciErrorCode::NotFound)
                || has(&OciErrorCode::BlobUnknown)
            {
                Error::NotFound(message)
            } else {
                Error::Other(format!("upstream registry error: {message}"))
            }
        }
        E::ServerError { code, message, .. } => {
            let message = format!("{what}: HTTP {code}: {}", one_line(message));
            match code {
                404 => Error::NotFound(message),
                401 | 403 => Error::AuthFailed(message),
                429 => Error::rate_limited(message),
                408 | 502 | 503 | 504 => Error::Unreachable(message),
                _ => Error::Other(format!("upstream registry error: {message}")),
            }
        }
        // reqwest's error: oci-client does not re-export the type, so it is not named here.
        E::RequestError(e) => {
            if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
                Error::Unreachable(text())
            } else {
                match e.status().map(|s| s.as_u16()) {
                    Some(404) => Error::NotFound(text()),
                    Some(401 | 403) => Error::AuthFailed(text()),
                    Some(429) => Error::rate_limited(text()),
                    _ => Error::Other(format!("upstream: {}", text())),
                }
            }
        }
        E::IoError(e) => classify_io(e, what),
        _ => Error::Other(format!("upstream: {}", text())),
    }
}

/// An OCI error code as the spec spells it (`MANIFEST_UNKNOWN`).
fn code_name(code: &OciErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{code:?}"),
    }
}

/// Whether a stream error is oci-client's own digest check failing (the bytes were all
/// sent, but are not the blob's).
pub fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|i| i.downcast_ref::<DigestError>().is_some())
}

/// The error an upstream stream broke with: bytes that fail their digest are fatal; any
/// other failure is a broken link.
pub fn classify_io(e: &std::io::Error, what: &str) -> Error {
    let digest_error = e.get_ref().and_then(|i| i.downcast_ref::<DigestError>());
    match digest_error {
        Some(d) => Error::Invalid(format!("{what}: the upstream sent bad bytes: {d}")),
        None => Error::Unreachable(format!("{what}: {}", chain(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};

    fn server(code: u16) -> &'static str {
        classify(
            &OciDistributionError::ServerError {
                code,
                url: "u".into(),
                message: "m".into(),
            },
            "img",
        )
        .reason()
    }

    fn envelope(code: OciErrorCode) -> Error {
        classify(
            &OciDistributionError::RegistryError {
                envelope: OciEnvelope {
                    errors: vec![OciError {
                        code,
                        message: "msg".into(),
                        detail: serde_json::Value::Null,
                    }],
                },
                url: "u".into(),
            },
            "img",
        )
    }

    #[test]
    fn http_statuses() {
        assert_eq!(server(404), "NOT_FOUND");
        assert_eq!(server(401), "AUTH_FAILED");
        assert_eq!(server(403), "AUTH_FAILED");
        assert_eq!(server(429), "RATE_LIMITED");
        assert_eq!(server(503), "UNREACHABLE");
        assert_eq!(server(500), "UNREACHABLE");
    }

    #[test]
    fn envelope_codes() {
        use OciErrorCode as C;
        assert_eq!(envelope(C::ManifestUnknown).reason(), "NOT_FOUND");
        assert_eq!(envelope(C::NameUnknown).reason(), "NOT_FOUND");
        assert_eq!(envelope(C::Unauthorized).reason(), "AUTH_FAILED");
        assert_eq!(envelope(C::Denied).reason(), "AUTH_FAILED");
        assert_eq!(envelope(C::Toomanyrequests).reason(), "RATE_LIMITED");
        assert!(matches!(
            envelope(C::Other("LOCKED".into())),
            Error::Other(_)
        ));
        let e = envelope(C::ManifestUnknown).to_string();
        assert!(e.contains("MANIFEST_UNKNOWN: msg"), "{e}");
    }

    #[test]
    fn auth_failures() {
        let e = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert_eq!(classify(&e, "img").reason(), "AUTH_FAILED");
        let e = OciDistributionError::AuthenticationFailure("bad\ntoken".into());
        let e = classify(&e, "img");
        assert_eq!(e.reason(), "AUTH_FAILED");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn broken_streams_and_bad_bytes() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify_io(&reset, "b").reason(), "UNREACHABLE");
        assert!(is_transient(&classify_io(&reset, "b")));
        let bad = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        });
        assert!(matches!(classify_io(&bad, "b"), Error::Invalid(_)));
        assert!(!is_transient(&classify_io(&bad, "b")));
    }

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
}
