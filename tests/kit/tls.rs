//! Certificates for mTLS tests, made with the `openssl` command line: a site CA, node
//! certificates for 127.0.0.1, a tower client certificate, and a stranger's CA and
//! client certificate that the site must refuse.

use super::tools::{require, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a TLS test needs.
pub struct Certs {
    pub ca: PathBuf,
    /// For the nodes: serverAuth and clientAuth, SAN IP 127.0.0.1.
    pub node: Pair,
    /// For towerctl: clientAuth.
    pub tower: Pair,
    /// Signed by another CA.
    pub stranger: Pair,
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

fn new_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn new_leaf(dir: &Path, ca: &str, name: &str, extensions: &str) -> Pair {
    leaf_of(dir, ca, name, &format!("/CN={name}"), extensions)
}

fn leaf_of(dir: &Path, ca: &str, name: &str, subject: &str, extensions: &str) -> Pair {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

impl Certs {
    /// Makes them in `dir`. `None` when openssl is missing (outside CI only).
    pub fn generate(dir: &Path) -> Option<Certs> {
        require("openssl")?;
        new_ca(dir, "site-ca");
        new_ca(dir, "other-ca");
        let node = new_leaf(
            dir,
            "site-ca",
            "node",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        let tower = new_leaf(dir, "site-ca", "tower", "extendedKeyUsage=clientAuth\n");
        let stranger = new_leaf(dir, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n");
        Some(Certs {
            ca: dir.join("site-ca.pem"),
            node,
            tower,
            stranger,
        })
    }

    /// Another server certificate for 127.0.0.1 from the site CA (in the CA's directory),
    /// as a certificate renewed on disk would be.
    pub fn renewed_server(&self, name: &str) -> Pair {
        let dir = self.ca.parent().unwrap();
        new_leaf(
            dir,
            "site-ca",
            name,
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate of the site CA for `name` in the organisational unit `unit`.
    pub fn client_in_unit(&self, name: &str, unit: &str) -> Pair {
        let dir = self.ca.parent().unwrap();
        leaf_of(
            dir,
            "site-ca",
            name,
            &format!("/CN={name}/OU={unit}"),
            "extendedKeyUsage=clientAuth\n",
        )
    }

    /// A gRPC client of `api` over TLS, presenting `client` (if any).
    pub async fn connect(
        &self,
        api: std::net::SocketAddr,
        client: Option<&Pair>,
    ) -> Result<super::grpc::Client, tonic::transport::Error> {
        let channel = self.channel(api, client).await?;
        Ok(site_api::pb::site_client::SiteClient::new(channel))
    }

    /// A TLS channel to `addr`, presenting `client` (if any).
    pub async fn channel(
        &self,
        addr: std::net::SocketAddr,
        client: Option<&Pair>,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&self.ca).unwrap()));
        if let Some(p) = client {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(&p.cert).unwrap(),
                std::fs::read(&p.key).unwrap(),
            ));
        }
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }
}
