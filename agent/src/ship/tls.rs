//! The agent's side of mutual TLS: the collector's CA and the agent's own certificate and key,
//! loaded from PEM files with errors that name the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A TLS file that is missing, unreadable or not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold what it should.
    #[error("{what} {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// A collector URL the agent refuses to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collector URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The host name of collector URL `url` (the name the collector's certificate must carry). The
/// URL must be `https://HOST[:PORT][/PATH]`: events never travel in plaintext, so `http://` and
/// every other scheme are refused, as is a URL without a host.
pub fn collector_host(url: &str) -> Result<String, UrlError> {
    let refuse = |reason: &str| UrlError {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|e| refuse(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {}
        Some(scheme) => {
            return Err(refuse(&format!(
                "scheme '{scheme}' refused: the collector is reached over https only"
            )))
        }
        None => return Err(refuse("no scheme: write https://HOST:PORT")),
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(refuse("no host"));
    }
    Ok(host.to_owned())
}

/// Paths of the agent's TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA that signed the collector's certificate.
    pub ca: PathBuf,
    /// The agent's certificate (its SAN is its identity).
    pub cert: PathBuf,
    /// The agent's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks all three files and builds the client configuration for `domain`
    /// (the host name the collector's certificate must carry).
    pub fn client_config(&self, domain: &str) -> Result<ClientTlsConfig, TlsError> {
        let ca = read_certificates("CA certificate", &self.ca)?;
        let cert = read_certificates("certificate", &self.cert)?;
        let key = read_key(&self.key)?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(domain))
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Reads a PEM file that must hold at least one certificate.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    let invalid = |reason: String| TlsError::Invalid {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in file".into()));
    }
    Ok(pem)
}

/// Reads a PEM file that must hold a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: "private key",
        path: path.to_owned(),
        reason: format!("no usable PEM private key: {e}"),
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_an_https_collector_url_is_accepted() {
        assert_eq!(
            collector_host("https://collector.example:50051").unwrap(),
            "collector.example"
        );
        assert_eq!(collector_host("HTTPS://10.0.0.5:443/").unwrap(), "10.0.0.5");
        assert_eq!(collector_host("https://[::1]:50051").unwrap(), "::1");
        for (url, says) in [
            ("http://collector.example:50051", "scheme 'http' refused"),
            ("grpc://collector.example:50051", "scheme 'grpc' refused"),
            ("collector.example:50051", "no scheme"),
            ("https:///path", "not a URL"),
            ("https://bad host", "not a URL"),
        ] {
            let err = collector_host(url).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{url:?}")) && err.contains(says),
                "{url}: {err}"
            );
        }
    }
    use super::*;

    #[test]
    fn missing_and_invalid_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let files = TlsFiles {
            ca: dir.path().join("nope.pem"),
            cert: garbage.clone(),
            key: garbage.clone(),
        };
        let err = files.client_config("localhost").unwrap_err().to_string();
        assert!(
            err.contains("CA certificate") && err.contains("nope.pem"),
            "{err}"
        );
        let files = TlsFiles {
            ca: garbage.clone(),
            ..files
        };
        let err = files.client_config("localhost").unwrap_err().to_string();
        assert!(
            err.contains("garbage.pem") && err.contains("no certificate"),
            "{err}"
        );
    }
}
