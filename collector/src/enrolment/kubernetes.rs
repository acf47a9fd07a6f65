//! Kubernetes proof of a node: a projected service account token (a JWT the API server signs)
//! checked against the cluster's published signing keys (its JWKS, `kubectl get --raw
//! /openid/v1/jwks`, in a file re-read when it changes).
//!
//! The token must verify with one of those keys (RS256/384/512, PS256/384/512, ES256/384), come
//! from the configured issuer, be issued for the configured audience (`kestrel`), be within
//! its validity (`exp`, `nbf`), and carry the `kubernetes.io` claims of a pod of the agent's
//! service account in the agent's namespace on the node the agent asks for (the node claim
//! is in tokens from Kubernetes 1.30 on). Every refusal says which check failed.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::enrolment::config::KubernetesSettings;

/// Largest token accepted (service account tokens are about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS file read.
pub const MAX_JWKS_BYTES: u64 = 256 * 1024;
/// Most keys a JWKS may hold.
pub const MAX_JWKS_KEYS: usize = 64;
/// Clock skew allowed on `exp` and `nbf`, seconds.
const LEEWAY_S: u64 = 30;

/// Signature algorithms a cluster's service account keys use; never HMAC or `none`.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Why a service account token does not prove the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("service account token of {0} bytes is larger than {MAX_TOKEN_BYTES}")]
    TooLarge(usize),
    /// Not a JWT, or an algorithm no cluster signs with.
    #[error("service account token is malformed: {0}")]
    Malformed(String),
    /// The signing keys could not be read.
    #[error("the cluster's signing keys {}: {reason}", path.display())]
    Keys {
        /// The JWKS file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No key of the JWKS has the token's key id.
    #[error("service account token signed with key {kid:?}, which is not among the cluster's signing keys")]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// The signature does not verify.
    #[error("service account token signature does not verify with the cluster's key (forged or from another cluster)")]
    BadSignature,
    /// `exp` has passed.
    #[error("service account token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("service account token not valid yet")]
    NotYetValid,
    /// `aud` does not name the expected audience.
    #[error("service account token has the wrong audience (need {expected:?})")]
    WrongAudience {
        /// The configured audience.
        expected: String,
    },
    /// `iss` is not the configured issuer.
    #[error("service account token has the wrong issuer (need {expected:?})")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
    },
    /// A claim is missing.
    #[error("service account token lacks the {0} claim")]
    MissingClaim(String),
    /// The namespace or service account is not the agent's.
    #[error("service account token is for {found}, not the agent's service account {expected}")]
    WrongServiceAccount {
        /// `namespace/name` in the token.
        found: String,
        /// `namespace/name` configured.
        expected: String,
    },
    /// The token names another node than the agent asks for.
    #[error("node mismatch: the service account token names node {token:?}, the agent asks for {asked:?}")]
    NodeMismatch {
        /// The node in the token.
        token: String,
        /// The node in the request.
        asked: String,
    },
}

/// The `kubernetes.io` claims of a pod-bound token.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Debug, Clone, Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: String,
    pod: Option<ObjectRef>,
    node: Option<ObjectRef>,
    serviceaccount: Option<ObjectRef>,
}

#[derive(Debug, Clone, Deserialize)]
struct ObjectRef {
    name: String,
    #[serde(default)]
    uid: String,
}

/// What a verified token says about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOnNode {
    /// The node.
    pub node: String,
    /// The pod (`namespace/name`).
    pub pod: String,
    /// The pod's uid.
    pub pod_uid: String,
}

type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Verifies service account tokens against the cluster's keys.
#[derive(Debug)]
pub struct ServiceAccountVerifier {
    settings: KubernetesSettings,
    keys: RwLock<(Stamp, JwkSet)>,
}

