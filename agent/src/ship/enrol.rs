//! Enrolment: the agent makes its key on the node, asks the collector's enrolment listener to
//! sign a certificate for this node, writes key (0600) and certificate to `--key`/`--cert`, and
//! renews at two thirds of the certificate's lifetime. The shipper watches those files, so the
//! next connection uses the new certificate; the stream it replaces finishes its
//! acknowledgements first.
//!
//! The proof of which node this is: the current certificate when it is still valid (a
//! renewal); otherwise the token file (`--enrol-token`, re-read at every enrolment, since a
//! projected Kubernetes token rotates): a one-time join token (`kestrel-join-…`) or a
//! Kubernetes service account token.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use kestrel_proto::enrol_request::Proof;
use kestrel_proto::enrolment_client::EnrolmentClient;
use kestrel_proto::{EnrolRequest, EnrolResponse, Renewal};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use tokio::sync::Notify;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// Renewal starts once this share of the certificate's validity has passed.
const RENEW_AT: f64 = 2.0 / 3.0;
/// A certificate closer to its end than this is not used as a renewal's proof.
const PROOF_MARGIN: Duration = Duration::from_secs(2);
/// Longest wait between failed attempts (before the certificate's own deadline shortens it).
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Where and how this agent enrols.
#[derive(Debug, Clone)]
pub struct Enroller {
    /// The enrolment listener, `https://host:port`.
    pub url: String,
    /// Host name the collector's certificate must carry.
    pub domain: String,
    /// The CA that signed the collector's certificate.
    pub ca: PathBuf,
    /// Where the certificate goes (the shipper's `--cert`).
    pub cert: PathBuf,
    /// Where the key goes (the shipper's `--key`).
    pub key: PathBuf,
    /// The proof file: a join token or a projected service account token.
    pub token: Option<PathBuf>,
    /// The node to enrol as.
    pub node: String,
    /// Notified when the collector refuses the current certificate (revoked): enrol again at
    /// once, with the token when the renewal is refused too.
    pub refused: Arc<Notify>,
}

/// The validity of a certificate file, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: i64,
    /// End.
    pub not_after: i64,
}

impl Validity {
    /// When renewal is due.
    pub fn renew_at(&self) -> SystemTime {
        let span = (self.not_after - self.not_before).max(0) as f64;
        let at = self.not_before as f64 + span * RENEW_AT;
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0))
    }

    /// True while it can still prove the node in a renewal.
    pub fn usable(&self, now: SystemTime) -> bool {
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(self.not_after.max(0) as u64);
        now + PROOF_MARGIN < end
    }
}

