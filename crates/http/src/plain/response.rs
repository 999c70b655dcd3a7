//! Responses onto the socket: the head, then the body from a file with `sendfile(2)`, or
//! from the handler's stream, framed by `Content-Length` or `chunked`.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode, Version};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use site_node::sendfile::{self, stalled};
use site_node::FileRegion;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use tokio::net::TcpStream;

/// Frames up to this size are gathered into one write with what precedes them.
const GATHER: usize = 16 * 1024;
/// Gathered bytes are written once there are this many, ready frames or not.
const GATHER_MAX: usize = 64 * 1024;
/// A client that takes nothing of an answer for this long is given up (the connection
/// closes; a stopping server does not wait for it).
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// How a response ended on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Whole; the connection may serve another request.
    Whole,
    /// Whole, but delimited by closing the connection (HTTP/1.0 without a length).
    Closes,
}

/// Writes `response` to a request of `method` and `version`. `keep` says whether the
/// connection stays open after it (else `Connection: close` is announced). An error means
/// the response could not be sent whole: the connection must be dropped.
pub(super) async fn write(
    stream: &TcpStream,
    method: &Method,
    version: Version,
    mut response: Response,
    keep: bool,
) -> io::Result<Sent> {
    let status = response.status();
    let region = response.extensions_mut().remove::<FileRegion>();
    let (parts, body) = response.into_parts();
    let no_body = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length = declared_length(&parts.headers);
    if length.is_none() && !status.is_informational() && status != StatusCode::NO_CONTENT {
        length = http_body::Body::size_hint(&body).exact();
    }
    if let Some(r) = &region {
        length = Some(r.len);
    }
    let chunked = length.is_none() && !no_body && version == Version::HTTP_11;
    let closes = !keep || (length.is_none() && !no_body && !chunked);
    let mut out = Vec::with_capacity(512);
    head(&mut out, status, &parts.headers, length, chunked, closes);
    if !closes && version == Version::HTTP_10 {
        // An HTTP/1.0 client keeps the connection only if told so.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"connection: keep-alive\r\n\r\n");
    }
    if no_body {
        write_all(stream, &out, &[]).await?;
    } else if let Some(region) = region.filter(|r| r.len > 0) {
        cork(stream, &out).await?;
        sendfile::send_file(stream, &region.file, region.offset, region.len, WRITE_STALL).await?;
    } else {
        write_body(stream, out, body, length, chunked).await?;
    }
    Ok(if closes { Sent::Closes } else { Sent::Whole })
}

/// A minimal answer to a request that could not be read, before closing.
pub(super) async fn refuse(stream: &TcpStream, status: u16, reason: &str) -> io::Result<()> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = format!("{reason}\n");
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid"));
    let mut out = Vec::new();
    head(
        &mut out,
        status,
        &headers,
        Some(body.len() as u64),
        false,
        true,
    );
    write_all(stream, &out, body.as_bytes()).await
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<u64>,
    chunked: bool,
    closes: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // Framing and the connection's fate are this server's to say.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = length {
        if !(status.is_informational() || status == StatusCode::NO_CONTENT) {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
    } else if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if closes {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The handler's body after the head `out`: frames gathered while they come at once,
/// written as they come otherwise.
async fn write_body(
    stream: &TcpStream,
    mut out: Vec<u8>,
    mut body: Body,
    length: Option<u64>,
    chunked: bool,
) -> io::Result<()> {
    let mut sent = 0u64;
    loop {
        // Flush what is gathered before waiting on a body that has nothing ready.
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                write_all(stream, &out, &[]).await?;
                out.clear();
                body.frame().await
            }
        };
        let data: Bytes = match next {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => d,
                Err(_trailers) => continue,
            },
        };
        sent += data.len() as u64;
        if length.is_some_and(|l| sent > l) {
            return Err(io::Error::other("response body longer than its length"));
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if data.len() <= GATHER {
            out.extend_from_slice(&data);
        } else {
            write_all(stream, &out, &data).await?;
            out.clear();
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= GATHER_MAX {
            write_all(stream, &out, &[]).await?;
            out.clear();
        }
    }
    if length.is_some_and(|l| sent != l) {
        return Err(io::Error::other("response body shorter than its length"));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    write_all(stream, &out, &[]).await
}

/// Waits until the socket takes more bytes, at most [`WRITE_STALL`].
async fn writable(stream: &TcpStream) -> io::Result<()> {
    match tokio::time::timeout(WRITE_STALL, stream.writable()).await {
        Ok(r) => r,
        Err(_) => Err(stalled(WRITE_STALL)),
    }
}

/// Writes `a` then `b` whole, in one system call when the socket takes them.
pub(super) async fn write_all(stream: &TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        writable(stream).await?;
        let n = match stream.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n >= a.len() {
            b = &b[n - a.len()..];
            a = &[];
        } else {
            a = &a[n..];
        }
    }
    Ok(())
}

/// Sends `head` with `MSG_MORE`, so that it leaves in one segment with the first bytes
/// of the file that follows (waiting while the socket's buffer is full: a client that
/// pipelined requests may not have read the previous answer yet).
async fn cork(stream: &TcpStream, mut head: &[u8]) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    while !head.is_empty() {
        let n = sendfile::write_call(stream, WRITE_STALL, || {
            // SAFETY: `fd` is the open socket `stream` owns; the buffer is valid for
            // its length.
            unsafe {
                libc::send(
                    fd,
                    head.as_ptr().cast(),
                    head.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        head = &head[n..];
    }
    Ok(())
}
