//! Manifests: their digest by a HEAD request, their exact bytes read with a size limit
//! (an upstream that sends a body without end would otherwise fill the memory) and
//! checked against the digest the registry reports and the one the reference pins.

use crate::client::{read_at_most, refusal, Upstream};
use crate::error::UpstreamError as Error;
use crate::reference::{Reference, RegistryAuth};
use reqwest::header::ACCEPT;
use site_core::manifest::MANIFEST_MEDIA_TYPES;
use site_core::Digest;

/// The limit of [`Upstream::manifest`]: far above any real manifest (registries refuse
/// manifests over 4 MiB).
pub const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// The digest of manifest `body`: the one `image` pins (sha256 or sha512) when it pins
/// one, else its sha256; checked against the body, and against the digest the registry
/// `reported` (when given in an algorithm this registry knows).
pub(crate) fn checked_digest(
    image: &Reference,
    body: &[u8],
    reported: Option<&str>,
) -> Result<Digest, Error> {
    let mismatch = |claimed: &str| {
        Error::Invalid(format!(
            "{}: the registry sent a manifest whose digest is not {claimed}",
            image.whole()
        ))
    };
    if let Some(r) = reported.and_then(|r| Digest::parse(r).ok()) {
        if !r.matches(body) {
            return Err(Error::Invalid(format!(
                "{}: the registry reports digest {r} for a manifest whose sha256 is {}",
                image.whole(),
                Digest::of(body)
            )));
        }
    }
    match image.digest() {
        Some(pinned) => match Digest::parse(pinned) {
            Ok(d) if d.matches(body) => Ok(d),
            _ => Err(mismatch(pinned)),
        },
        None => Ok(Digest::of(body)),
    }
}

fn reported_digest(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

impl Upstream {
    /// The digest the upstream gives for `image` (a tag), by a HEAD request; a registry
    /// that does not say it is asked for the manifest, whose bytes are hashed.
    pub async fn manifest_digest(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Digest, Error> {
        let what = image.whole();
        let response = match self.ask_manifest(image, auth, reqwest::Method::HEAD).await {
            Ok(r) => r,
            // A refusal that a GET would get too stands; anything else (a proxy that
            // refuses HEAD) is asked again with GET.
            Err(e @ (Error::NotFound(_) | Error::AuthFailed(_) | Error::RateLimited { .. })) => {
                return Err(e)
            }
            Err(_) => return Ok(self.manifest(image, auth).await?.1),
        };
        match reported_digest(&response) {
            Some(d) => Digest::parse(&d).map_err(|e| {
                Error::Invalid(format!(
                    "{what}: the registry reports a digest that is not one: {e}"
                ))
            }),
            None => Ok(self.manifest(image, auth).await?.1),
        }
    }

    /// Fetches a manifest's exact bytes (any of the manifest media types), at most
    /// [`MAX_MANIFEST`] of them.
    pub async fn manifest(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(bytes::Bytes, Digest), Error> {
        self.manifest_bounded(image, auth, MAX_MANIFEST).await
    }

    /// Fetches a manifest's exact bytes, at most `max` of them, and checks that their
    /// sha256 is the digest the registry gave and the one `image` pins, if any.
    pub async fn manifest_bounded(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
        max: u64,
    ) -> Result<(bytes::Bytes, Digest), Error> {
        let what = image.whole();
        let response = self.ask_manifest(image, auth, reqwest::Method::GET).await?;
        let reported = reported_digest(&response);
        let body = read_at_most(response, max, &what).await?.ok_or_else(|| {
            Error::Invalid(format!(
                "{what}: the upstream's manifest is over the limit of {max} bytes"
            ))
        })?;
        let digest = checked_digest(image, &body, reported.as_deref())?;
        Ok((bytes::Bytes::from(body), digest))
    }

    /// The successful answer to a manifest request (any of the manifest media types
    /// accepted), or the error its refusal means.
    async fn ask_manifest(
        &self,
        image: &Reference,
        auth: &RegistryAuth,
        method: reqwest::Method,
    ) -> Result<reqwest::Response, Error> {
        self.remember_auth(image, auth);
        let what = image.whole();
        let url = self.url(image, &format!("manifests/{}", image.manifest_reference()));
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let response = self
            .send(
                image,
                |c| c.request(method.clone(), &url).header(ACCEPT, &accept),
                &what,
            )
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response, &what).await);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_against_the_report_and_the_pin() {
        let body = b"{}";
        let d = Digest::of(body);
        let tag = Reference::with_tag("h".into(), "r".into(), "t".into());
        assert_eq!(checked_digest(&tag, body, Some(d.as_str())).unwrap(), d);
        assert_eq!(checked_digest(&tag, body, None).unwrap(), d);
        let other = Digest::of(b"x");
        assert!(checked_digest(&tag, body, Some(other.as_str())).is_err());
        // A report that is no digest is not compared; a sha512 one is.
        assert!(checked_digest(&tag, body, Some("sha512:ab")).is_ok());
        let d512 = Digest::of_with(site_core::Algorithm::Sha512, body);
        assert!(checked_digest(&tag, body, Some(d512.as_str())).is_ok());
        let wrong512 = Digest::of_with(site_core::Algorithm::Sha512, b"x");
        assert!(checked_digest(&tag, body, Some(wrong512.as_str())).is_err());
        let pinned = Reference::with_digest("h".into(), "r".into(), other.to_string());
        assert!(matches!(
            checked_digest(&pinned, body, None),
            Err(Error::Invalid(_))
        ));
        // Pinned by its sha512, the manifest is known by it.
        let pinned512 = Reference::with_digest("h".into(), "r".into(), d512.to_string());
        assert_eq!(checked_digest(&pinned512, body, None).unwrap(), d512);
    }
}
