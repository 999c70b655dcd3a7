//! HTTPS to a node's registry: a blocking rustls client that trusts the test's CA,
//! presents a client certificate when given one, and keeps its connection open for
//! several requests (to show a reload drops none).

use super::http::Response;
use super::tls::Pair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A client configuration trusting `ca`, presenting `identity` if given.
pub fn client(ca: &Path, identity: Option<&Pair>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(p) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&p.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&p.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// The DER of the first certificate in a PEM file.
pub fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// One HTTPS connection to a node.
pub struct Conn {
    stream: StreamOwned<ClientConnection, TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    /// Connects and completes the handshake, or says why it failed.
    pub fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Conn, String> {
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        Ok(Conn {
            stream: StreamOwned::new(tls, tcp),
            addr,
        })
    }

    /// The certificate the server presented (DER).
    pub fn server_cert(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// `GET path` on this connection, kept open; the error says why there is no answer
    /// (a server that refused the client's certificate closes it).
    pub fn get(&mut self, path: &str) -> Result<Response, String> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.send(head.as_bytes())?;
        self.answer()
    }

    /// Writes bytes as they are (a request's head, its body, the next request).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| e.to_string())?;
        self.stream.flush().map_err(|e| e.to_string())
    }

    /// The next answer on this connection (its body by `Content-Length`); the error says
    /// why there is none.
    pub fn answer(&mut self) -> Result<Response, String> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte) {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => raw.push(byte[0]),
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut response = super::http::parse(&raw, true);
        let length: usize = response
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        response.body = body;
        Ok(response)
    }
}