/// Reads and bounds a JWKS file.
pub fn read_jwks(path: &Path) -> Result<JwkSet, TokenError> {
    let err = |reason: String| TokenError::Keys {
        path: path.to_owned(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if size > MAX_JWKS_BYTES {
        return Err(err(format!("{size} bytes, more than {MAX_JWKS_BYTES}")));
    }
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| err(format!("not a JWKS: {e}")))?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(err(format!(
            "{} keys, more than {MAX_JWKS_KEYS}",
            set.keys.len()
        )));
    }
    if set.keys.is_empty() {
        return Err(err("no keys".into()));
    }
    Ok(set)
}

impl ServiceAccountVerifier {
    /// Loads the JWKS file of `settings`.
    pub fn load(settings: KubernetesSettings) -> Result<ServiceAccountVerifier, TokenError> {
        let seen = stamp(&settings.jwks);
        let keys = read_jwks(&settings.jwks)?;
        Ok(ServiceAccountVerifier {
            settings,
            keys: RwLock::new((seen, keys)),
        })
    }

    /// The key set, re-read first when its file changed (a file that no longer loads is
    /// logged and the previous keys stay).
    fn keys(&self) -> JwkSet {
        let now = stamp(&self.settings.jwks);
        if self.keys.read().unwrap_or_else(|p| p.into_inner()).0 != now {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            keys.0 = now;
            match read_jwks(&self.settings.jwks) {
                Ok(set) => {
                    tracing::info!(jwks = %self.settings.jwks.display(), keys = set.keys.len(), "cluster signing keys reloaded");
                    keys.1 = set;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cluster signing keys changed but do not load: keeping the previous ones")
                }
            }
        }
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Checks `token` for an agent asking to be node `asked`.
    pub fn verify(&self, token: &str, asked: &str) -> Result<PodOnNode, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(token.len()));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not one a cluster signs with",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let keys = self.keys();
        let jwk = keys
            .find(&kid)
            .ok_or_else(|| TokenError::UnknownKey { kid: kid.clone() })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Keys {
            path: self.settings.jwks.clone(),
            reason: format!("key {kid:?}: {e}"),
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.settings.audience]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| self.refusal(e.kind()))?
            .claims;
        self.check_claims(claims, asked)
    }

    fn refusal(&self, kind: &ErrorKind) -> TokenError {
        match kind {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::WrongAudience {
                expected: self.settings.audience.clone(),
            },
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer {
                expected: self.settings.issuer.clone(),
            },
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
            ErrorKind::InvalidAlgorithm => {
                TokenError::Malformed("algorithm does not match the key".into())
            }
            other => TokenError::Malformed(format!("{other:?}")),
        }
    }

    fn check_claims(&self, claims: Claims, asked: &str) -> Result<PodOnNode, TokenError> {
        let missing = |claim: &str| TokenError::MissingClaim(claim.to_owned());
        let k8s = claims.kubernetes.ok_or_else(|| missing("kubernetes.io"))?;
        let account = k8s
            .serviceaccount
            .ok_or_else(|| missing("kubernetes.io.serviceaccount"))?;
        let expected = format!(
            "{}/{}",
            self.settings.namespace, self.settings.service_account
        );
        let found = format!("{}/{}", k8s.namespace, account.name);
        let subject = format!(
            "system:serviceaccount:{}:{}",
            self.settings.namespace, self.settings.service_account
        );
        if found != expected || claims.sub != subject {
            return Err(TokenError::WrongServiceAccount { found, expected });
        }
        let pod = k8s.pod.ok_or_else(|| missing("kubernetes.io.pod"))?;
        let node = k8s.node.ok_or_else(|| missing("kubernetes.io.node"))?;
        if pod.name.is_empty() || pod.uid.is_empty() {
            return Err(missing("kubernetes.io.pod.uid"));
        }
        if node.name != asked {
            return Err(TokenError::NodeMismatch {
                token: node.name,
                asked: asked.to_owned(),
            });
        }
        Ok(PodOnNode {
            node: node.name,
            pod: format!("{}/{}", k8s.namespace, pod.name),
            pod_uid: pod.uid,
        })
    }
}
