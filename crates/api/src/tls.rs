//! mTLS of a node's gRPC: the `[tls]` certificate, key and site CA make one server
//! configuration (the api and cluster listeners: clients must present a certificate of
//! the site CA) and one client configuration (the node towards its peers, which it
//! verifies against the same CA).

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A node's TLS settings.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// For the node's listeners: its identity, and client certificates required.
    pub server: ServerTlsConfig,
    /// For the node's calls to peers: its identity, peers verified against the CA.
    pub client: ClientTlsConfig,
}

impl NodeTls {
    /// From PEM bytes: the node's certificate (chain) and private key, and the site CA.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> NodeTls {
        let identity = Identity::from_pem(cert, key);
        let ca = Certificate::from_pem(ca);
        NodeTls {
            server: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone()),
            client: ClientTlsConfig::new().identity(identity).ca_certificate(ca),
        }
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
