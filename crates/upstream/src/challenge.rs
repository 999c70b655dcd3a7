//! A registry's `WWW-Authenticate` challenge and its token service's answer, as the
//! distribution token specification writes them: `Bearer realm="…",service="…",scope="…"`
//! asks the client to fetch a token from `realm`; `Basic realm="…"` to send credentials.

use serde::Deserialize;
use std::time::Duration;

/// How a registry asks to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Fetch a token from `realm` for `service` and `scope`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send the credentials as HTTP Basic.
    Basic,
}

/// The challenges of one `WWW-Authenticate` value, the Bearer one first when both are
/// offered (a token is scoped; a password is not).
pub(crate) fn parse(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut scheme: Option<String> = None;
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        if token.is_empty() {
            break;
        }
        let after_ws = after.trim_start();
        if let Some(value) = after_ws.strip_prefix('=') {
            // A parameter of the current challenge.
            let (value, tail) = quoted_or_token(value.trim_start());
            params.push((token.to_ascii_lowercase(), value));
            rest = tail;
        } else {
            // A new scheme.
            if let Some(s) = scheme.take() {
                out.extend(challenge(&s, std::mem::take(&mut params)));
            }
            scheme = Some(token.to_ascii_lowercase());
            rest = after_ws;
        }
    }
    if let Some(s) = scheme {
        out.extend(challenge(&s, params));
    }
    out.sort_by_key(|c| matches!(c, Challenge::Basic));
    out
}

fn challenge(scheme: &str, params: Vec<(String, String)>) -> Option<Challenge> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match scheme {
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// A quoted string (with `\` escapes) or a bare token, and what follows it.
fn quoted_or_token(s: &str) -> (String, &str) {
    if let Some(body) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(e);
                    }
                }
                '"' => return (value, &body[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s.find(',').unwrap_or(s.len());
        (s[..end].trim().to_owned(), &s[end..])
    }
}

/// A token service's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    /// Seconds; some services write a fraction or a string.
    expires_in: Option<serde_json::Value>,
}

/// Shortest life the specification lets a client assume for a token.
const MIN_LIFE: Duration = Duration::from_secs(60);
/// Longest life a token is used for, whatever its service says.
const MAX_LIFE: Duration = Duration::from_secs(24 * 3600);

/// The token of a token service's JSON answer and how long to use it: its `expires_in`
/// (at least 60 s, as the specification says), less a margin for the requests under way.
pub(crate) fn token(body: &[u8]) -> Option<(String, Duration)> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))?;
    let seconds = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let life = seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(MIN_LIFE, |s| {
            Duration::from_secs_f64(s.min(MAX_LIFE.as_secs_f64())).clamp(MIN_LIFE, MAX_LIFE)
        });
    Some((token, life.mul_f64(0.9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hubs_challenge() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            }]
        );
    }

    #[test]
    fn basic_bare_tokens_escapes_and_several_schemes() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        assert_eq!(parse("basic"), vec![Challenge::Basic]);
        let c = parse(r#"Basic realm="x", Bearer realm=https://t/token , scope="a\"b""#);
        assert_eq!(
            c,
            vec![
                Challenge::Bearer {
                    realm: "https://t/token".into(),
                    service: None,
                    scope: Some("a\"b".into()),
                },
                Challenge::Basic
            ]
        );
        // A Bearer challenge without a realm cannot be answered; unknown schemes are
        // skipped; nonsense gives nothing.
        assert!(parse(r#"Bearer service="s""#).is_empty());
        assert!(parse(r#"Negotiate abc"#).is_empty());
        assert!(parse("").is_empty());
        assert!(parse(r#"Bearer realm="unterminated"#).len() == 1);
        assert!(parse("=,=,\"").is_empty());
    }

    #[test]
    fn token_answers() {
        let (t, life) = token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), life.as_secs()), ("abc", 270));
        let (t, life) = token(br#"{"access_token":"x","expires_in":5}"#).unwrap();
        assert_eq!((t.as_str(), life.as_secs()), ("x", 54));
        let (t, _) = token(br#"{"token":"","access_token":"y"}"#).unwrap();
        assert_eq!(t, "y");
        let (_, life) = token(br#"{"token":"t","expires_in":"300"}"#).unwrap();
        assert_eq!(life.as_secs(), 270);
        let (_, life) = token(br#"{"token":"t","expires_in":299.5}"#).unwrap();
        assert_eq!(life.as_secs(), 269);
        let (_, life) = token(br#"{"token":"t","expires_in":1e30}"#).unwrap();
        assert_eq!(life.as_secs(), 24 * 3600 * 9 / 10);
        let (_, life) = token(br#"{"token":"t","expires_in":-5}"#).unwrap();
        assert_eq!(life.as_secs(), 54);
        assert!(token(br#"{"expires_in":5}"#).is_none());
        assert!(token(b"not json").is_none());
    }
}
