//! Agent identity: who is on the other end of an authenticated connection.
//!
//! The identity comes only from the client certificate's subject alternative names (SAN): a URI
//! SAN `spiffe://<trust-domain>/node/<name>` is preferred (the whole URI is the identity), else the
//! first DNS SAN. Host names an agent claims in its messages are never trusted.

use std::fmt;
use std::net::SocketAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The authenticated identity of one agent (a SPIFFE URI or a DNS name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl Identity {
    /// Wraps an already-authenticated identity string (the accept loop derives it from the
    /// certificate; tests and tools that replay stored data use this directly).
    pub fn new(identity: impl Into<String>) -> Identity {
        Identity(identity.into())
    }

    /// The identity as stamped on events and alerts.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a client certificate yields no identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The peer presented no certificate (cannot happen with mandatory client auth).
    #[error("no client certificate")]
    NoCertificate,
    /// The leaf certificate does not parse as X.509.
    #[error("client certificate does not parse: {0}")]
    Parse(String),
    /// The certificate has no SAN usable as identity.
    #[error(
        "client certificate has no usable identity in its subject alternative names \
         (need a URI spiffe://<trust-domain>/node/<name> or a DNS name){}",
        seen_suffix(.seen)
    )]
    NoUsableSan {
        /// The SAN entries that were present, for the log line.
        seen: Vec<String>,
    },
    /// The identity is not a node of the trust domain the collector serves.
    #[error(
        "client certificate identity {identity} is not in trust domain {trust_domain} \
         (need spiffe://{trust_domain}/node/<name>)"
    )]
    ForeignTrustDomain {
        /// The identity the certificate names.
        identity: String,
        /// The trust domain the collector accepts.
        trust_domain: String,
    },
    /// The identity is revoked in the store (`kestrel-collector agents revoke --identity`).
    #[error("identity {identity} is revoked")]
    IdentityRevoked {
        /// The identity.
        identity: String,
    },
    /// The certificate's serial is revoked (`kestrel-collector agents revoke --serial`).
    #[error("certificate serial {serial} of identity {identity} is revoked")]
    SerialRevoked {
        /// The certificate's serial (lower-case hex).
        serial: String,
        /// The identity it names.
        identity: String,
    },
    /// The identity is on the collector's deny-list (revoked).
    #[error("identity {identity} is revoked (on the deny-list {})", list.display())]
    Revoked {
        /// The identity.
        identity: String,
        /// The deny-list file.
        list: std::path::PathBuf,
    },
}

impl IdentityError {
    /// The refusal's label on `kestrel_collector_tls_refusals_total` (one of
    /// [`crate::ingress::tls::REFUSAL_REASONS`]).
    pub fn refusal_label(&self) -> &'static str {
        match self {
            IdentityError::NoCertificate => "no_certificate",
            IdentityError::Parse(_) => "certificate_unparsable",
            IdentityError::NoUsableSan { .. } => "no_usable_identity",
            IdentityError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            IdentityError::Revoked { .. } | IdentityError::IdentityRevoked { .. } => {
                "identity_revoked"
            }
            IdentityError::SerialRevoked { .. } => "certificate_revoked",
        }
    }
}

fn seen_suffix(seen: &[String]) -> String {
    if seen.is_empty() {
        String::new()
    } else {
        format!("; found {}", seen.join(", "))
    }
}

/// What the collector knows about an authenticated connection; tonic hands it to every request
/// on that connection (`request.extensions().get::<PeerInfo>()`).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Identity from the client certificate.
    pub identity: Identity,
    /// The client certificate's serial number (lower-case hex without leading zeros).
    pub serial: String,
    /// The peer's socket address.
    pub remote_addr: SocketAddr,
    /// The connection's streams (for its idle timeout) and whether it is over a limit.
    pub activity: std::sync::Arc<crate::ingress::connections::ConnActivity>,
}

/// Extracts the identity from a DER-encoded client leaf certificate.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    let names: &[GeneralName<'_>] = san.as_ref().map_or(&[], |ext| &ext.value.general_names);
    identity_from_names(names)
}

