//! The `Enrolment` gRPC service: checks a certificate signing request and the proof of which
//! node the agent runs on, then signs the node's certificate and records it.
//!
//! Order matters: the request is bounded and its signature checked, then the identity it would
//! get is checked against the revocations, and only then is the proof looked at — so a
//! malformed request or a revoked node never consumes a join token. Every refusal is logged
//! with the peer address and the reason, and the agent is told the same reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use kestrel_proto::enrol_request::Proof;
use kestrel_proto::enrolment_server::Enrolment;
use kestrel_proto::{EnrolRequest, EnrolResponse};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::enrolment::attempts::Attempts;
use crate::enrolment::issuer::{self, CertificateIssuer, CsrError};
use crate::enrolment::join_token;
use crate::enrolment::kubernetes::{ServiceAccountVerifier, TokenError};
use crate::ingress::denylist::DenyList;
use crate::ingress::identity::{identity_from_cert, Identity};
use crate::ingress::revocations::Revocations;
use crate::store::{IssuedCertificate, Store, TokenRefusal};

/// Every outcome `kestrel_collector_enrolments_total` is labelled with.
pub const OUTCOMES: [&str; 7] = [
    "issued",
    "too_many_attempts",
    "bad_request",
    "bad_proof",
    "node_mismatch",
    "revoked",
    "unavailable",
];

/// Why an enrolment is refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolRefusal {
    /// Too many attempts from the peer's address.
    #[error("too many enrolment attempts from {address}: try again in {retry_in_s} s")]
    TooManyAttempts {
        /// The source address.
        address: std::net::IpAddr,
        /// Seconds until the next window.
        retry_in_s: u64,
    },
    /// The requested node name is unusable.
    #[error("node name {0:?} is not a valid node name (lower-case DNS name)")]
    BadNode(String),
    /// The certificate request is unusable.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// No proof was given.
    #[error("no proof of the node given (a join token, a service account token or a renewal)")]
    NoProof,
    /// The join token does not admit the agent.
    #[error("join token {0}")]
    JoinToken(String),
    /// The service account token does not prove the node.
    #[error(transparent)]
    ServiceAccount(#[from] TokenError),
    /// Kubernetes proofs are not configured.
    #[error("service account tokens are not accepted: [enrolment.kubernetes] is not configured")]
    KubernetesOff,
    /// A renewal without a client certificate.
    #[error("a renewal needs the current certificate as the client certificate of the connection")]
    NoCertificate,
    /// The proof names another node.
    #[error("node mismatch: the proof is for {proved:?}, the agent asks for {asked:?}")]
    NodeMismatch {
        /// The node or identity the proof names.
        proved: String,
        /// The node asked for.
        asked: String,
    },
    /// The identity is revoked.
    #[error("identity {0} is revoked")]
    IdentityRevoked(String),
    /// The presented certificate's serial is revoked.
    #[error("certificate serial {0} is revoked")]
    SerialRevoked(String),
    /// The store failed.
    #[error("collector store: {0}")]
    Store(String),
}

impl EnrolRefusal {
    /// The refusal's label on `kestrel_collector_enrolments_total` (one of [`OUTCOMES`]).
    pub fn outcome(&self) -> &'static str {
        match self {
            EnrolRefusal::TooManyAttempts { .. } => "too_many_attempts",
            EnrolRefusal::BadNode(_) | EnrolRefusal::Csr(_) | EnrolRefusal::NoProof => {
                "bad_request"
            }
            EnrolRefusal::NodeMismatch { .. } => "node_mismatch",
            EnrolRefusal::IdentityRevoked(_) | EnrolRefusal::SerialRevoked(_) => "revoked",
            EnrolRefusal::Store(_) => "unavailable",
            EnrolRefusal::JoinToken(_)
            | EnrolRefusal::ServiceAccount(_)
            | EnrolRefusal::KubernetesOff
            | EnrolRefusal::NoCertificate => "bad_proof",
        }
    }

    /// The gRPC status the agent gets.
    pub fn status(&self) -> Status {
        let message = self.to_string();
        match self {
            EnrolRefusal::TooManyAttempts { .. } => Status::resource_exhausted(message),
            EnrolRefusal::BadNode(_) | EnrolRefusal::Csr(_) | EnrolRefusal::NoProof => {
                Status::invalid_argument(message)
            }
            EnrolRefusal::KubernetesOff => Status::failed_precondition(message),
            EnrolRefusal::IdentityRevoked(_)
            | EnrolRefusal::SerialRevoked(_)
            | EnrolRefusal::NodeMismatch { .. } => Status::permission_denied(message),
            EnrolRefusal::Store(_) => Status::unavailable(message),
            EnrolRefusal::JoinToken(_)
            | EnrolRefusal::ServiceAccount(_)
            | EnrolRefusal::NoCertificate => Status::unauthenticated(message),
        }
    }
}

