//! Blob copies between the nodes of a cluster without TLS, from the page cache to the
//! socket.
//!
//! Over gRPC a node sends a peer each blob chunk through its own memory twice (encoded
//! into a message, then written to the socket). On a cluster listener without TLS the
//! node also answers a plain HTTP/1.1 `GET /peer/v1/blobs/DIGEST?offset=N` (one request
//! per connection, told apart from gRPC's HTTP/2 by its first bytes) and sends the blob's
//! file, or the upload file while the blob still arrives, with `sendfile(2)`: the
//! bytes leave as the file holds them, never read into the process. This is what a
//! peer's copy of a delivery (the majority hold the acknowledgement waits for) costs the
//! receiving node. With `[tls]` the cluster listener speaks only mTLS gRPC, and peers
//! fetch over gRPC as before; a peer that answers this request with something other than
//! HTTP/1.1 (an earlier version) is asked over gRPC too.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use site_core::Digest;
use site_node::transport::BlobStream;
use site_node::{sendfile, NodeError, PeerFiles, PeerSend};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The path of a blob, before its digest.
const PATH: &str = "/peer/v1/blobs/";
/// How a blob fetch begins (gRPC's HTTP/2 begins with `PRI `).
const FETCH: &[u8; 4] = b"GET ";
/// How long a connection may take to say what it is, and a request head to arrive.
const HEAD_WITHIN: Duration = Duration::from_secs(10);
/// Largest request or response head.
const HEAD_MAX: usize = 8 * 1024;
/// A peer that takes nothing of a blob for this long is given up, and so is one that
/// sends nothing of it for as long.
const STALL: Duration = Duration::from_secs(60);
/// How long connecting to a peer may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// Bytes a fetching node gathers into one chunk.
const CHUNK: usize = 1 << 20;

/// A connection of the cluster listener, as gRPC gets it: the first bytes, read to tell
/// it from a blob fetch, are read again first.
pub struct Sniffed {
    first: [u8; 4],
    at: usize,
    stream: TcpStream,
}

impl Connected for Sniffed {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.first.len() {
            let n = (self.first.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.first[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connections of a cluster listener without TLS for gRPC, until the stream is
/// dropped; blob fetches among them are served here until `shutdown` turns true.
pub fn incoming(
    listener: TcpListener,
    peering: PeerFiles,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = io::Result<Sniffed>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let (tx, peering, shutdown) = (tx.clone(), peering.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        if let Some(s) = sniff(stream, peering, shutdown).await {
                            let _ = tx.send(Ok(s)).await;
                        }
                    });
                }
                // Out of descriptors, say: the next accept may succeed once some close.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection on the cluster listener");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) })
}

/// Reads the first bytes of a connection of the cluster listener: a blob fetch is
/// served here; anything else is returned for gRPC. `None`: the connection ended, said
/// nothing in time, or was a fetch.
async fn sniff(
    mut stream: TcpStream,
    peering: PeerFiles,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Sniffed> {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 4];
    let read = tokio::time::timeout(HEAD_WITHIN, stream.read_exact(&mut first)).await;
    if !matches!(read, Ok(Ok(_))) {
        return None;
    }
    if &first != FETCH {
        return Some(Sniffed {
            first,
            at: 0,
            stream,
        });
    }
    tokio::select! {
        served = serve(stream, &peering) => if let Err(e) = served {
            tracing::debug!(error = %e, "a peer's blob fetch ended early");
        },
        _ = shutdown.wait_for(|s| *s) => {}
    }
    None
}

/// Answers one blob fetch whose first bytes ([`FETCH`]) were read.
async fn serve(mut stream: TcpStream, peering: &PeerFiles) -> io::Result<()> {
    let mut head = BytesMut::from(&FETCH[..]);
    tokio::time::timeout(HEAD_WITHIN, read_head(&mut stream, &mut head))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request head in time"))??;
    let (digest, offset, background) = match request(&head) {
        Ok(r) => r,
        Err(e) => return answer(&mut stream, 400, "Bad Request", &e).await,
    };
    let mut file = match peering.peer_file(&digest, offset, background).await {
        Ok(f) => f,
        Err(e) => {
            let (code, reason) = match e {
                NodeError::BlobUnknown(_) => (404, "Not Found"),
                NodeError::RangeInvalid { .. } => (416, "Range Not Satisfiable"),
                _ => (503, "Service Unavailable"),
            };
            return answer(&mut stream, code, reason, &e.to_string()).await;
        }
    };
    let size = file.size();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        size - offset
    );
    stream.write_all(head.as_bytes()).await?;
    let mut pos = offset;
    while pos < size {
        let end = tokio::select! {
            end = file.ready(pos) => end?,
            gone = left(&stream) => return Err(gone),
        };
        let n = (end - pos).min(sendfile::STEP as u64);
        sendfile::read_ahead(file.file(), pos + n, sendfile::STEP as u64);
        sendfile::send_file(&stream, file.file(), pos, n, STALL).await?;
        peering.count_sent(PeerSend::Sendfile, n);
        pos += n;
    }
    stream.shutdown().await
}

/// Resolves when the fetching peer closed its side or sent more than its one request
/// (it sends nothing after the head): the fetch is over.
async fn left(stream: &TcpStream) -> io::Error {
    loop {
        if let Err(e) = stream.readable().await {
            return e;
        }
        match stream.try_read(&mut [0u8; 64]) {
            Ok(0) => return io::Error::new(io::ErrorKind::ConnectionAborted, "the peer left"),
            Ok(_) => return io::Error::other("the peer sent more than one request"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return e,
        }
    }
}

/// Reads until the end of a head (a blank line) into `head`.
async fn read_head(stream: &mut TcpStream, head: &mut BytesMut) -> io::Result<()> {
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_MAX {
            return Err(io::Error::other("request head too large"));
        }
        if stream.read_buf(head).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// The blob, offset and pace a fetch asks for.
fn request(head: &[u8]) -> Result<(Digest, u64, bool), String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head)
        .map_err(|e| format!("unreadable request head: {e}"))?;
    let path = req.path.unwrap_or_default();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let digest = path
        .strip_prefix(PATH)
        .ok_or_else(|| format!("no such path: {path}"))?;
    let digest = Digest::parse(digest).map_err(|e| e.to_string())?;
    let (mut offset, mut background) = (0, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("offset", v)) => offset = v.parse().map_err(|_| format!("bad offset {v:?}"))?,
            Some(("background", v)) => background = v == "1",
            _ => return Err(format!("unknown parameter {pair:?}")),
        }
    }
    Ok((digest, offset, background))
}

