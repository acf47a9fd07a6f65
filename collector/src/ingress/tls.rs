//! Server TLS configuration: rustls with the ring provider, ALPN `h2` (gRPC) only.
//!
//! On the ingest listener every client must present a certificate that chains to the client CA;
//! there is no plaintext mode. Only the enrolment listener ([`ClientAuth::Optional`]) admits a
//! client without a certificate, and serves nothing but enrolment there.

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

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS: a client without a certificate from the client CA is refused (ingest).
    Required,
    /// A client may come without a certificate; one it presents must chain to the client CA
    /// (the enrolment listener: first enrolments bring a token, renewals their certificate).
    Optional,
}

/// Builds the mTLS server configuration from the server certificate chain, its key and the CA
/// that client certificates must chain to.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(cert, key, client_ca, ClientAuth::Required)
}

/// [`server_config`] with the client certificate `required` or optional.
pub fn server_config_with(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_auth: ClientAuth,
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
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match client_auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder.build().map_err(|e| ca_err(e.to_string()))?;
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

/// Size and modification time of each watched file (`None` when it cannot be read).
type Stamp = Vec<Option<(u64, std::time::SystemTime)>>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// The server TLS configuration, rebuilt when its files change on disk.
///
/// New connections use the configuration current when they arrive; established ones keep the one
/// they were made with. Files that change but do not load (a half-written key, a certificate that
/// does not match) are reported with the file at fault and the previous configuration stays.
pub struct ReloadingConfig {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    client_auth: ClientAuth,
    current: std::sync::RwLock<(Stamp, Arc<ServerConfig>)>,
}

impl ReloadingConfig {
    /// Loads the three files (an error names the file at fault).
    pub fn load(cert: &Path, key: &Path, client_ca: &Path) -> Result<ReloadingConfig, TlsError> {
        ReloadingConfig::load_with(cert, key, client_ca, ClientAuth::Required)
    }

    /// [`ReloadingConfig::load`] with the client certificate required or optional.
    pub fn load_with(
        cert: &Path,
        key: &Path,
        client_ca: &Path,
        client_auth: ClientAuth,
    ) -> Result<ReloadingConfig, TlsError> {
        let seen = stamp(&[cert, key, client_ca]);
        let config = server_config_with(cert, key, client_ca, client_auth)?;
        Ok(ReloadingConfig {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.to_owned(),
            client_auth,
            current: std::sync::RwLock::new((seen, config)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Rebuilds the configuration if a file changed since it was last looked at. Returns
    /// `None` when nothing changed, `Some(Ok(()))` after a reload, `Some(Err(_))` when the
    /// changed files do not load (the previous configuration stays in use).
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let seen = stamp(&[&self.cert, &self.key, &self.client_ca]);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == seen {
            return None;
        }
        let result = server_config_with(&self.cert, &self.key, &self.client_ca, self.client_auth);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.0 = seen;
        Some(result.map(|config| current.1 = config))
    }

    /// Checks the files every `interval` until `stop` is cancelled, logging each reload.
    pub async fn watch(
        self: Arc<Self>,
        interval: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        crate::watch::every(interval, stop, || async {
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Some(Ok(()))) => tracing::info!(
                    cert = %self.cert.display(),
                    key = %self.key.display(),
                    client_ca = %self.client_ca.display(),
                    "TLS files changed: new connections use the reloaded certificate, key and client CA"
                ),
                Ok(Some(Err(e))) => tracing::error!(
                    error = %e,
                    "TLS files changed but do not load: keeping the previous configuration"
                ),
                Ok(None) | Err(_) => {}
            }
        })
        .await
    }
}

/// Every reason `kestrel_collector_tls_refusals_total` is labelled with: the handshake's
/// ([`refusal_label`]), its timeout, and the identity check's
/// ([`crate::ingress::identity::IdentityError::refusal_label`]).
pub const REFUSAL_REASONS: [&str; 15] = [
    "no_certificate",
    "certificate_expired",
    "certificate_not_yet_valid",
    "unknown_issuer",
    "bad_signature",
    "certificate_revoked",
    "wrong_key_usage",
    "certificate_invalid",
    "protocol_error",
    "handshake_timeout",
    "certificate_unparsable",
    "no_usable_identity",
    "foreign_trust_domain",
    "identity_revoked",
    "other",
];

/// Why a TLS handshake failed, as a label of [`REFUSAL_REASONS`].
pub fn refusal_label(error: &std::io::Error) -> &'static str {
    use rustls::CertificateError as C;
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "other";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } => "certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_yet_valid",
            C::UnknownIssuer => "unknown_issuer",
            C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => "bad_signature",
            C::Revoked => "certificate_revoked",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "wrong_key_usage",
            _ => "certificate_invalid",
        },
        _ => "protocol_error",
    }
}

/// Why a TLS handshake failed, in words an operator can act on (the raw error otherwise).
pub fn refusal_reason(error: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    let cert = match tls {
        rustls::Error::InvalidCertificate(cert) => cert,
        rustls::Error::NoCertificatesPresented => {
            return "the client presented no certificate (mutual TLS is required)".into()
        }
        other => return other.to_string(),
    };
    let what = match cert {
        C::Expired | C::ExpiredContext { .. } => "client certificate expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "client certificate not yet valid",
        C::UnknownIssuer => "client certificate not issued by the client CA (unknown issuer)",
        C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
            "client certificate signature does not verify against the client CA"
        }
        C::Revoked => "client certificate revoked",
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "client certificate not valid for client authentication (extended key usage)"
        }
        _ => "client certificate invalid",
    };
    format!("{what}: {tls}")
}
