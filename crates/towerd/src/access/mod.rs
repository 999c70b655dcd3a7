//! Who may use the API. Two kinds of users: bearer tokens (made by `towerd token create
//! NAME --role read|write`, kept in the store as their SHA-256 only), and client
//! certificates of a CA (`--client-ca`, on an HTTPS listener; the role is the
//! certificate's organisational unit, `read` or `write`).
//!
//! Once a token exists or `--client-ca` is given, every API request needs one or the
//! other: reads (`GET`, and `POST /sites/query`) need `read`, changes need `write`
//! (which reads too). No user: 401; too small a role: 403; both in the API's error
//! shape, logged with the user's name, never the token. The status page's HTML (no data
//! of the fleet in it) is served to anyone; its script calls the API with the token it
//! is given.

pub mod cert;
pub mod tls;

use crate::tower::Tower;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read the inventory and the rollouts.
    Read,
    /// Read, and change them.
    Write,
}

impl Role {
    /// `read` or `write`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// A new token and the SHA-256 the store keeps of it: `twr_` and 64 hex digits (256
/// random bits, so a fast hash is enough to keep it).
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token = format!("twr_{}", hex::encode(bytes));
    let hash = hash(&token);
    Ok((token, hash))
}

/// The SHA-256 of a token, in hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a connection tells of its client: the role of the certificate it presented
/// (verified against `--client-ca` during the handshake), if any.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The certificate's subject and role, when a certificate was presented.
    pub certificate: Option<(String, Option<Role>)>,
}

/// The role a request needs; `None` for what anyone may read (the status page's HTML).
fn needs(method: &Method, path: &str) -> Option<Role> {
    match (method, path) {
        (&Method::GET, "/") => None,
        (&Method::GET | &Method::HEAD, _) => Some(Role::Read),
        (&Method::POST, "/sites/query") => Some(Role::Read),
        _ => Some(Role::Write),
    }
}

/// Whether requests need a user: `--client-ca` is given, the API listens beyond
/// loopback, or a token exists.
async fn required(tower: &Tower) -> Result<bool, crate::store::StoreError> {
    Ok(tower.settings.users_required || !tower.store.tokens().await?.is_empty())
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = crate::api::json(status, &site_fleet_api::ErrorBody::new(code, message));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"towerd\""),
        );
    }
    r
}

/// The API's gate: finds the request's user and refuses what its role does not cover.
pub async fn gate(State(tower): State<Arc<Tower>>, request: Request, next: Next) -> Response {
    let Some(needed) = needs(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let refused = |status: StatusCode, code: &str, who: &str, message: &str| {
        tracing::warn!(%method, %path, status = status.as_u16(), user = who, "API request refused: {message}");
        refuse(status, code, message)
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let (who, role) = match bearer {
        Some(value) => {
            let Some(token) = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
            else {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "-",
                    "the Authorization header is not a bearer token (Authorization: Bearer TOKEN)",
                );
            };
            match tower.store.token(&hash(token)).await {
                Ok(Some((name, role))) => (format!("token {name}"), Role::parse(&role)),
                Ok(None) => {
                    return refused(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "-",
                        "the token is not known (wrong, or revoked)",
                    )
                }
                Err(e) => return crate::api::error::ApiError::from(e).into_response(),
            }
        }
        None => {
            let certificate = request
                .extensions()
                .get::<ConnectInfo<Peer>>()
                .and_then(|c| c.0.certificate.clone());
            match certificate {
                Some((subject, role)) => (format!("certificate {subject}"), role),
                None => match required(&tower).await {
                    Ok(false) => return next.run(request).await,
                    Ok(true) => {
                        return refused(
                            StatusCode::UNAUTHORIZED,
                            "UNAUTHORIZED",
                            "-",
                            "this tower needs a user: Authorization: Bearer TOKEN (towerd token create), or a client certificate of its --client-ca",
                        )
                    }
                    Err(e) => return crate::api::error::ApiError::from(e).into_response(),
                },
            }
        }
    };
    match role {
        Some(role) if role >= needed => next.run(request).await,
        Some(role) => refused(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            &who,
            &format!(
                "{who} has the role {}; {method} {path} needs {}",
                role.name(),
                needed.name()
            ),
        ),
        None => refused(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            &who,
            &format!("{who} has no role (read or write) for this tower"),
        ),
    }
}
