//! HTTPS on the registry listener (`[registry.tls]`): the certificate chain and key a
//! node serves, and optionally the CA whose client certificates it requires.
//!
//! The files are read again when they change ([`Certificates::reload_if_changed`], which
//! the node calls every few seconds and on SIGHUP): the next connection gets the new
//! certificate, and connections already open keep theirs. A change that does not load
//! (a key written before its certificate, say) is logged and the old files stay in use.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// Where the registry's TLS material lives (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate, then any intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When given, clients must present a certificate this CA issued.
    pub client_ca: Option<PathBuf>,
}

/// The server configuration made from [`TlsFiles`], current as of the last reload.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' bytes as last read, loaded or not.
    seen: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the files; the error says which one is wrong and how.
    pub fn load(files: TlsFiles) -> Result<Certificates, String> {
        let bytes = read_all(&files)?;
        let config = server_config(&files, &bytes)?;
        Ok(Certificates {
            files,
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(bytes),
        })
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().expect("tls lock").clone()
    }

    /// Reads the files again; if their bytes changed and load, new connections get them.
    /// Returns whether the configuration changed.
    pub fn reload_if_changed(&self) -> bool {
        // Read under the lock: a SIGHUP and the periodic check at once cannot install
        // the older bytes last.
        let mut seen = self.seen.lock().expect("tls lock");
        let bytes = match read_all(&self.files) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "[registry.tls] not reloaded; serving the certificate loaded before");
                return false;
            }
        };
        if *seen == bytes {
            return false;
        }
        let config = server_config(&self.files, &bytes);
        *seen = bytes;
        match config {
            Ok(config) => {
                *self.current.write().expect("tls lock") = Arc::new(config);
                tracing::info!(cert = %self.files.cert.display(), "[registry.tls] certificate reloaded: new connections get it");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "[registry.tls] changed but does not load; serving the certificate loaded before");
                false
            }
        }
    }
}

/// The bytes of cert, key and client CA (empty when none), in that order.
fn read_all(files: &TlsFiles) -> Result<Vec<Vec<u8>>, String> {
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("[registry.tls] {what} {}: {e}", path.display()))
    };
    Ok(vec![
        read("cert", &files.cert)?,
        read("key", &files.key)?,
        match &files.client_ca {
            Some(ca) => read("client_ca", ca)?,
            None => Vec::new(),
        },
    ])
}

fn server_config(files: &TlsFiles, bytes: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let (cert, key, ca) = (&bytes[0], &bytes[1], &bytes[2]);
    let what = |name: &str, path: &PathBuf| format!("[registry.tls] {name} {}", path.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", what("cert", &files.cert)))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no certificate",
            what("cert", &files.cert)
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("{}: no private key: {e}", what("key", &files.key)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[registry.tls]: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| format!("{}: not PEM: {e}", what("client_ca", path)))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", what("client_ca", path)))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: holds no certificate", what("client_ca", path)));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", what("client_ca", path)))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and key {}: {e}",
            what("cert", &files.cert),
            files.key.display()
        )
    })?;
    // The registry speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Certificates {
    /// Reloads changed files every `every` until `stop` completes.
    pub async fn watch(
        self: Arc<Self>,
        every: std::time::Duration,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
            let me = self.clone();
            // File reads: off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}
