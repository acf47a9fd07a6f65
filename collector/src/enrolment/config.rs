//! `[enrolment]` in the collector's configuration file: where enrolment listens, the issuing CA,
//! how long certificates live, the trust domain their SAN names, how often one address may try,
//! and (`[enrolment.kubernetes]`) the cluster whose service account tokens prove a node.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Shortest certificate lifetime accepted (tests use 20 s; the agent renews at two thirds).
pub const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// Longest certificate lifetime accepted: enrolment issues short-lived certificates.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[enrolment]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentConfig {
    /// Address of the enrolment listener (TLS, client certificate optional), e.g.
    /// `0.0.0.0:50052`.
    pub listen: String,
    /// The issuing CA's certificate (PEM). It must also be in `serve --client-ca`.
    pub ca_cert: PathBuf,
    /// The issuing CA's private key (PEM), readable by the collector's user only.
    pub ca_key: PathBuf,
    /// How long an issued certificate is valid. Default `24h`.
    #[serde(default = "default_lifetime")]
    pub certificate_lifetime: String,
    /// Trust domain of the identities issued: `spiffe://<trust_domain>/node/<node>`. Default
    /// `kestrel.local`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Enrolment attempts one source address may make per minute. Default 10.
    #[serde(default = "default_attempts")]
    pub max_attempts_per_minute: u32,
    /// Kubernetes service account tokens as proof (absent: join tokens and renewals only).
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
}

/// `[enrolment.kubernetes]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The cluster's service account token issuer (`iss`), e.g.
    /// `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// The cluster's published signing keys (`kubectl get --raw /openid/v1/jwks`), re-read when
    /// the file changes.
    pub jwks: PathBuf,
    /// The audience the agent's projected token is issued for. Default `kestrel`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Namespace of the agent's service account. Default `kestrel`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Name of the agent's service account. Default `kestrel-agent`.
    #[serde(default = "default_service_account")]
    pub service_account: String,
}

fn default_lifetime() -> String {
    "24h".into()
}
fn default_trust_domain() -> String {
    "kestrel.local".into()
}
fn default_attempts() -> u32 {
    10
}
fn default_audience() -> String {
    "kestrel".into()
}
fn default_namespace() -> String {
    "kestrel".into()
}
fn default_service_account() -> String {
    "kestrel-agent".into()
}

/// `[enrolment]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentSettings {
    /// Listen address.
    pub listen: String,
    /// Issuing CA certificate file.
    pub ca_cert: PathBuf,
    /// Issuing CA key file.
    pub ca_key: PathBuf,
    /// Certificate lifetime.
    pub lifetime: Duration,
    /// Trust domain of issued identities.
    pub trust_domain: String,
    /// Attempts per source address per minute.
    pub max_attempts_per_minute: u32,
    /// Kubernetes proof settings.
    pub kubernetes: Option<KubernetesSettings>,
}

/// `[enrolment.kubernetes]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// Expected `iss`.
    pub issuer: String,
    /// JWKS file.
    pub jwks: PathBuf,
    /// Expected `aud`.
    pub audience: String,
    /// Expected namespace.
    pub namespace: String,
    /// Expected service account name.
    pub service_account: String,
}

impl EnrolmentConfig {
    /// Checks every value, adding each problem (naming its key) to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) -> Option<EnrolmentSettings> {
        let before = problems.len();
        let lifetime = match humantime::parse_duration(&self.certificate_lifetime) {
            Ok(d) if (MIN_LIFETIME..=MAX_LIFETIME).contains(&d) => d,
            Ok(_) => {
                problems.push(format!(
                    "enrolment.certificate_lifetime: {:?} is outside {} to {}",
                    self.certificate_lifetime,
                    humantime::format_duration(MIN_LIFETIME),
                    humantime::format_duration(MAX_LIFETIME)
                ));
                MIN_LIFETIME
            }
            Err(e) => {
                problems.push(format!(
                    "enrolment.certificate_lifetime: {:?} is not a duration ({e})",
                    self.certificate_lifetime
                ));
                MIN_LIFETIME
            }
        };
        if !crate::enrolment::issuer::valid_trust_domain(&self.trust_domain) {
            problems.push(format!(
                "enrolment.trust_domain: {:?} is not a trust domain (lower-case letters, digits, \
                 '.', '-', '_')",
                self.trust_domain
            ));
        }
        if self.max_attempts_per_minute == 0 {
            problems.push("enrolment.max_attempts_per_minute: must be greater than zero".into());
        }
        if self.listen.trim().is_empty() {
            problems.push("enrolment.listen: empty; write e.g. \"0.0.0.0:50052\"".into());
        }
        let kubernetes = self.kubernetes.as_ref().map(|k| {
            for (key, value) in [
                ("issuer", &k.issuer),
                ("audience", &k.audience),
                ("namespace", &k.namespace),
                ("service_account", &k.service_account),
            ] {
                if value.is_empty() {
                    problems.push(format!("enrolment.kubernetes.{key}: must not be empty"));
                }
            }
            KubernetesSettings {
                issuer: k.issuer.clone(),
                jwks: k.jwks.clone(),
                audience: k.audience.clone(),
                namespace: k.namespace.clone(),
                service_account: k.service_account.clone(),
            }
        });
        (problems.len() == before).then(|| EnrolmentSettings {
            listen: self.listen.clone(),
            ca_cert: self.ca_cert.clone(),
            ca_key: self.ca_key.clone(),
            lifetime,
            trust_domain: self.trust_domain.clone(),
            max_attempts_per_minute: self.max_attempts_per_minute,
            kubernetes,
        })
    }
}
