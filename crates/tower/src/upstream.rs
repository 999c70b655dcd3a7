//! The upstream registry, through oci-client: manifests, blob streams, error classification.

use crate::auth::Credentials;
use crate::exit::{chain, one_line, Error};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
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

/// The upstream registries of one command.
pub struct Upstream {
    client: Client,
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
    /// A client speaking HTTPS, except plain HTTP to the `insecure` hosts.
    pub fn new(insecure: &[String]) -> Result<Upstream, Error> {
        let mut hosts: Vec<String> = insecure
            .iter()
            .map(|h| {
                let h = h.trim();
                let h = h
                    .strip_prefix("http://")
                    .or_else(|| h.strip_prefix("https://"))
                    .unwrap_or(h);
                h.trim_end_matches('/').to_owned()
            })
            .collect();
        // oci-client names Docker Hub `index.docker.io` when it picks the scheme.
        if hosts.iter().any(|h| h == "docker.io") {
            hosts.push("index.docker.io".to_owned());
        }
        let config = ClientConfig {
            protocol: if hosts.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(hosts)
            },
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("towerctl/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::Other(format!("cannot set up the upstream client: {e}")))?;
        Ok(Upstream { client })
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
        let digest = Digest::of(&body);
        if reported != digest.as_str() {
            return Err(Error::Other(format!(
                "{}: the registry reports digest {reported} for a manifest whose sha256 is {digest}",
                image.whole()
            )));
        }
        if let Some(pinned) = image.digest() {
            if pinned != digest.as_str() {
                return Err(Error::Other(format!(
                    "{}: the registry sent a manifest of digest {digest}",
                    image.whole()
                )));
            }
        }
        Ok((body, digest))
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
    matches!(err, Error::UpstreamUnreachable(_))
}

/// The error, and so the exit code, an oci-client error means. `what` names the object.
pub fn classify(err: &OciDistributionError, what: &str) -> Error {
    use OciDistributionError as E;
    let text = || format!("{what}: {}", chain(err));
    match err {
        E::AuthenticationFailure(reason) => Error::UpstreamAuth(format!(
            "{what}: token request refused: {}",
            one_line(reason)
        )),
        E::UnauthorizedError { .. } => Error::UpstreamAuth(format!(
            "{what}: unauthorized (missing or wrong credentials, or no such repository)"
        )),
        E::ImageManifestNotFoundError(_) => Error::ImageNotFound(text()),
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
                Error::RateLimited(message)
            } else if has(&OciErrorCode::Unauthorized) || has(&OciErrorCode::Denied) {
                Error::UpstreamAuth(message)
            } else if has(&OciErrorCode::ManifestUnknown)
                || has(&OciErrorCode::NameUnknown)
                || has(&OciErrorCode::NotFound)
                || has(&OciErrorCode::BlobUnknown)
            {
                Error::ImageNotFound(message)
            } else {
                Error::Other(format!("upstream registry error: {message}"))
            }
        }
        E::ServerError { code, message, .. } => {
            let message = format!("{what}: HTTP {code}: {}", one_line(message));
            match code {
                404 => Error::ImageNotFound(message),
                401 | 403 => Error::UpstreamAuth(message),
                429 => Error::RateLimited(message),
                408 | 502 | 503 | 504 => Error::UpstreamUnreachable(message),
                _ => Error::Other(format!("upstream registry error: {message}")),
            }
        }
        // reqwest's error: oci-client does not re-export the type, so it is not named here.
        E::RequestError(e) => {
            if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
                Error::UpstreamUnreachable(text())
            } else {
                match e.status().map(|s| s.as_u16()) {
                    Some(404) => Error::ImageNotFound(text()),
                    Some(401 | 403) => Error::UpstreamAuth(text()),
                    Some(429) => Error::RateLimited(text()),
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

/// The error an upstream stream broke with: bytes that fail their digest are fatal; any
/// other failure is a broken link.
pub fn classify_io(e: &std::io::Error, what: &str) -> Error {
    let digest_error = e.get_ref().and_then(|i| i.downcast_ref::<DigestError>());
    match digest_error {
        Some(d) => Error::Other(format!("{what}: the upstream sent bad bytes: {d}")),
        None => Error::UpstreamUnreachable(format!("{what}: {}", chain(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::*;
    use oci_client::errors::{OciEnvelope, OciError};

    fn server(code: u16) -> u8 {
        classify(
            &OciDistributionError::ServerError {
                code,
                url: "u".into(),
                message: "m".into(),
            },
            "img",
        )
        .exit_code()
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
        assert_eq!(server(404), IMAGE_NOT_FOUND);
        assert_eq!(server(401), UPSTREAM_AUTH);
        assert_eq!(server(403), UPSTREAM_AUTH);
        assert_eq!(server(429), RATE_LIMITED);
        assert_eq!(server(503), UPSTREAM_UNREACHABLE);
        assert_eq!(server(500), OTHER);
    }

    #[test]
    fn envelope_codes() {
        use OciErrorCode as C;
        assert_eq!(envelope(C::ManifestUnknown).exit_code(), IMAGE_NOT_FOUND);
        assert_eq!(envelope(C::NameUnknown).exit_code(), IMAGE_NOT_FOUND);
        assert_eq!(envelope(C::Unauthorized).exit_code(), UPSTREAM_AUTH);
        assert_eq!(envelope(C::Denied).exit_code(), UPSTREAM_AUTH);
        assert_eq!(envelope(C::Toomanyrequests).exit_code(), RATE_LIMITED);
        assert_eq!(envelope(C::Other("LOCKED".into())).exit_code(), OTHER);
        let e = envelope(C::ManifestUnknown).to_string();
        assert!(e.contains("MANIFEST_UNKNOWN: msg"), "{e}");
    }

    #[test]
    fn auth_failures() {
        let e = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert_eq!(classify(&e, "img").exit_code(), UPSTREAM_AUTH);
        let e = OciDistributionError::AuthenticationFailure("bad\ntoken".into());
        let e = classify(&e, "img");
        assert_eq!(e.exit_code(), UPSTREAM_AUTH);
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn broken_streams_and_bad_bytes() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify_io(&reset, "b").exit_code(), UPSTREAM_UNREACHABLE);
        assert!(is_transient(&classify_io(&reset, "b")));
        let bad = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        });
        assert_eq!(classify_io(&bad, "b").exit_code(), OTHER);
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
