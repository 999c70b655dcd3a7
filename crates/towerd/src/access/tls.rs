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
use site_http::{PlainRefusal, TlsConfigs, TlsListener};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The certificates of the CA file `path` (PEM) that option `flag` names, as roots of
/// trust; an error says which file is wrong and how.
pub fn roots(flag: &str, path: &Path) -> Result<rustls::RootCertStore, String> {
    let what = format!("{flag} {}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(flag, path)?) {
        let c = c.map_err(|e| format!("{what}: not PEM: {e}"))?;
        roots.add(c).map_err(|e| format!("{what}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{what}: holds no certificate"));
    }
    Ok(roots)
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
            let roots = roots("--client-ca", path)?;
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

/// The API's HTTPS listener over `tcp` (the registry's listener: handshakes on tasks of
/// their own, bounded per address), plain HTTP told to use HTTPS in the API's shape.
pub fn listener(tcp: TcpListener, config: ServerConfig) -> std::io::Result<TlsListener> {
    let refusal = PlainRefusal {
        listener: "the tower's HTTPS API",
        content_type: "application/json",
        body: serde_json::to_string(&site_fleet_api::ErrorBody::new(
            "BAD_REQUEST",
            "this tower's API speaks HTTPS: use https://",
        ))
        .unwrap_or_default(),
    };
    let configs: Arc<dyn TlsConfigs> = Arc::new(Arc::new(config));
    TlsListener::serving(tcp, configs, refusal)
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
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