/// The enrolment service.
pub struct EnrolmentService {
    issuer: Arc<CertificateIssuer>,
    kubernetes: Option<Arc<ServiceAccountVerifier>>,
    store: Store,
    revoked: Arc<Revocations>,
    deny: Arc<DenyList>,
    attempts: Attempts,
}

/// How the node proved itself, as recorded with the certificate.
struct Proved {
    kind: &'static str,
    renewed_from: Option<String>,
    detail: String,
}

impl EnrolmentService {
    /// A service signing with `issuer`, recording in `store`, refusing what `revoked` and the
    /// deny-list `deny` list and more than `attempts_per_minute` attempts per source address.
    pub fn new(
        issuer: Arc<CertificateIssuer>,
        kubernetes: Option<Arc<ServiceAccountVerifier>>,
        store: Store,
        (revoked, deny): (Arc<Revocations>, Arc<DenyList>),
        attempts_per_minute: u32,
    ) -> EnrolmentService {
        EnrolmentService {
            issuer,
            kubernetes,
            store,
            revoked,
            deny,
            attempts: Attempts::new(attempts_per_minute),
        }
    }

    async fn enrol_checked(
        &self,
        peer: Option<SocketAddr>,
        peer_cert: Option<Vec<u8>>,
        request: EnrolRequest,
    ) -> Result<EnrolResponse, EnrolRefusal> {
        if let Some(peer) = peer {
            self.attempts
                .attempt(peer.ip(), Instant::now())
                .map_err(|wait| EnrolRefusal::TooManyAttempts {
                    address: peer.ip(),
                    retry_in_s: wait.as_secs().max(1),
                })?;
        }
        let node = request.node;
        if !issuer::valid_node_name(&node) {
            return Err(EnrolRefusal::BadNode(node));
        }
        let csr = CertificateIssuer::parse_request(&request.csr_der)?;
        let identity = self.issuer.identity(&node);
        if self.revoked.identity_revoked(&identity)
            || self.deny.contains(&Identity::new(identity.clone()))
        {
            return Err(EnrolRefusal::IdentityRevoked(identity));
        }
        let peer_text = peer.map(|p| p.to_string()).unwrap_or_default();
        let proved = match request.proof.ok_or(EnrolRefusal::NoProof)? {
            Proof::JoinToken(token) => self.join_token(&token, &node, &peer_text).await?,
            Proof::ServiceAccountToken(token) => {
                let verifier = self
                    .kubernetes
                    .as_ref()
                    .ok_or(EnrolRefusal::KubernetesOff)?;
                let pod = verifier.verify(&token, &node)?;
                Proved {
                    kind: "kubernetes",
                    renewed_from: None,
                    detail: format!("pod {} ({})", pod.pod, pod.pod_uid),
                }
            }
            Proof::Renewal(_) => self.renewal(peer_cert.as_deref(), &identity)?,
        };
        let signed = self.issuer.sign(&csr, &node, SystemTime::now())?;
        let record = IssuedCertificate {
            serial: signed.serial.clone(),
            identity: signed.identity.clone(),
            not_before_unix: signed.not_before_unix,
            not_after_unix: signed.not_after_unix,
            proof: proved.kind.to_owned(),
            renewed_from: proved.renewed_from.clone(),
        };
        self.store
            .run(move |store| store.record_issued(&record, crate::clock::now_unix_ns()))
            .await
            .map_err(|e| EnrolRefusal::Store(e.to_string()))?;
        info!(
            peer = %peer_text,
            identity = %signed.identity,
            serial = %signed.serial,
            proof = proved.kind,
            detail = %proved.detail,
            renewed_from = proved.renewed_from.as_deref().unwrap_or(""),
            not_after_unix = signed.not_after_unix,
            "certificate issued"
        );
        Ok(EnrolResponse {
            certificate_pem: signed.pem,
            identity: signed.identity,
            serial: signed.serial,
            not_before_unix: signed.not_before_unix,
            not_after_unix: signed.not_after_unix,
        })
    }

