//! Who may push and read over HTTP. Credentials are HTTP Basic, checked against the
//! registry's users ([`crate::users`]); pushes need `[registry.push] enabled`, reads need
//! credentials only with `read = "authenticated"`. A refused login answers 401 with a
//! Basic challenge and logs the user name and address, never the password; an address
//! that keeps failing waits longer for each answer ([`crate::login_failures`]).

use crate::error::ApiError;
use crate::login_failures::LoginFailures;
use crate::users::{User, Users};
use axum::http::{header, HeaderMap};
use base64::Engine as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Who may pull.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadAccess {
    /// Anyone who reaches the listener (the default).
    #[default]
    Anonymous,
    /// Users with valid credentials only.
    Authenticated,
}

/// Access settings of the registry.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Whether push over HTTP is on.
    pub push_enabled: bool,
    /// Who may pull.
    pub read: ReadAccess,
    /// Users with plain-text passwords in the config (deprecated).
    pub users: Vec<User>,
    /// An htpasswd file of bcrypt entries, read again when it changes.
    pub htpasswd: Option<PathBuf>,
}

/// The access policy in force.
pub(crate) struct Access {
    push_enabled: bool,
    read: ReadAccess,
    users: Arc<Users>,
    pub failures: LoginFailures,
    /// Password checks running at once.
    checks: tokio::sync::Semaphore,
}

impl Access {
    /// The policy of `config`; the error says why the htpasswd file cannot be used.
    pub fn new(config: AccessConfig) -> Result<Access, String> {
        Ok(Access {
            push_enabled: config.push_enabled,
            read: config.read,
            users: Arc::new(Users::new(config.users, config.htpasswd)?),
            failures: LoginFailures::default(),
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
        })
    }

    /// A write may proceed; returns the user's name.
    pub async fn push(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<String, ApiError> {
        if !self.push_enabled {
            return Err(ApiError::push_disabled());
        }
        self.authenticate(headers, peer).await
    }

    /// A read may proceed.
    pub async fn read(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match self.read {
            ReadAccess::Anonymous => Ok(()),
            ReadAccess::Authenticated => self.authenticate(headers, peer).await.map(drop),
        }
    }

    /// `/v2/`: clients learn from its answer whether they need credentials (`docker
    /// login` checks them there).
    pub async fn base(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), ApiError> {
        if self.push_enabled || self.read == ReadAccess::Authenticated {
            self.authenticate(headers, peer).await?;
        }
        Ok(())
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<String, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized("authentication required"));
        };
        let Some(wait) = self.failures.turn(peer) else {
            // Its queue of attempts is full: refused unchecked (no bcrypt spent on it).
            tracing::warn!(peer = ?peer, "login refused unchecked: too many failed logins from this address");
            return Err(ApiError::unauthorized(
                "too many failed logins; try again later",
            ));
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let (name, ok) = match parse_basic(value.as_bytes()) {
            Some((name, password)) if !name.is_empty() => {
                // bcrypt is CPU-bound: as many checks at once as the node has cores.
                let _slot = self.checks.acquire().await.expect("never closed");
                let users = self.users.clone();
                let user = name.clone();
                let ok = tokio::task::spawn_blocking(move || users.verify(&user, &password))
                    .await
                    .unwrap_or(false);
                (name, ok)
            }
            _ => (String::new(), false),
        };
        if ok {
            self.failures.succeeded(peer);
            return Ok(name);
        }
        let failures = self.failures.failed(peer);
        let shown: String = name.chars().take(64).collect();
        tracing::warn!(
            user = %shown,
            peer = ?peer,
            failures_in_a_row = failures,
            "login failed: wrong user name or password"
        );
        Err(ApiError::unauthorized("invalid username or password"))
    }
}

fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(push_enabled: bool, read: ReadAccess) -> Access {
        Access::new(AccessConfig {
            push_enabled,
            read,
            users: vec![User {
                name: "ci".into(),
                password: "s3cret".into(),
            }],
            htpasswd: None,
        })
        .unwrap()
    }

    fn basic(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        );
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn checks_credentials() {
        let a = access(true, ReadAccess::Anonymous);
        assert_eq!(a.push(&basic("ci:s3cret"), None).await.unwrap(), "ci");
        assert!(a.push(&basic("ci:wrong"), None).await.is_err());
        assert!(a.push(&basic("ci:s3cret2"), None).await.is_err());
        assert!(a.push(&basic(":"), None).await.is_err());
        assert!(a.push(&HeaderMap::new(), None).await.is_err());
        assert!(a.read(&HeaderMap::new(), None).await.is_ok());
        assert_eq!(
            a.failures.total(),
            3,
            "a request without credentials is no failure"
        );
        let disabled = access(false, ReadAccess::Anonymous);
        let e = disabled.push(&basic("ci:s3cret"), None).await.unwrap_err();
        assert_eq!(e.status(), 405);
        assert!(disabled.base(&HeaderMap::new(), None).await.is_ok());
    }

    #[tokio::test]
    async fn authenticated_reads_need_credentials() {
        let a = access(false, ReadAccess::Authenticated);
        let e = a.read(&HeaderMap::new(), None).await.unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(a.read(&basic("ci:s3cret"), None).await.is_ok());
        assert!(a.read(&basic("ci:nope"), None).await.is_err());
        assert!(a.base(&HeaderMap::new(), None).await.is_err());
        assert!(a.base(&basic("ci:s3cret"), None).await.is_ok());
    }
}
