//! One connection: request heads read, handed to the handler with a body that reads
//! from the connection, responses written, and what the handler left of a body either
//! read and discarded (a small rest: the connection is kept) or announced with
//! `Connection: close` (RFC 9112 section 9.6).

use super::head::{self, Head};
use super::inbound::{Framing, Inbound, RequestBody};
use super::response::{self, Sent};
use super::{Handler, Limits};
use crate::Peer;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// How long a closing connection reads what the client still sends before it is
/// dropped (so that the client reads the answer rather than a reset).
const LINGER: Duration = Duration::from_secs(2);
/// How long the rest of a body a handler left (at most `drain_bytes`) may take to arrive
/// before the connection is closed instead (a slow link takes seconds for a MiB).
const DRAIN: Duration = Duration::from_secs(30);

pub(super) struct Conn {
    stream: Arc<TcpStream>,
    inbound: Arc<Mutex<Inbound>>,
    peer: SocketAddr,
    handler: Handler,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

/// What became of the wait for a request head.
enum Next {
    Request(Head),
    /// The client closed, went idle too long, or the server stops.
    Closed,
    /// An unreadable head: answered with this status, then closed.
    Refused(head::Refusal),
}

impl Conn {
    pub fn new(
        tcp: TcpStream,
        peer: SocketAddr,
        handler: Handler,
        limits: Limits,
        stop: watch::Receiver<bool>,
    ) -> Conn {
        let stream = Arc::new(tcp);
        Conn {
            inbound: Arc::new(Mutex::new(Inbound::new(stream.clone()))),
            stream,
            peer,
            handler,
            limits,
            stop,
        }
    }

    pub async fn run(mut self) {
        loop {
            let head = match self.next_head().await {
                Next::Request(head) => head,
                Next::Closed => return,
                Next::Refused(r) => {
                    tracing::debug!(peer = %self.peer, status = r.status, "request head refused: {}", r.reason);
                    if response::refuse(&self.stream, r.status, &r.reason)
                        .await
                        .is_ok()
                    {
                        self.linger().await;
                    }
                    return;
                }
            };
            match self.answer(head).await {
                Ok(true) => continue,
                Ok(false) => {
                    self.linger().await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "connection dropped mid-response");
                    return;
                }
            }
        }
    }

    /// Waits for the next request head: at most `idle` for its first byte, `head` for
    /// the rest, and not past the server's stop while nothing has arrived.
    async fn next_head(&mut self) -> Next {
        let idle_until = Instant::now() + self.limits.idle;
        let mut head_until: Option<Instant> = None;
        loop {
            {
                let mut inbound = self.inbound.lock().expect("inbound lock");
                if !inbound.buf.is_empty() {
                    let too_large = || {
                        Next::Refused(head::Refusal {
                            status: 431,
                            reason: "request head too large".into(),
                        })
                    };
                    match head::parse(&inbound.buf) {
                        Ok(Some((_, len))) if len > self.limits.head_bytes => return too_large(),
                        Ok(Some((head, len))) => {
                            let _ = inbound.buf.split_to(len);
                            return Next::Request(head);
                        }
                        Ok(None) if inbound.buf.len() > self.limits.head_bytes => {
                            return too_large()
                        }
                        Ok(None) => {}
                        Err(r) => return Next::Refused(r),
                    }
                    head_until.get_or_insert(Instant::now() + self.limits.head);
                }
            }
            let waiting_for_first = head_until.is_none();
            let until = head_until.unwrap_or(idle_until);
            let inbound = self.inbound.clone();
            let read = poll_fn(|cx| inbound.lock().expect("inbound lock").poll_fill(cx));
            let stopped = self.stop.wait_for(|s| *s);
            tokio::select! {
                r = tokio::time::timeout_at(until, read) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Next::Closed,
                },
                _ = stopped, if waiting_for_first => return Next::Closed,
            }
        }
    }

    /// Answers one request; `Ok(true)` if the connection may serve another.
    async fn answer(&mut self, head: Head) -> std::io::Result<bool> {
        let has_body = head.framing != Framing::Done;
        // `100 Continue` goes out when the handler first reads the body: a request
        // refused on its head alone is answered before the client sends any of it.
        let generation = self
            .inbound
            .lock()
            .expect("inbound lock")
            .begin(head.framing, head.expects_continue && has_body);
        let body = Body::new(RequestBody::new(self.inbound.clone(), generation));
        let mut request = Request::new(body);
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        request
            .extensions_mut()
            .insert(ConnectInfo(Peer(self.peer)));
        let response = (self.handler)(request).await;
        // What the handler left of the body: a small rest is read after the answer. A
        // client still waiting for `100 Continue` sends none of it: the answer says
        // close, and the connection ends there.
        let (left, waiting) = {
            let inbound = self.inbound.lock().expect("inbound lock");
            (inbound.framing, inbound.continue_pending)
        };
        let drain = match left {
            _ if waiting => None,
            Framing::Done => Some(0),
            Framing::Length(n) if n <= self.limits.drain_bytes => Some(n),
            _ => None,
        };
        let keep = head.keep_alive && drain.is_some() && !*self.stop.borrow();
        let sent =
            response::write(&self.stream, &head.method, head.version, response, keep).await?;
        if sent == Sent::Closes {
            return Ok(false);
        }
        if drain.is_some_and(|n| n > 0) && !self.discard_rest().await {
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads and discards the rest of the current body (for [`DRAIN`] at most).
    async fn discard_rest(&self) -> bool {
        let inbound = self.inbound.clone();
        let rest = poll_fn(move |cx| {
            let mut inbound = inbound.lock().expect("inbound lock");
            loop {
                match std::task::ready!(inbound.poll_data(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(_)) => return std::task::Poll::Ready(false),
                    None => return std::task::Poll::Ready(true),
                }
            }
        });
        timeout(DRAIN, rest).await.unwrap_or(false)
    }

    /// Closes our side, then reads and drops what the client still sends for a moment,
    /// so that the answer is read before the connection resets.
    async fn linger(&self) {
        // SAFETY: the socket is open while `self.stream` lives.
        unsafe { libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_WR) };
        let inbound = self.inbound.clone();
        let drained = poll_fn(move |cx| {
            let mut inbound = inbound.lock().expect("inbound lock");
            loop {
                inbound.buf.clear();
                match std::task::ready!(inbound.poll_fill(cx)) {
                    Ok(n) if n > 0 => continue,
                    _ => return std::task::Poll::Ready(()),
                }
            }
        });
        let _ = timeout(LINGER, drained).await;
    }
}