/// The validity of the first certificate in PEM file `path`, if it has a readable one.
pub fn validity(path: &Path) -> Option<Validity> {
    let pem = std::fs::read(path).ok()?;
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(&pem).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Writes `contents` to `path` with `mode`, replacing it in one rename.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("enrol-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The proof a token file holds: a join token or a service account token.
fn token_proof(path: &Path) -> anyhow::Result<Proof> {
    let size = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("enrolment token {}: {e}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_TOKEN_BYTES,
        "enrolment token {}: {size} bytes, more than {MAX_TOKEN_BYTES}",
        path.display()
    );
    let token = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("enrolment token {}: {e}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "enrolment token {}: empty",
        path.display()
    );
    Ok(if token.starts_with("kestrel-join-") {
        Proof::JoinToken(token)
    } else {
        Proof::ServiceAccountToken(token)
    })
}

impl Enroller {
    /// Enrols once: a renewal when the current certificate is still valid, else with the token
    /// file. Writes the key and certificate and returns what the collector said.
    pub async fn enrol(&self) -> anyhow::Result<EnrolResponse> {
        let current = validity(&self.cert).filter(|v| v.usable(SystemTime::now()));
        let renewal = current.is_some() && self.key.exists();
        match self.try_enrol(renewal).await {
            Err(e) if renewal && self.token.is_some() => {
                tracing::warn!(error = %format!("{e:#}"), "renewal refused: enrolling with the token instead");
                self.try_enrol(false).await
            }
            other => other,
        }
    }

    async fn try_enrol(&self, renewal: bool) -> anyhow::Result<EnrolResponse> {
        let proof = if renewal {
            Proof::Renewal(Renewal {})
        } else {
            let token = self.token.as_deref().ok_or_else(|| {
                anyhow::anyhow!(
                    "no usable certificate in {} and no --enrol-token to enrol with",
                    self.cert.display()
                )
            })?;
            token_proof(token)?
        };
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, self.node.as_str());
        params.distinguished_name = name;
        let csr = params.serialize_request(&key)?;
        let ca = std::fs::read(&self.ca)
            .map_err(|e| anyhow::anyhow!("CA certificate {}: {e}", self.ca.display()))?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(self.domain.clone());
        if renewal {
            let cert = std::fs::read(&self.cert)?;
            let current_key = std::fs::read(&self.key)?;
            tls = tls.identity(Identity::from_pem(cert, current_key));
        }
        let channel = Endpoint::from_shared(self.url.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("enrolment listener {}: {e}", self.url))?;
        let request = EnrolRequest {
            csr_der: csr.der().to_vec(),
            node: self.node.clone(),
            proof: Some(proof),
        };
        let response = EnrolmentClient::new(channel)
            .enrol(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "enrolment refused ({:?}): {}",
                    status.code(),
                    status.message()
                )
            })?
            .into_inner();
        write_atomically(&self.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomically(&self.cert, response.certificate_pem.as_bytes(), 0o644)?;
        tracing::info!(
            identity = %response.identity,
            serial = %response.serial,
            proof = if renewal { "renewal" } else { "token" },
            not_after_unix = response.not_after_unix,
            "enrolled: new certificate written"
        );
        Ok(response)
    }

    /// Keeps the certificate fresh: enrols now when there is none usable, then renews at two
    /// thirds of each certificate's lifetime or at once when the collector refuses it (a
    /// revoked serial: the token, where it still proves the node, gets a new key and
    /// certificate), retrying failures with backoff. Runs until the task is dropped.
    pub async fn run(self) {
        let mut failures = 0u32;
        loop {
            let wait = match validity(&self.cert) {
                Some(v) if v.usable(SystemTime::now()) => v
                    .renew_at()
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
                _ => Duration::ZERO,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.refused.notified() => {
                    tracing::warn!("the collector refused this agent's certificate: enrolling again");
                }
            }
            match self.enrol().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let mut delay = Duration::from_secs(1 << failures.min(6)).min(RETRY_MAX);
                    if let Some(left) = validity(&self.cert).and_then(|v| {
                        let end =
                            SystemTime::UNIX_EPOCH + Duration::from_secs(v.not_after.max(0) as u64);
                        end.duration_since(SystemTime::now()).ok()
                    }) {
                        delay = delay.min((left / 4).max(Duration::from_millis(500)));
                    }
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "enrolment failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let v = Validity {
            not_before: 1_000,
            not_after: 1_030,
        };
        assert_eq!(
            v.renew_at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_020)
        );
        assert!(v.usable(SystemTime::UNIX_EPOCH + Duration::from_secs(1_020)));
        assert!(!v.usable(SystemTime::UNIX_EPOCH + Duration::from_secs(1_029)));
    }

    #[test]
    fn a_token_file_is_a_join_token_or_a_service_account_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "kestrel-join-abc\n").unwrap();
        assert_eq!(
            token_proof(&path).unwrap(),
            Proof::JoinToken("kestrel-join-abc".into())
        );
        std::fs::write(&path, "eyJhbGciOi.x.y").unwrap();
        assert!(matches!(
            token_proof(&path).unwrap(),
            Proof::ServiceAccountToken(_)
        ));
        std::fs::write(&path, "").unwrap();
        assert!(token_proof(&path)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
