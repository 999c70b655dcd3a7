//! Authenticated requests: each is sent as the registry asked the last time, and a 401
//! is answered once with what its challenge asks for (a token from the registry's token
//! service, asked with the credentials or anonymously; or the credentials as HTTP
//! Basic). Only the registry's own challenge is answered, never one from a host it
//! redirected to.

use crate::challenge::{self, Challenge};
use crate::classify;
use crate::client::{read_at_most, refusal, Upstream, SMALL_BODY};
use crate::error::UpstreamError as Error;
use crate::reference::{Reference, RegistryAuth};
use reqwest::header::WWW_AUTHENTICATE;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What each registry (by its API host) was told and answered.
#[derive(Default)]
pub(crate) struct Grants {
    /// The credentials to use with the registry.
    auths: HashMap<String, RegistryAuth>,
    /// Registries that asked for HTTP Basic: the credentials go with every request.
    basic: HashSet<String>,
    /// Tokens per (registry, repository), and until when to use them.
    tokens: HashMap<(String, String), (String, Instant)>,
}

impl Upstream {
    /// Makes `auth` the credentials of `image`'s registry for this client. Manifest
    /// requests do this themselves; a client that starts with a blob calls this first.
    pub fn remember_auth(&self, image: &Reference, auth: &RegistryAuth) {
        let mut grants = self.grants.lock().expect("grants");
        let host = image.resolve_registry().to_owned();
        if grants.auths.get(&host) != Some(auth) {
            // Tokens and the Basic scheme were granted to other credentials.
            grants.tokens.retain(|(h, _), _| *h != host);
            grants.basic.remove(&host);
            grants.auths.insert(host, auth.clone());
        }
    }

    /// Sends a request made by `build`, authenticated as the registry asked the last
    /// time; on a 401 it answers the registry's challenge (fetches a token, or sends the
    /// credentials) and sends the request once more. Any answer is returned.
    pub(crate) async fn send(
        &self,
        image: &Reference,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let host = image.resolve_registry().to_owned();
        let key = (host.clone(), image.repository().to_owned());
        let mut answered = false;
        loop {
            let (auth, token, basic) = {
                let grants = self.grants.lock().expect("grants");
                let token = grants
                    .tokens
                    .get(&key)
                    .filter(|(_, until)| *until > Instant::now())
                    .map(|(t, _)| t.clone());
                let auth = grants.auths.get(&host).cloned().unwrap_or_default();
                (auth, token, grants.basic.contains(&host))
            };
            let mut request = build(&self.http);
            request = match (token, &auth) {
                (Some(t), _) => request.bearer_auth(t),
                (None, RegistryAuth::Basic(u, p)) if basic => request.basic_auth(u, Some(p)),
                _ => request,
            };
            let response = request
                .send()
                .await
                .map_err(|e| classify::request(&e, what))?;
            // Only the registry's own challenge is answered: not one from a host it
            // redirected to (blob storage), which could name any realm.
            if response.status() != reqwest::StatusCode::UNAUTHORIZED
                || answered
                || authority(response.url()).as_deref() != Some(host.as_str())
            {
                return Ok(response);
            }
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .collect();
            match challenges.into_iter().next() {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let scope =
                        scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                    let granted = self
                        .token(&realm, service.as_deref(), &scope, &auth, what)
                        .await?;
                    let mut grants = self.grants.lock().expect("grants");
                    grants.tokens.insert(key.clone(), granted);
                }
                Some(Challenge::Basic) if matches!(auth, RegistryAuth::Basic(..)) && !basic => {
                    self.grants
                        .lock()
                        .expect("grants")
                        .basic
                        .insert(host.clone());
                }
                // Nothing to answer with: the 401 is the answer.
                _ => return Ok(response),
            }
            answered = true;
        }
    }

    /// A token from the token service at `realm` for `scope`, asked with the credentials
    /// (anonymously without), and until when to use it.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        auth: &RegistryAuth,
        what: &str,
    ) -> Result<(String, Instant), Error> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            Error::AuthFailed(format!(
                "{what}: the registry names a token service that is not a URL ({e})"
            ))
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(s) = service {
                query.append_pair("service", s);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.http.get(url);
        if let RegistryAuth::Basic(u, p) = auth {
            request = request.basic_auth(u, Some(p));
        }
        let response = request
            .send()
            .await
            .map_err(|e| classify::request(&e, what))?;
        let status = response.status();
        if !status.is_success() {
            return Err(match refusal(response, what).await {
                e @ (Error::RateLimited { .. } | Error::Unreachable(_)) => e,
                e => Error::AuthFailed(format!(
                    "{what}: token request refused (HTTP {}): {}",
                    status.as_u16(),
                    e.detail()
                )),
            });
        }
        let body = read_at_most(response, SMALL_BODY, what).await?;
        let (token, life) = body.as_deref().and_then(challenge::token).ok_or_else(|| {
            Error::AuthFailed(format!("{what}: the token service's answer holds no token"))
        })?;
        Ok((token, Instant::now() + life))
    }
}

/// `host[:port]` of `url`, as a registry name spells it.
fn authority(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_spelled_as_registry_names() {
        let a = |u: &str| authority(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            a("http://127.0.0.1:5000/v2/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            a("https://registry-1.docker.io/v2/").as_deref(),
            Some("registry-1.docker.io")
        );
        assert_eq!(a("http://[::1]:5000/v2/").as_deref(), Some("[::1]:5000"));
    }
}