    async fn join_token(
        &self,
        token: &str,
        node: &str,
        peer: &str,
    ) -> Result<Proved, EnrolRefusal> {
        if token.len() > join_token::MAX_TOKEN_BYTES {
            return Err(EnrolRefusal::JoinToken(format!(
                "of {} bytes is larger than {}",
                token.len(),
                join_token::MAX_TOKEN_BYTES
            )));
        }
        let hash = join_token::hash(token);
        let peer = peer.to_owned();
        let outcome = self
            .store
            .run(move |store| store.consume_join_token(&hash, crate::clock::now_unix_ns(), &peer))
            .await
            .map_err(|e| EnrolRefusal::Store(e.to_string()))?;
        let token_node = outcome.map_err(|refusal| {
            EnrolRefusal::JoinToken(match refusal {
                TokenRefusal::Unknown => "is unknown to this collector".into(),
                TokenRefusal::Expired { expires_unix_ns } => {
                    format!("expired at {}", crate::alert::rfc3339(expires_unix_ns))
                }
                TokenRefusal::AlreadyUsed {
                    used_unix_ns,
                    used_by,
                } => format!(
                    "already used at {} by {used_by}",
                    crate::alert::rfc3339(used_unix_ns)
                ),
            })
        })?;
        if token_node != node {
            return Err(EnrolRefusal::NodeMismatch {
                proved: token_node,
                asked: node.to_owned(),
            });
        }
        Ok(Proved {
            kind: "join_token",
            renewed_from: None,
            detail: "one-time join token".into(),
        })
    }

    fn renewal(&self, leaf: Option<&[u8]>, identity: &str) -> Result<Proved, EnrolRefusal> {
        // The listener verified the chain to the issuing CA and the validity period.
        let leaf = leaf.ok_or(EnrolRefusal::NoCertificate)?;
        let presented = identity_from_cert(leaf).map_err(|_| EnrolRefusal::NoCertificate)?;
        let serial = issuer::serial_of(leaf).ok_or(EnrolRefusal::NoCertificate)?;
        if self.revoked.serial_revoked(&serial) {
            return Err(EnrolRefusal::SerialRevoked(serial));
        }
        if presented.as_str() != identity {
            return Err(EnrolRefusal::NodeMismatch {
                proved: presented.to_string(),
                asked: identity.to_owned(),
            });
        }
        Ok(Proved {
            kind: "renewal",
            detail: format!("certificate {serial}"),
            renewed_from: Some(serial),
        })
    }
}

#[tonic::async_trait]
impl Enrolment for EnrolmentService {
    async fn enrol(
        &self,
        request: Request<EnrolRequest>,
    ) -> Result<Response<EnrolResponse>, Status> {
        let peer = request.remote_addr();
        let peer_cert = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.to_vec()));
        let node = request.get_ref().node.clone();
        let outcome = self
            .enrol_checked(peer, peer_cert, request.into_inner())
            .await;
        let label = outcome
            .as_ref()
            .map_or_else(EnrolRefusal::outcome, |_| "issued");
        crate::metrics::figures::figures()
            .enrolments
            .get_or_create(&[("outcome", label)])
            .inc();
        match outcome {
            Ok(response) => Ok(Response::new(response)),
            Err(refusal) => {
                warn!(
                    peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                    node = %crate::text::escape(&node),
                    reason = %refusal,
                    "enrolment refused"
                );
                Err(refusal.status())
            }
        }
    }
}