/// A refusal, then the connection closes.
async fn answer(stream: &mut TcpStream, code: u16, reason: &str, why: &str) -> io::Result<()> {
    let out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{why}",
        why.len()
    );
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// Blob `digest` from `offset` on, from the node at `address`, as the fetch above. `None`
/// when the node does not serve such fetches (no HTTP/1.1 answer: an earlier version).
pub async fn fetch(
    address: &str,
    digest: &Digest,
    offset: u64,
    background: bool,
) -> Result<Option<BlobStream>, String> {
    let mut stream = tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(address))
        .await
        .map_err(|_| format!("cannot connect to {address} within 2 s"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    // A peer that vanished (power cut, cable) is found within seconds, as on the gRPC
    // links; one that stopped answering is given up after [`STALL`].
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    socket2::SockRef::from(&stream)
        .set_tcp_keepalive(&keepalive)
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {PATH}{digest}?offset={offset}&background={} HTTP/1.1\r\nhost: {address}\r\n\r\n",
        u8::from(background)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = BytesMut::with_capacity(CHUNK);
    match tokio::time::timeout(HEAD_WITHIN, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(())) => {}
        // Whatever ends the exchange before an HTTP/1.1 head: not a node that serves
        // fetches.
        Ok(Err(_)) => return Ok(None),
        Err(_) => return Err(format!("no answer from {address} within 10 s")),
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(&buf) else {
        return Ok(None);
    };
    let code = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or("an answer without a length")?;
    let _ = buf.split_to(head_len);
    if code != 200 {
        let mut why = buf.to_vec();
        let rest = length.saturating_sub(why.len() as u64).min(HEAD_MAX as u64);
        let mut rest = stream.take(rest);
        let _ = tokio::time::timeout(HEAD_WITHIN, rest.read_to_end(&mut why)).await;
        return Err(format!("{code}: {}", String::from_utf8_lossy(&why).trim()));
    }
    Ok(Some(body(stream, buf, length)))
}

/// The `length` bytes of a body, `buf` holding its first ones, in chunks of up to
/// [`CHUNK`]; a connection that ends first is an error.
fn body(stream: TcpStream, buf: BytesMut, length: u64) -> BlobStream {
    futures_util::stream::unfold((stream, buf, length), |(mut s, mut buf, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(CHUNK as u64) as usize;
        while buf.len() < want {
            buf.reserve(CHUNK - buf.len().min(CHUNK));
            let read = match tokio::time::timeout(STALL, s.read_buf(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    let stalled = format!("no bytes from the peer for {} s", STALL.as_secs());
                    return Some((Err(stalled), (s, buf, 0)));
                }
            };
            match read {
                Ok(0) => {
                    let short = format!(
                        "the peer's answer ended {left} bytes short: the upload it was sending from broke off, or the peer stopped"
                    );
                    return Some((Err(short), (s, buf, 0)));
                }
                Ok(_) => {}
                Err(e) => return Some((Err(format!("reading from the peer: {e}")), (s, buf, 0))),
            }
        }
        let chunk: Bytes = buf.split_to(want).freeze();
        let left = left - chunk.len() as u64;
        Some((Ok(chunk), (s, buf, left)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_that_does_not_answer_fetches_is_asked_over_grpc() {
        // As an earlier version's gRPC-only listener does: it takes the request and
        // closes the connection without an HTTP/1.1 answer.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
        });
        let d = Digest::of(b"x");
        let r = fetch(&address, &d, 0, false).await.unwrap();
        assert!(r.is_none(), "not taken as an answer");
    }

    #[tokio::test]
    async fn a_server_waiting_for_bytes_notices_the_fetcher_leave() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let waiting = tokio::spawn(async move { left(&server).await });
        drop(client);
        let gone = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("noticed")
            .unwrap();
        assert_eq!(gone.kind(), io::ErrorKind::ConnectionAborted, "{gone}");

        let mut client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let gone = left(&server).await;
        assert!(gone.to_string().contains("more than one request"), "{gone}");
    }

    #[test]
    fn requests_name_a_blob_an_offset_and_a_pace() {
        let d = Digest::of(b"x");
        let head = format!("GET {PATH}{d}?offset=7&background=1 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(request(head.as_bytes()).unwrap(), (d.clone(), 7, true));
        let head = format!("GET {PATH}{d} HTTP/1.1\r\n\r\n");
        assert_eq!(request(head.as_bytes()).unwrap(), (d, 0, false));
        for bad in [
            "GET /v2/ HTTP/1.1\r\n\r\n".to_owned(),
            format!("GET {PATH}sha256:zz HTTP/1.1\r\n\r\n"),
            format!("GET {PATH}{}?offset=-1 HTTP/1.1\r\n\r\n", Digest::of(b"x")),
            format!("GET {PATH}{}?tag=1 HTTP/1.1\r\n\r\n", Digest::of(b"x")),
        ] {
            assert!(request(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
    }
}
