//! mTLS of a node's gRPC: the `[tls]` certificate, key and site CA make one server
//! configuration (the api and cluster listeners: clients must present a certificate of
//! the site CA), one client configuration (the node towards its peers, which it
//! verifies against the same CA), and the [`PeerCheck`] that keeps the cluster listener
//! to the site's nodes.
//!
//! The tower and the nodes hold certificates of the same CA, so a client certificate of
//! that CA is not enough to speak for a node. A caller of the cluster listener must
//! present a certificate a node could serve with: valid for server authentication and
//! naming the host of one of this node's peers, as the peers' certificates must for the
//! node's own calls to them.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A node's TLS settings.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// For the node's listeners: its identity, and client certificates required.
    pub server: ServerTlsConfig,
    /// For the node's calls to peers: its identity, peers verified against the CA.
    pub client: ClientTlsConfig,
    /// Who may call the cluster listener.
    pub peers: PeerCheck,
}

impl NodeTls {
    /// From PEM bytes: the node's certificate (chain) and private key, and the site CA.
    pub fn from_pem(cert: &[u8], key: &[u8], ca_pem: &[u8]) -> Result<NodeTls, String> {
        let identity = Identity::from_pem(cert, key);
        let ca = Certificate::from_pem(ca_pem);
        Ok(NodeTls {
            server: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone()),
            client: ClientTlsConfig::new().identity(identity).ca_certificate(ca),
            peers: PeerCheck::from_ca_pem(ca_pem)?,
        })
    }
}

/// How long a chain found valid for a host is taken as such without verifying it again.
const ADMITTED_FOR: Duration = Duration::from_secs(600);

/// Tells whether a client certificate chain is one a node of the site serves with.
#[derive(Clone)]
pub struct PeerCheck {
    verifier: Arc<WebPkiServerVerifier>,
    /// Chains verified lately (their end entity), with the host each was valid for: peers
    /// call many times a second over the same few connections.
    admitted: Arc<Mutex<Admitted>>,
}

/// End-entity certificates (DER) with the host each was found valid for, and when.
type Admitted = HashMap<Vec<u8>, (String, Instant)>;

impl std::fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerCheck")
    }
}

impl PeerCheck {
    /// Checks against the CA certificates in `pem`.
    pub fn from_ca_pem(pem: &[u8]) -> Result<PeerCheck, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a CA certificate is unusable: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA file holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("the CA certificates are unusable: {e}"))?;
        Ok(PeerCheck {
            verifier,
            admitted: Arc::default(),
        })
    }

    /// The first of `hosts` that `chain` (end entity first) is a valid server certificate
    /// for, if any.
    pub fn host_of_chain<'h>(
        &self,
        chain: &[CertificateDer<'_>],
        hosts: impl IntoIterator<Item = &'h str>,
    ) -> Option<&'h str> {
        let (end_entity, intermediates) = chain.split_first()?;
        let hosts: Vec<&'h str> = hosts.into_iter().collect();
        let mut admitted = self.admitted.lock().expect("admitted chains");
        if let Some((host, at)) = admitted.get(end_entity.as_ref()) {
            if at.elapsed() < ADMITTED_FOR {
                if let Some(h) = hosts.iter().find(|h| **h == host) {
                    return Some(h);
                }
            }
        }
        let now = UnixTime::now();
        let host = hosts.into_iter().find(|host| {
            ServerName::try_from(*host).is_ok_and(|name| {
                self.verifier
                    .verify_server_cert(end_entity, intermediates, &name, &[], now)
                    .is_ok()
            })
        })?;
        if admitted.len() >= 64 {
            admitted.clear();
        }
        admitted.insert(end_entity.to_vec(), (host.to_owned(), Instant::now()));
        Some(host)
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 literal removed): the name a peer's
/// certificate must carry.
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert_eq!(super::host_of("10.0.0.2:50061"), "10.0.0.2");
        assert_eq!(super::host_of("node-2.site:50061"), "node-2.site");
        assert_eq!(super::host_of("[::1]:50061"), "::1");
    }
}