/// Checks that `identity` is `spiffe://<trust_domain>/node/<name>`; with no trust domain
/// configured every identity passes.
pub fn check_trust_domain(
    identity: &Identity,
    trust_domain: Option<&str>,
) -> Result<(), IdentityError> {
    let Some(trust_domain) = trust_domain else {
        return Ok(());
    };
    let in_domain = identity
        .as_str()
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .is_some_and(|rest| rest.starts_with("/node/"));
    if in_domain {
        Ok(())
    } else {
        Err(IdentityError::ForeignTrustDomain {
            identity: identity.to_string(),
            trust_domain: trust_domain.to_owned(),
        })
    }
}

fn identity_from_names(names: &[GeneralName<'_>]) -> Result<Identity, IdentityError> {
    let spiffe = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if is_spiffe_node_id(uri) => Some(*uri),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) if is_dns_identity(dns) => Some(*dns),
            _ => None,
        })
    };
    match spiffe.or_else(dns) {
        Some(id) => Ok(Identity(id.to_owned())),
        None => Err(IdentityError::NoUsableSan {
            seen: names.iter().map(|n| n.to_string()).collect(),
        }),
    }
}

/// `spiffe://<trust-domain>/node/<name>`: a lower-case trust domain and one non-empty path
/// segment after `node/`.
fn is_spiffe_node_id(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let Some((domain, name)) = rest.split_once("/node/") else {
        return false;
    };
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    domain_ok && name_ok
}

/// A DNS name usable as one host's identity: non-empty labels of letters, digits, `-`, `_`
/// (no wildcard: a wildcard names many hosts).
fn is_dns_identity(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_node_ids_are_recognised_strictly() {
        assert!(is_spiffe_node_id("spiffe://kestrel.local/node/web-1"));
        assert!(!is_spiffe_node_id("spiffe://kestrel.local/node/"));
        assert!(!is_spiffe_node_id("spiffe://kestrel.local/workload/web-1"));
        assert!(!is_spiffe_node_id("spiffe://kestrel.local/node/a/b"));
        assert!(!is_spiffe_node_id("spiffe:///node/web-1"));
        assert!(!is_spiffe_node_id("https://kestrel.local/node/web-1"));
    }

    #[test]
    fn trust_domain_admits_only_its_own_nodes() {
        let node = Identity::new("spiffe://kestrel.local/node/web-1");
        assert!(check_trust_domain(&node, None).is_ok());
        assert!(check_trust_domain(&node, Some("kestrel.local")).is_ok());
        let err = check_trust_domain(&node, Some("other.local")).unwrap_err();
        assert!(
            err.to_string().contains("not in trust domain other.local"),
            "{err}"
        );
        let lookalike = Identity::new("spiffe://kestrel.local.evil/node/web-1");
        assert!(check_trust_domain(&lookalike, Some("kestrel.local")).is_err());
        let dns = Identity::new("web-1.example.com");
        assert!(check_trust_domain(&dns, Some("kestrel.local")).is_err());
    }

    #[test]
    fn wildcard_dns_names_are_not_identities() {
        assert!(is_dns_identity("node-1.example.com"));
        assert!(!is_dns_identity("*.example.com"));
        assert!(!is_dns_identity(""));
        assert!(!is_dns_identity("a..b"));
    }

    #[test]
    fn spiffe_uri_wins_over_an_earlier_dns_name() {
        let names = [
            GeneralName::DNSName("node-1.example.com"),
            GeneralName::URI("spiffe://kestrel.local/node/node-1"),
        ];
        let id = identity_from_names(&names).unwrap();
        assert_eq!(id.as_str(), "spiffe://kestrel.local/node/node-1");
    }

    #[test]
    fn non_node_spiffe_uri_falls_back_to_dns_name() {
        let names = [
            GeneralName::URI("spiffe://kestrel.local/workload/x"),
            GeneralName::DNSName("node-1.example.com"),
        ];
        let id = identity_from_names(&names).unwrap();
        assert_eq!(id.as_str(), "node-1.example.com");
    }
}
