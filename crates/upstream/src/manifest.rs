//! Manifests read with a size limit. oci-client reads a manifest's body whole into
//! memory, however long it is; an upstream that sends a body without end would fill the
//! node's memory. Here the body is read as it streams and refused past the limit, with
//! oci-client's authentication (its token for the repository, or basic credentials).

use crate::client::{checked_digest, classify, Upstream};
use crate::error::UpstreamError as Error;
use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use site_core::manifest::MANIFEST_MEDIA_TYPES;
use site_core::Digest;

impl Upstream {
    /// [`Upstream::manifest`] reading at most `max` bytes of body.
    pub async fn manifest_bounded(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
        max: u64,
    ) -> Result<(bytes::Bytes, Digest), Error> {
        let what = image.whole();
        let token = self
            .client
            .auth(image, auth, RegistryOperation::Pull)
            .await
            .map_err(|e| classify(&e, &what))?;
        let registry = image.resolve_registry();
        let scheme = if self.plain.iter().any(|h| h == registry) {
            "http"
        } else {
            "https"
        };
        let reference = image
            .digest()
            .map(str::to_owned)
            .or_else(|| image.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{reference}",
            image.repository()
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_MEDIA_TYPES.join(", "));
        request = match (token, auth) {
            (Some(t), _) => request.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => request.basic_auth(u, Some(p)),
            (None, _) => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| classify(&OciDistributionError::RequestError(e), &what))?;
        let status = response.status();
        // A number of seconds (the form registries use; an HTTP date is not read).
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let reported = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response.content_length().is_some_and(|l| l > max) {
            return Err(too_large(&what, max));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| classify(&OciDistributionError::RequestError(e), &what))?;
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(too_large(&what, max));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
            let error = match serde_json::from_str(&message) {
                Ok(envelope) => OciDistributionError::RegistryError { envelope, url },
                Err(_) => OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url,
                    message,
                },
            };
            return Err(match classify(&error, &what) {
                Error::RateLimited { message, .. } => Error::RateLimited {
                    message,
                    retry_after,
                },
                other => other,
            });
        }
        // A digest of another algorithm than sha256 is not compared.
        let reported = reported.filter(|r| r.starts_with("sha256:"));
        let digest = checked_digest(image, &body, reported.as_deref())?;
        Ok((bytes::Bytes::from(body), digest))
    }
}

fn too_large(what: &str, max: u64) -> Error {
    Error::Invalid(format!(
        "{what}: the upstream's manifest is over the limit of {max} bytes"
    ))
}
