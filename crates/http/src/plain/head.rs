//! Request heads: parsed from the connection's buffer into what the handlers take, with
//! the body's framing and whether the client keeps the connection.

use super::inbound::{Chunk, Framing};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

/// Headers accepted in one request.
const MAX_HEADERS: usize = 128;

/// A parsed request head.
pub(super) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The client asks to keep the connection after this request.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expects_continue: bool,
}

/// Why a head cannot be taken: answered with this status, then the connection closes.
#[derive(Debug)]
pub(super) struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// Parses a head at the start of `buf`: `Ok(None)` when it is not whole yet, else the
/// head and its length in bytes.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "too many request header fields"))
        }
        Err(e) => return Err(refuse(400, format!("malformed request head: {e}"))),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| refuse(400, "malformed method"))?;
    let uri: Uri = req
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| refuse(400, "malformed request target"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| refuse(400, "malformed header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| refuse(400, "malformed header value"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, version)?;
    let keep_alive = match version {
        Version::HTTP_10 => has_token(&headers, header::CONNECTION, "keep-alive"),
        _ => !has_token(&headers, header::CONNECTION, "close"),
    };
    let expects_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some((
        Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expects_continue,
        },
        len,
    )))
}

/// The body's framing (RFC 9112 section 6): chunked, a length, or none. A request that
/// has both, or lengths that disagree, is refused (it could be read two ways).
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, Refusal> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(refuse(400, "both Transfer-Encoding and Content-Length"));
        }
        let codings: Vec<&str> = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let last = codings.last().copied();
        return match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") && version == Version::HTTP_11 => {
                Ok(Framing::Chunked(Chunk::Size))
            }
            _ => Err(refuse(501, "only the chunked transfer coding is supported")),
        };
    }
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("?").split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "malformed Content-Length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| refuse(400, "malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(refuse(400, "Content-Length values disagree"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) | None => Framing::Done,
        Some(n) => Framing::Length(n),
    })
}

/// Whether header `name` lists `token` (case-insensitive).
pub(super) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let (h, len) = parse(raw.as_bytes()).unwrap().expect("a whole head");
        assert_eq!(len, raw.len());
        h
    }

    fn refused(raw: &str) -> u16 {
        match parse(raw.as_bytes()) {
            Err(r) => r.status,
            Ok(_) => panic!("taken: {raw:?}"),
        }
    }

    #[test]
    fn framing_keep_alive_and_continue_are_read_from_the_head() {
        let h = head("PUT /v2/a/b HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive && !h.expects_continue);
        let h = head("PATCH /x HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nExpect: 100-Continue\r\nConnection: Keep-Alive, Close\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked(Chunk::Size));
        assert!(h.expects_continue && !h.keep_alive);
        let h = head("GET /v2/ HTTP/1.0\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Done, false));
        assert!(head("GET /v2/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        // Repeated equal lengths are one length.
        let h = head("PUT /x HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(
            head("PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::Done
        );
    }

    #[test]
    fn a_head_not_whole_yet_is_waited_for() {
        assert!(parse(b"GET /v2/ HTTP/1.1\r\nHost: a").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
    }

    #[test]
    fn heads_that_could_be_read_two_ways_are_refused() {
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        // Chunked must be the last coding, and HTTP/1.0 has none.
        assert_eq!(
            refused("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            refused("PUT /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(refused("GET /x HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
        assert_eq!(refused("G(T /x HTTP/1.1\r\n\r\n"), 400);
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(refused(&format!("GET /x HTTP/1.1\r\n{many}\r\n")), 431);
    }
}
