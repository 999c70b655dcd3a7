//! HTTP push access: basic-auth users from the config. Reads never need credentials;
//! writes need push enabled and a configured user. Passwords are never logged.

use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use base64::Engine as _;

/// A user allowed to push.
#[derive(Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password, compared in constant time.
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Push settings.
#[derive(Debug, Clone, Default)]
pub struct PushConfig {
    /// Whether push over HTTP is on.
    pub enabled: bool,
    /// Users allowed to push.
    pub users: Vec<User>,
}

impl PushConfig {
    /// Checks that a write may proceed; returns the user's name.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if !self.enabled {
            return Err(ApiError::push_disabled());
        }
        self.authenticate(headers)
    }

    /// Checks the request's basic-auth credentials against the configured users.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized("authentication required"));
        };
        let (name, password) = parse_basic(value.as_bytes())
            .ok_or_else(|| ApiError::unauthorized("malformed basic credentials"))?;
        let ok = self.users.iter().fold(false, |found, u| {
            // Compare with every user, in constant time, so timing tells nothing.
            found
                | (ct_eq(u.name.as_bytes(), name.as_bytes())
                    & ct_eq(u.password.as_bytes(), password.as_bytes()))
        });
        if ok && !name.is_empty() {
            Ok(name)
        } else {
            Err(ApiError::unauthorized("invalid username or password"))
        }
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

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PushConfig {
        PushConfig {
            enabled: true,
            users: vec![User {
                name: "ci".into(),
                password: "s3cret".into(),
            }],
        }
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

    #[test]
    fn checks_credentials() {
        assert_eq!(config().authorize(&basic("ci:s3cret")).unwrap(), "ci");
        assert!(config().authorize(&basic("ci:wrong")).is_err());
        assert!(config().authorize(&basic("ci:s3cret2")).is_err());
        assert!(config().authorize(&basic(":")).is_err());
        assert!(config().authorize(&HeaderMap::new()).is_err());
        let disabled = PushConfig::default();
        assert_eq!(
            disabled
                .authorize(&basic("ci:s3cret"))
                .unwrap_err()
                .status(),
            405
        );
        assert!(!format!("{:?}", config()).contains("s3cret"));
    }
}
