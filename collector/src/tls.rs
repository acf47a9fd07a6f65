//! Server TLS configuration: mutual TLS only, rustls with the ring provider.
//!
//! Every client must present a certificate that chains to the client CA; there is no plaintext
//! and no optional-auth mode. ALPN offers only `h2` (gRPC).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A TLS input file is unusable, or the files do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file (server chain or client CA) is missing, unreadable or invalid.
    #[error("certificate file {}: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key file is missing, unreadable or invalid.
    #[error("private key file {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client CA file holds no usable trust anchor.
    #[error("client CA file {}: {reason}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The ring provider cannot serve the default protocol versions (a build problem).
    #[error("TLS provider: {0}")]
    Provider(String),
    /// The certificate and key were each readable but rustls refused them together.
    #[error("certificate {} with key {}: {reason}", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        reason: String,
    },
}

/// Reads every certificate in a PEM file, checking that each parses as X.509.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    // Read first so a missing file reports the I/O error, not a PEM one.
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM CERTIFICATE block found".into()));
    }
    for (i, cert) in certs.iter().enumerate() {
        X509Certificate::from_der(cert)
            .map_err(|e| err(format!("certificate #{} is not valid X.509: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |reason: String| TlsError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => err("no PEM private key block found".into()),
        e => err(format!("invalid PEM: {e}")),
    })
}

/// Builds the mTLS server configuration from the server certificate chain, its key and the CA
/// that client certificates must chain to.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let private_key = load_key(key)?;
    let ca_err = |reason: String| TlsError::ClientCa {
        path: client_ca.to_path_buf(),
        reason,
    };
    let ca_certs = load_certs(client_ca)?;
    let mut roots = RootCertStore::empty();
    for (i, ca) in ca_certs.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| ca_err(format!("certificate #{} is not a usable CA: {e}", i + 1)))?;
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ca_err(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Provider(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
