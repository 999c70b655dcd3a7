#![deny(missing_docs)]
//! gRPC API of the site registry: the service a node runs for the contract of
//! `proto/site.proto` (generated in `site-proto`), the peer service of `proto/peer.proto`,
//! and the GC policy it drives.
//!
//! Rule of this crate: handlers are thin. They check input, call the node's components
//! they are given ([`NodeParts`]) or execute a command, and map errors through the one
//! table in [`status`].

pub mod ask_wire;
mod convert;
pub mod deliveries;
mod ensure;
mod forwarded;
pub mod node;
pub mod peer;
pub mod peer_bytes;
pub mod service;
pub mod status;
pub mod tls;

pub use node::NodeParts;
pub use service::SiteService;
pub use site_node::collector::{Collector, GcConfig};

/// The generated contracts (`site-proto`), servers included.
pub use site_proto::{pb, peer_pb};

use tokio::sync::watch;

/// HTTP/2 receive window of one stream (bytes a sender may have in flight on it).
pub const STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 receive window of one connection.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame a node takes: blob streams come as 1 MiB messages, and the
/// protocol's default of 16 KiB would cut each into 64 frames, each parsed, flow
/// controlled and (on loopback, where the receiving stack runs in the sender's system
/// call) sent on its own.
pub const MAX_FRAME: u32 = 1 << 20;

/// Serves `service` on `listener` (over mTLS when `tls` is given) until `shutdown` turns
/// true, then finishes the calls in flight (event streams end at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: SiteService,
    max_message: usize,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let service = pb::site_server::SiteServer::new(service).max_decoding_message_size(max_message);
    serve_one(tcp(listener), service, tls, shutdown).await
}

/// Serves the peer service on `listener` (`[cluster] listen`, over mTLS when `tls` is
/// given) until `shutdown` turns true.
pub async fn serve_peers(
    listener: tokio::net::TcpListener,
    service: peer::PeerService,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let peering = service.peer_files().clone();
    let service =
        peer_pb::peer_server::PeerServer::new(service).max_decoding_message_size(64 << 20);
    match tls {
        Some(tls) => serve_one(tcp(listener), service, Some(tls), shutdown).await,
        // Peers fetch blob bytes from the page cache (`peer_bytes.rs`) besides gRPC.
        None => {
            let incoming = peer_bytes::incoming(listener, peering, shutdown.clone());
            serve_one(incoming, service, None, shutdown).await
        }
    }
}

/// A listener's connections, with TCP_NODELAY.
fn tcp(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// One gRPC server of a node on the connections of `incoming`: large HTTP/2 windows,
/// mTLS when configured, graceful shutdown.
async fn serve_one<S, I, IO, IE>(
    incoming: I,
    service: S,
    tls: Option<tonic::transport::ServerTlsConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        // Blob streams are bulk transfers: HTTP/2's default 64 KiB windows would stall the
        // sender once per window on every round trip.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_frame_size(Some(MAX_FRAME))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
