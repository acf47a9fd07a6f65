//! The issuing CA: turns an agent's certificate signing request into a short-lived client
//! certificate whose only SAN is `spiffe://<trust domain>/node/<node>`.
//!
//! Only the request's public key is used (after its signature proves the agent holds the
//! private key): subject, SANs, key usages, extensions and validity are the collector's, so a
//! request asking for a CA, a server name or another node's identity gets none of them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest certificate signing request accepted (an RSA-4096 request is under 2 KiB).
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// Backdating of `notBefore`, for agents whose clock is slightly behind (at most a tenth of the
/// lifetime, so the agent's renewal at two thirds of the validity stays well before its end).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The issuing CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A file is missing or unreadable.
    #[error("enrolment CA {what} {}: {reason}", path.display())]
    File {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why a certificate signing request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("certificate request of {0} bytes is larger than {MAX_CSR_BYTES}")]
    TooLarge(usize),
    /// Does not parse, or its signature does not verify with its own key.
    #[error("certificate request is not a valid PKCS#10 request signed by its key: {0}")]
    Invalid(String),
}

/// A certificate the issuer signed.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The certificate, PEM.
    pub pem: String,
    /// The identity it names.
    pub identity: String,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    /// Validity start, Unix seconds.
    pub not_before_unix: i64,
    /// Validity end, Unix seconds.
    pub not_after_unix: i64,
}

/// The issuing CA with the policy of what it signs.
pub struct CertificateIssuer {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
    lifetime: Duration,
    trust_domain: String,
}

impl std::fmt::Debug for CertificateIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateIssuer")
            .field("trust_domain", &self.trust_domain)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// True for a trust domain as SPIFFE IDs carry it: lower-case letters, digits, `.`, `-`, `_`.
pub fn valid_trust_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// True for a node name as Kubernetes allows it (a DNS subdomain: lower-case letters, digits,
/// `-` and `.`, starting and ending with a letter or digit, at most 253 characters).
pub fn valid_node_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
}

/// A serial number as the store and the CLI write it: lower-case hex without separators or
/// leading zeros (`0A:1b` and `0x0a1b` are both `a1b`).
pub fn normalize_serial(serial: &str) -> String {
    let hex: String = serial
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// The serial of a DER certificate, normalized ([`normalize_serial`]).
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(normalize_serial(&hex))
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl CertificateIssuer {
    /// Loads the CA certificate and key (the key must be readable by the collector's user
    /// only and must match the certificate).
    pub fn load(
        cert: &Path,
        key: &Path,
        lifetime: Duration,
        trust_domain: &str,
    ) -> Result<CertificateIssuer, IssuerError> {
        let err = |what, path: &Path, reason: String| IssuerError::File {
            what,
            path: path.to_owned(),
            reason,
        };
        crate::private_files::check_private_key(key).map_err(|e| err("key", key, e.to_string()))?;
        let cert_pem =
            std::fs::read_to_string(cert).map_err(|e| err("certificate", cert, e.to_string()))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| err("key", key, e.to_string()))?;
        let key_pair = KeyPair::from_pem(&key_pem)
            .map_err(|e| err("key", key, format!("not a usable PEM private key: {e}")))?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| err("certificate", cert, format!("no PEM certificate: {e}")))?;
        let (_, parsed) = X509Certificate::from_der(&ca_der)
            .map_err(|e| err("certificate", cert, format!("not X.509: {e}")))?;
        if !parsed.is_ca() {
            return Err(err(
                "certificate",
                cert,
                "not a CA certificate (basicConstraints CA:TRUE)".into(),
            ));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(err(
                "key",
                key,
                format!("does not belong to the CA certificate {}", cert.display()),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair)
            .map_err(|e| err("certificate", cert, e.to_string()))?;
        Ok(CertificateIssuer {
            issuer,
            ca_der,
            lifetime,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// How long issued certificates are valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The identity of `node`: `spiffe://<trust domain>/node/<node>`.
    pub fn identity(&self, node: &str) -> String {
        format!("spiffe://{}/node/{node}", self.trust_domain)
    }

    /// Parses `csr_der` and checks its signature (the agent holds the key), before any proof
    /// is spent on it.
    pub fn parse_request(csr_der: &[u8]) -> Result<CertificateSigningRequestParams, CsrError> {
        if csr_der.len() > MAX_CSR_BYTES {
            return Err(CsrError::TooLarge(csr_der.len()));
        }
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| CsrError::Invalid(e.to_string()))
    }

    /// Signs a certificate for `node` with the public key of `request`, valid from now (a
    /// little backdated) for the configured lifetime.
    pub fn sign(
        &self,
        request: &CertificateSigningRequestParams,
        node: &str,
        now: SystemTime,
    ) -> Result<Signed, CsrError> {
        let identity = self.identity(node);
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node);
        params.distinguished_name = name;
        params.subject_alt_names =
            vec![SanType::URI(identity.as_str().try_into().map_err(|e| {
                CsrError::Invalid(format!("identity {identity}: {e}"))
            })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let not_before = now - BACKDATE.min(self.lifetime / 10);
        let not_after = now + self.lifetime;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| CsrError::Invalid("no randomness for the serial number".into()))?;
        // Positive and without a leading zero byte: the same hex everywhere.
        serial[0] = (serial[0] & 0x7f) | 0x40;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| CsrError::Invalid(format!("cannot sign with its key: {e}")))?;
        Ok(Signed {
            pem: cert.pem(),
            identity,
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_before_unix: unix(not_before),
            not_after_unix: unix(not_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_serials_are_checked_and_normalized() {
        assert!(valid_node_name("ip-10-0-0-1.eu-west-1.compute.internal"));
        assert!(valid_node_name("vm-1"));
        for bad in ["", "-a", "a-", "A", "a/b", "a_b", &"a".repeat(254)] {
            assert!(!valid_node_name(bad), "{bad}");
        }
        assert_eq!(normalize_serial("0A:1b"), "a1b");
        assert_eq!(normalize_serial("0x0a1b"), "a1b");
        assert_eq!(normalize_serial("00"), "0");
    }
}
