//! The way to each upstream: one client per (host, credentials), credentials read afresh
//! at the start of every pull, and a back-off for an upstream that failed to answer, so
//! that clients do not each wait out the full timeout again.
//!
//! Credentials are looked up for the host contacted (the mirror endpoint's when one is
//! configured) and sent to that host only; a pull keeps the client, and so the
//! credentials, it started with.

use crate::error::PullError;
use crate::policy::PullConfig;
use site_core::{Digest, Repository};
use site_upstream::{
    auth, Credentials, Reference, RegistryAuth, Settings, Upstream, UpstreamError,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First pause after an upstream failed to answer; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest pause.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Clients kept before the cache of them starts over (credentials rotate).
const MAX_CLIENTS: usize = 64;

/// An upstream that failed to answer.
#[derive(Debug, Clone)]
struct Down {
    until: Instant,
    pause: Duration,
    why: String,
}

/// A client is kept per host contacted and credentials (user, password).
type ClientKey = (String, Option<(String, String)>);

/// The upstreams of a node.
pub(crate) struct Upstreams {
    /// Requests by registry and outcome, for `/metrics`.
    pub requests: site_core::metrics::Counters,
    config: PullConfig,
    clients: Mutex<HashMap<ClientKey, Upstream>>,
    down: Mutex<HashMap<String, Down>>,
}

/// One pull's way to one registry: the client, the credentials and the host contacted.
pub(crate) struct Session<'a> {
    upstreams: &'a Upstreams,
    /// The client (its credentials fixed for this pull).
    pub upstream: Upstream,
    /// The credentials the registry is asked with.
    pub auth: RegistryAuth,
    /// The registry of the image.
    pub registry: String,
    /// The host contacted.
    pub contact: String,
}

impl Upstreams {
    pub(crate) fn new(config: PullConfig) -> Upstreams {
        Upstreams {
            requests: Default::default(),
            config,
            clients: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &PullConfig {
        &self.config
    }

    /// Starts a pull from `repo`'s registry: refused at once while that upstream is
    /// backed off; otherwise the credentials are read now.
    pub(crate) async fn session(&self, repo: &Repository) -> Result<Session<'_>, PullError> {
        let registry = repo.host().to_owned();
        let contact = self.config.contact_for(&registry);
        if let Some(down) = self.backed_off(&contact) {
            let left = down.until.saturating_duration_since(Instant::now());
            return Err(PullError::Upstream {
                registry,
                error: UpstreamError::Unreachable(format!(
                    "{contact} failed to answer ({}); not asked again for {} s",
                    down.why,
                    left.as_secs().max(1)
                )),
                retry_after: Some(left.as_secs().max(1)),
            });
        }
        let failed = |error| PullError::Upstream {
            registry: registry.clone(),
            error,
            retry_after: None,
        };
        let file = auth::load(self.config.auth_file.as_deref()).map_err(failed)?;
        let credentials = file.lookup(&contact).await.map_err(failed)?;
        let upstream = self
            .client(&contact, credentials.as_ref())
            .map_err(failed)?;
        Ok(Session {
            upstreams: self,
            upstream,
            auth: site_upstream::registry_auth(credentials),
            registry,
            contact,
        })
    }

    fn client(&self, contact: &str, c: Option<&Credentials>) -> Result<Upstream, UpstreamError> {
        let key = (
            contact.to_owned(),
            c.map(|c| (c.username.clone(), c.password.clone())),
        );
        let mut clients = self.clients.lock().expect("clients");
        if let Some(u) = clients.get(&key) {
            return Ok(u.clone());
        }
        let upstream = Upstream::with(&Settings {
            insecure: self.config.plain_http_hosts(),
            ca_pem: self.config.ca_pem.clone(),
            connect_timeout: self.config.timeout,
            read_timeout: self.config.timeout,
            user_agent: concat!("site-agent/", env!("CARGO_PKG_VERSION")),
        })?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, upstream.clone());
        Ok(upstream)
    }

    fn backed_off(&self, contact: &str) -> Option<Down> {
        let down = self.down.lock().expect("down");
        down.get(contact)
            .filter(|d| d.until > Instant::now())
            .cloned()
    }

    /// Upstreams backed off now: the host, why, and for how long still.
    pub(crate) fn backed_off_all(&self) -> Vec<(String, String, Duration)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .down
            .lock()
            .expect("down")
            .iter()
            .filter(|(_, d)| d.until > now)
            .map(|(h, d)| (h.clone(), d.why.clone(), d.until - now))
            .collect();
        out.sort();
        out
    }

    /// Notes how a request to `contact` ended: a failure to answer backs it off (longer
    /// each time in a row), anything else clears that.
    fn note(&self, contact: &str, result: Result<(), &UpstreamError>) {
        let mut down = self.down.lock().expect("down");
        match result {
            Err(UpstreamError::Unreachable(why)) => {
                let pause = down
                    .get(contact)
                    .map_or(FIRST_BACKOFF, |d| (d.pause * 2).min(MAX_BACKOFF));
                tracing::warn!(upstream = contact, pause_secs = pause.as_secs(), error = %why, "upstream failed to answer: backing off");
                down.insert(
                    contact.to_owned(),
                    Down {
                        until: Instant::now() + pause,
                        pause,
                        why: site_upstream::error::one_line(why),
                    },
                );
            }
            _ => {
                down.remove(contact);
            }
        }
    }
}

impl Session<'_> {
    /// The reference of `repo` at the contacted host.
    pub(crate) fn reference(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        d: Option<&Digest>,
    ) -> Reference {
        let (host, path) = (self.contact.clone(), repo.path().to_owned());
        match (d, tag) {
            (Some(d), _) => Reference::with_digest(host, path, d.to_string()),
            (None, t) => Reference::with_tag(host, path, t.unwrap_or("latest").to_owned()),
        }
    }

    /// Records how a request ended (see [`Upstreams::note`]) and turns its error into a
    /// pull error, with a `Retry-After` for the ones a client should wait out.
    pub(crate) fn outcome<T>(&self, result: Result<T, UpstreamError>) -> Result<T, PullError> {
        self.upstreams
            .note(&self.contact, result.as_ref().map(|_| ()));
        let outcome = result.as_ref().map_or_else(|e| e.reason(), |_| "ok");
        self.upstreams.requests.inc(&[&self.registry, outcome]);
        result.map_err(|error| {
            let retry_after = match &error {
                UpstreamError::Unreachable(_) => Some(FIRST_BACKOFF.as_secs()),
                UpstreamError::RateLimited { retry_after, .. } => {
                    Some(retry_after.unwrap_or(MAX_BACKOFF.as_secs()))
                }
                _ => None,
            };
            PullError::Upstream {
                registry: self.registry.clone(),
                error,
                retry_after,
            }
        })
    }
}
