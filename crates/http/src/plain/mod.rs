//! The registry's plain HTTP/1.1 server.
//!
//! Why not hyper here: hyper writes every body through user space, and a site exists to
//! serve layers. This server parses requests (`head.rs`), hands them to the same
//! handlers as the HTTPS listener (which stays on hyper), and writes responses itself
//! (`response.rs`): a blob held in a file goes from the page cache to the socket with
//! `sendfile(2)`, never copied through the process. It also decides what becomes of a
//! request body a handler left unread (`conn.rs`): a small rest is read and discarded and
//! the connection kept; anything else is announced with `Connection: close`.

mod conn;
mod head;
mod inbound;
mod response;

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A request head as this server reads it: its length once whole, `None` while not, or
/// the status it is refused with. (For the fuzz target: see `site_http::request_head`.)
pub(crate) fn head_len(buf: &[u8]) -> Result<Option<usize>, u16> {
    match head::parse(buf) {
        Ok(Some((_, len))) => Ok(Some(len)),
        Ok(None) => Ok(None),
        Err(r) => Err(r.status),
    }
}

/// How long a stopping server waits for the requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What answers requests: the registry's dispatcher.
pub(crate) type Handler = Arc<dyn Fn(Request) -> BoxFuture<'static, Response> + Send + Sync>;

/// Limits of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A connection idle this long between requests is closed.
    pub idle: Duration,
    /// A request head must arrive whole within this time of its first byte.
    pub head: Duration,
    /// Largest request head.
    pub head_bytes: usize,
    /// A body left unread by its handler is read and discarded up to this many bytes so
    /// that the connection can be kept; a larger one closes it.
    pub drain_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Duration::from_secs(120),
            head: Duration::from_secs(30),
            head_bytes: 64 * 1024,
            drain_bytes: 1024 * 1024,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` completes; then stops accepting,
/// closes idle connections, and returns once the requests in flight are answered.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Handler,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let (done_tx, mut done) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let conn = conn::Conn::new(tcp, peer, handler.clone(), limits, stop.clone());
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            conn.run().await;
            drop(done_tx);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    // Every connection holds a sender: this returns once the last one has ended, or
    // after a grace period (a client sending or reading at a crawl does not hold the
    // node's stop for ever).
    if tokio::time::timeout(STOP_GRACE, done.recv()).await.is_err() {
        tracing::warn!(
            "connections still open {} s after the stop: closing them",
            STOP_GRACE.as_secs()
        );
    }
    Ok(())
}
