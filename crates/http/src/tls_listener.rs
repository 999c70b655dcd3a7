//! An HTTPS listener (the registry's, and the tower's API's): TCP connections accepted on
//! a task of their own, each handshake on its own task (a slow client holds up no other),
//! and the connections that complete one handed to the HTTP server. A client speaking
//! plain HTTP to the port gets a 400 that says so, and a log line.

use crate::https::Certificates;
use rustls::ServerConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may stay silent before its first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);
/// Handshakes in progress at once, and from one address: a connection over either is
/// closed at once, so idle connections from one client cannot keep others out.
const HANDSHAKES: usize = 256;
const HANDSHAKES_PER_ADDRESS: usize = 16;
/// A TLS record of a handshake begins with this byte (ClientHello included).
const TLS_HANDSHAKE: u8 = 0x16;

/// Connections that completed a TLS handshake, as `axum::serve` takes them.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Where a listener's TLS configuration comes from, read at each connection.
pub trait TlsConfigs: Send + Sync + 'static {
    /// The configuration a new connection gets.
    fn current(&self) -> Arc<ServerConfig>;
}

impl TlsConfigs for Certificates {
    fn current(&self) -> Arc<ServerConfig> {
        Certificates::current(self)
    }
}

/// One configuration for every connection.
impl TlsConfigs for Arc<ServerConfig> {
    fn current(&self) -> Arc<ServerConfig> {
        self.clone()
    }
}

/// What a client that speaks plain HTTP to the port is told, and what it is called in
/// the log.
#[derive(Debug, Clone)]
pub struct PlainRefusal {
    /// The listener, as the log names it ("the HTTPS registry listener").
    pub listener: &'static str,
    /// The answer's content type.
    pub content_type: &'static str,
    /// The answer's body.
    pub body: String,
}

impl PlainRefusal {
    /// The registry's: plain text, as distribution answers.
    pub fn registry() -> PlainRefusal {
        PlainRefusal {
            listener: "the HTTPS registry listener",
            content_type: "text/plain",
            body: "Client sent an HTTP request to an HTTPS server.\n".into(),
        }
    }
}

impl TlsListener {
    /// Serves TLS on `tcp` with the certificates current at each connection. The accept
    /// task ends when the listener is dropped.
    pub fn new(tcp: TcpListener, certificates: Arc<Certificates>) -> std::io::Result<Self> {
        TlsListener::serving(tcp, certificates, PlainRefusal::registry())
    }

    /// Serves TLS on `tcp` with what `configs` gives at each connection, answering
    /// plain HTTP with `refusal`.
    pub fn serving(
        tcp: TcpListener,
        configs: Arc<dyn TlsConfigs>,
        refusal: PlainRefusal,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, configs, Arc::new(refusal), tx));
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    configs: Arc<dyn TlsConfigs>,
    refusal: Arc<PlainRefusal>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "HTTPS listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // Dropped: closed at once.
        };
        let Some(claim) = Claim::take(&per_address, peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(configs.current());
        let (tx, refusal) = (tx.clone(), refusal.clone());
        tokio::spawn(async move {
            let (_permit, _claim) = (permit, claim);
            let handshake = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                handshake(stream, peer, acceptor, &refusal),
            );
            if let Ok(Some(tls)) = handshake.await {
                let _ = tx.send((tls, peer)).await;
            }
        });
    }
}

/// One of an address's handshakes in progress, given back when dropped.
struct Claim {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    addr: IpAddr,
}

impl Claim {
    fn take(map: &Arc<Mutex<HashMap<IpAddr, usize>>>, addr: IpAddr) -> Option<Claim> {
        let mut m = map.lock().expect("handshakes lock");
        let n = m.entry(addr).or_default();
        if *n >= HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Claim {
            map: map.clone(),
            addr,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("handshakes lock");
        if let Some(n) = m.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.addr);
            }
        }
    }
}

/// The TLS connection, or `None` (logged) when the client spoke plain HTTP or failed the
/// handshake.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    refusal: &PlainRefusal,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await;
    if peeked.ok()?.ok()? == 0 {
        return None;
    }
    if first[0] != TLS_HANDSHAKE {
        tracing::warn!(%peer, "plain HTTP refused on {}: the client must use https://", refusal.listener);
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            refusal.content_type,
            refusal.body.len(),
            refusal.body
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::info!(%peer, error = %e, "{}: TLS handshake failed", refusal.listener);
            None
        }
    }
}
