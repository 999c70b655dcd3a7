//! What an upstream's answer or failure means in the taxonomy of [`UpstreamError`]: an
//! HTTP status with the registry's error envelope, a broken connection, a broken stream.

use crate::error::{chain, one_line, UpstreamError as Error};
use serde::Deserialize;

/// The OCI error envelope: `{"errors": [{"code": …, "message": …}]}`.
#[derive(Deserialize)]
struct Envelope {
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The error a refused request means: the codes of its error envelope when the body is
/// one, else its HTTP status. `what` names the object; `retry_after` is the answer's
/// `Retry-After` in seconds.
pub fn status(code: u16, body: &[u8], what: &str, retry_after: Option<u64>) -> Error {
    let mut message = None;
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        if !envelope.errors.is_empty() {
            match codes(&envelope.errors, what, retry_after) {
                Ok(e) => return e,
                // Codes of no known meaning (a registry's own, such as a pull-through
                // cache's UNAVAILABLE): the status says what the refusal is.
                Err(m) => message = Some(m),
            }
        }
    }
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        format!("{what}: HTTP {code}: {}", one_line(&text))
    });
    match code {
        404 => Error::NotFound(message),
        401 | 403 => Error::AuthFailed(message),
        429 => Error::RateLimited {
            message,
            retry_after,
        },
        408 | 502 | 503 | 504 => Error::Unreachable(message),
        _ => Error::Other(format!("upstream registry error: {message}")),
    }
}

/// The error the envelope's codes mean, or (none known) its message.
fn codes(errors: &[EnvelopeError], what: &str, retry_after: Option<u64>) -> Result<Error, String> {
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    let message = format!("{what}: {}", one_line(&messages.join("; ")));
    let has = |c: &str| errors.iter().any(|e| e.code.eq_ignore_ascii_case(c));
    Ok(if has("TOOMANYREQUESTS") {
        Error::RateLimited {
            message,
            retry_after,
        }
    } else if has("UNAUTHORIZED") || has("DENIED") {
        Error::AuthFailed(message)
    } else if [
        "MANIFEST_UNKNOWN",
        "NAME_UNKNOWN",
        "NOT_FOUND",
        "BLOB_UNKNOWN",
    ]
    .iter()
    .any(|c| has(c))
    {
        Error::NotFound(message)
    } else {
        return Err(message);
    })
}

/// The error a request that got no answer means: a connection that failed, timed out or
/// broke is a broken link, worth a retry.
pub fn request(e: &reqwest::Error, what: &str) -> Error {
    let text = format!("{what}: {}", chain(e));
    if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode() {
        Error::Unreachable(text)
    } else {
        Error::Other(format!("upstream: {text}"))
    }
}

/// The error an upstream stream broke with: a broken link. Its bytes are checked by
/// whoever keeps them.
pub fn io(e: &std::io::Error, what: &str) -> Error {
    Error::Unreachable(format!("{what}: {}", chain(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(code: u16) -> &'static str {
        status(code, b"<html>oops</html>", "img", None).reason()
    }

    fn envelope(code: &str) -> Error {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"msg","detail":null}}]}}"#);
        status(400, body.as_bytes(), "img", Some(7))
    }

    #[test]
    fn http_statuses() {
        assert_eq!(bare(404), "NOT_FOUND");
        assert_eq!(bare(401), "AUTH_FAILED");
        assert_eq!(bare(403), "AUTH_FAILED");
        assert_eq!(bare(429), "RATE_LIMITED");
        assert_eq!(bare(503), "UNREACHABLE");
        assert_eq!(bare(500), "UNREACHABLE");
        let e = status(429, b"", "img", Some(30));
        assert!(matches!(
            e,
            Error::RateLimited {
                retry_after: Some(30),
                ..
            }
        ));
    }

    #[test]
    fn envelope_codes() {
        assert_eq!(envelope("MANIFEST_UNKNOWN").reason(), "NOT_FOUND");
        assert_eq!(envelope("NAME_UNKNOWN").reason(), "NOT_FOUND");
        assert_eq!(envelope("BLOB_UNKNOWN").reason(), "NOT_FOUND");
        assert_eq!(envelope("UNAUTHORIZED").reason(), "AUTH_FAILED");
        assert_eq!(envelope("DENIED").reason(), "AUTH_FAILED");
        assert!(matches!(
            envelope("TOOMANYREQUESTS"),
            Error::RateLimited {
                retry_after: Some(7),
                ..
            }
        ));
        assert!(matches!(envelope("LOCKED"), Error::Other(_)));
        // A code of no known meaning: the status decides (a pull-through cache whose
        // upstream is unreachable answers 503 UNAVAILABLE), the message kept.
        let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"upstream down"}]}"#;
        let e = status(503, body, "img", None);
        assert!(matches!(e, Error::Unreachable(_)), "{e:?}");
        assert!(e.to_string().contains("UNAVAILABLE: upstream down"), "{e}");
        let e = envelope("MANIFEST_UNKNOWN").to_string();
        assert!(e.contains("MANIFEST_UNKNOWN: msg"), "{e}");
        // An empty list of errors is no envelope: the status decides.
        assert_eq!(
            status(404, br#"{"errors":[]}"#, "x", None).reason(),
            "NOT_FOUND"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = status(500, b"line one\nline two", "img", None).to_string();
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn broken_streams() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(io(&reset, "b").reason(), "UNREACHABLE");
        assert!(crate::client::is_transient(&io(&reset, "b")));
    }
}
