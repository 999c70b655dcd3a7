//! HTTPS on the API (`--tls-cert`, `--tls-key`, and `--client-ca` for client
//! certificates). A client certificate is optional in the handshake (a token over HTTPS
//! needs none) and verified against `--client-ca` when presented; the API's gate reads
//! its role from the connection ([`Peer`]).

use super::cert::name_and_unit;
use super::{Peer, Role};
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The server's configuration from the PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("--tls-cert", cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--tls-cert {}: not PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: holds no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("--tls-key", key)?)
        .map_err(|e| format!("--tls-key {}: no private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let what = format!("--client-ca {}", path.display());
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read("--client-ca", path)?) {
                let c = c.map_err(|e| format!("{what}: not PEM: {e}"))?;
                roots.add(c).map_err(|e| format!("{what}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{what}: holds no certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{what}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Connections that completed a handshake, as `axum::serve` takes them.
pub struct TlsApiListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsApiListener {
    /// Serves TLS with `config` on `tcp`; each handshake runs on a task of its own.
    pub fn new(tcp: TcpListener, config: ServerConfig) -> std::io::Result<TlsApiListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "API listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if !speaks_tls(&stream).await {
                        plain_refusal(stream, peer).await;
                        return;
                    }
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "API: TLS handshake refused")
                        }
                        Err(_) => tracing::info!(%peer, "API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsApiListener { ready, local })
    }
}

/// Whether the client's first byte opens a TLS handshake (waits for it, bounded).
async fn speaks_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(HANDSHAKE, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    )
}

/// A client speaking plain HTTP to the HTTPS listener is told so, in the API's shape.
async fn plain_refusal(mut stream: TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    tracing::info!(%peer, "API: plain HTTP on the HTTPS listener refused");
    let body = r#"{"error":{"code":"BAD_REQUEST","message":"this tower's API speaks HTTPS: use https://"}}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

impl axum::serve::Listener for TlsApiListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsApiListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsApiListener>) -> Peer {
        let certificate = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| {
                let (name, unit) = name_and_unit(leaf.as_ref());
                (
                    name.unwrap_or_else(|| "(no common name)".into()),
                    unit.as_deref().and_then(Role::parse),
                )
            });
        Peer { certificate }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Peer {
        Peer::default()
    }
}
