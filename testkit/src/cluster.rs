//! A stand-in for a Kubernetes cluster's service account token issuer: a locally generated
//! ES256 key set published as a JWKS file (what `kubectl get --raw /openid/v1/jwks` prints),
//! and projected service account tokens signed with it, claims and all.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{json, Value};

/// The issuer the test cluster signs as.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A signing key of the test cluster.
pub struct ClusterKeys {
    key: KeyPair,
    /// The key id (`kid`) tokens name.
    pub kid: String,
}

/// What a projected token says (each field can be changed to make a bad one).
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Seconds from now to `exp` (negative: expired).
    pub expires_in_s: i64,
    /// Namespace.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
    /// Pod name.
    pub pod: String,
    /// Node name (`None`: a token without the node claim, as before Kubernetes 1.30).
    pub node: Option<String>,
}

impl TokenClaims {
    /// A good token for the agent's service account (`kestrel/kestrel-agent`) on `node`.
    pub fn agent_on(node: &str) -> TokenClaims {
        TokenClaims {
            issuer: ISSUER.into(),
            audience: "kestrel".into(),
            expires_in_s: 3600,
            namespace: "kestrel".into(),
            service_account: "kestrel-agent".into(),
            pod: format!("kestrel-agent-{node}"),
            node: Some(node.into()),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl ClusterKeys {
    /// A new P-256 key named `kid`.
    pub fn new(kid: &str) -> ClusterKeys {
        ClusterKeys {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            kid: kid.into(),
        }
    }

    /// The JWKS document publishing this key.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        }]})
    }

    /// Writes the JWKS to `path`.
    pub fn write_jwks(&self, path: &std::path::Path) {
        std::fs::write(path, self.jwks().to_string()).unwrap();
    }

    /// A token with `claims`, signed with this key.
    pub fn token(&self, claims: &TokenClaims) -> String {
        let now = now_s();
        let mut k8s = json!({
            "namespace": claims.namespace,
            "pod": {"name": claims.pod, "uid": "3f6a9c2e-0000-4000-8000-000000000001"},
            "serviceaccount": {"name": claims.service_account, "uid": "9d1c-sa"},
        });
        if let Some(node) = &claims.node {
            k8s["node"] = json!({"name": node, "uid": "5b2e-node"});
        }
        let body = json!({
            "aud": [claims.audience],
            "exp": now + claims.expires_in_s,
            "iat": now - 10,
            "nbf": now - 10,
            "iss": claims.issuer,
            "jti": format!("{now}-{}", claims.pod),
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.service_account),
            "kubernetes.io": k8s,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &body, &key).unwrap()
    }
}
