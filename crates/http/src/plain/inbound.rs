//! The reading side of a connection: buffered bytes, and the body of the request being
//! handled, decoded from its `Content-Length` or `chunked` framing.
//!
//! The connection and the body of its current request share one [`Inbound`]; a body
//! outliving its request (a handler that kept it) reads nothing once the next request
//! has begun (`generation`).

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// Bytes read at most at once.
const READ_SIZE: usize = 256 * 1024;
/// Longest chunk-size line (size, extensions) or trailer line accepted.
const LINE_LIMIT: usize = 4096;
/// Most trailer bytes of one body.
const TRAILERS_LIMIT: usize = 16 * 1024;

/// How the rest of the current request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at the given point.
    Chunked(Chunk),
    /// The body has been read whole.
    Done,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Next: a chunk-size line.
    Size,
    /// This many bytes of the current chunk are left.
    Data(u64),
    /// Next: the CRLF after a chunk's data.
    DataEnd,
    /// Next: trailer lines, up to an empty one.
    Trailers,
}

/// The connection's reading side.
pub(super) struct Inbound {
    pub stream: Arc<TcpStream>,
    pub buf: BytesMut,
    pub framing: Framing,
    /// Bumped when a new request begins.
    pub generation: u64,
    /// Body bytes decoded for the current request.
    pub consumed: u64,
    /// The client waits for `100 Continue` before it sends the body: sent on the body's
    /// first read.
    pub continue_pending: bool,
    /// Trailer bytes of the current chunked body.
    trailers: usize,
}

impl Inbound {
    pub fn new(stream: Arc<TcpStream>) -> Inbound {
        Inbound {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            framing: Framing::Done,
            generation: 0,
            consumed: 0,
            continue_pending: false,
            trailers: 0,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_SIZE.max(self.buf.len()));
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// A new request begins, its body framed so; returns its generation.
    pub fn begin(&mut self, framing: Framing, continue_pending: bool) -> u64 {
        self.generation += 1;
        self.framing = framing;
        self.consumed = 0;
        self.trailers = 0;
        self.continue_pending = continue_pending;
        self.generation
    }

    /// Sends `100 Continue` if the client waits for it (25 bytes: a socket whose
    /// previous answers were read takes them at once; otherwise this waits for room).
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        while self.continue_pending {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(CONTINUE) {
                Ok(n) if n == CONTINUE.len() => self.continue_pending = false,
                // A partial write of 25 bytes into a socket with room does not happen;
                // if it did, the stream would be out of step: give up on it.
                Ok(_) => return Poll::Ready(Err(io::Error::other("100 Continue cut short"))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next piece of the body: `None` once it is whole.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if let Err(e) = ready!(self.poll_continue(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            match self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if self.buf.is_empty() {
                        match ready!(self.poll_fill(cx)) {
                            Ok(0) => return Poll::Ready(Some(Err(short_body()))),
                            Ok(_) => continue,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    let n = (self.buf.len() as u64).min(left) as usize;
                    let data = self.buf.split_to(n).freeze();
                    self.consumed += n as u64;
                    self.framing = match self.framing {
                        Framing::Length(l) => Framing::Length(l - n as u64),
                        _ if left == n as u64 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left - n as u64)),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::Chunked(chunk) => {
                    let Some(line) = self.take_line()? else {
                        match ready!(self.poll_fill(cx)) {
                            Ok(0) => return Poll::Ready(Some(Err(short_body()))),
                            Ok(_) => continue,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    };
                    self.framing = match chunk {
                        Chunk::Size => match chunk_size(&line)? {
                            0 => Framing::Chunked(Chunk::Trailers),
                            n => Framing::Chunked(Chunk::Data(n)),
                        },
                        Chunk::DataEnd if line.is_empty() => Framing::Chunked(Chunk::Size),
                        Chunk::DataEnd => {
                            return Poll::Ready(Some(Err(bad_chunk("data longer than its size"))))
                        }
                        Chunk::Trailers if line.is_empty() => Framing::Done,
                        Chunk::Trailers => {
                            self.trailers += line.len();
                            if self.trailers > TRAILERS_LIMIT {
                                return Poll::Ready(Some(Err(bad_chunk("trailers too long"))));
                            }
                            Framing::Chunked(Chunk::Trailers)
                        }
                        Chunk::Data(_) => unreachable!("handled above"),
                    };
                }
            }
        }
    }

    /// A whole line (without its CRLF) from the buffer, if one is there.
    fn take_line(&mut self) -> io::Result<Option<Bytes>> {
        let Some(at) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > LINE_LIMIT {
                return Err(bad_chunk("line too long"));
            }
            return Ok(None);
        };
        if at == 0 || self.buf[at - 1] != b'\r' {
            return Err(bad_chunk("line not ended by CRLF"));
        }
        let mut line = self.buf.split_to(at + 1);
        line.truncate(at - 1);
        Ok(Some(line.freeze()))
    }
}

/// A chunk-size line's size (extensions ignored).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = std::str::from_utf8(hex).map_err(|_| bad_chunk("size not hexadecimal"))?;
    let hex = hex.trim_end_matches([' ', '\t']);
    if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_chunk("size not hexadecimal"));
    }
    Ok(u64::from_str_radix(hex, 16).expect("checked digits"))
}

/// The body of a request, read from its connection as the handler asks.
pub(super) struct RequestBody {
    inbound: Arc<Mutex<Inbound>>,
    generation: u64,
    /// Set once the body is whole (or failed): no more locking.
    ended: bool,
}

impl RequestBody {
    pub fn new(inbound: Arc<Mutex<Inbound>>, generation: u64) -> RequestBody {
        RequestBody {
            inbound,
            generation,
            ended: false,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let generation = self.generation;
        let result = {
            let mut inbound = self.inbound.lock().expect("inbound lock");
            if inbound.generation != generation {
                Poll::Ready(Some(Err(io::Error::other("the request has been answered"))))
            } else {
                inbound.poll_data(cx)
            }
        };
        match result {
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
            || self
                .inbound
                .lock()
                .is_ok_and(|i| i.generation == self.generation && i.framing == Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.inbound.lock().map(|i| (i.generation, i.framing)) {
            Ok((g, Framing::Length(n))) if g == self.generation => SizeHint::with_exact(n),
            Ok((g, Framing::Done)) if g == self.generation => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn short_body() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection closed before the request body ended",
    )
}

fn bad_chunk(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed chunked body: {what}"),
    )
}
