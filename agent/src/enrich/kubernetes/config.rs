//! The `[kubernetes]` section of the agent config: whether and how to watch this node's pods on
//! the API server, and how much of them to keep.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::pod::{LabelBounds, MAX_NAME_BYTES};

/// The environment variable that names this node (the chart sets it from the downward API,
/// `spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";
/// The environment variable that every pod has in a cluster (with `KUBERNETES_SERVICE_PORT`).
pub const SERVICE_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";

/// Most pods [`KubernetesConfig::max_pods`] may ask to keep.
pub const MOST_PODS: usize = 65_536;
/// Most labels per pod [`KubernetesConfig::max_labels_per_pod`] may ask to keep (what one
/// event may carry).
pub const MOST_LABELS_PER_POD: usize = kestrel_proto::limits::POD_LABELS.max;
/// Most bytes of one label [`KubernetesConfig::max_label_bytes`] may allow (a key and a value
/// each fit the protocol's name bound).
pub const MOST_LABEL_BYTES: usize = kestrel_proto::limits::NAME_BYTES.max;

/// Settings of the pod watcher (the `kubernetes` section of the agent config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// `true` to watch this node's pods, `false` never to. Unset (default): on when the agent
    /// runs in a cluster (`KUBERNETES_SERVICE_HOST` is set) or `api_server` or `kubeconfig` is
    /// given.
    pub enabled: Option<bool>,
    /// API server URL to use without credentials (`http://127.0.0.1:8001` behind
    /// `kubectl proxy`, or a test server). Default: the in-cluster service
    /// (`KUBERNETES_SERVICE_HOST`/`_PORT`) with the pod's service-account token and CA.
    pub api_server: Option<String>,
    /// A kubeconfig file to use instead (its current context). Default: none.
    pub kubeconfig: Option<PathBuf>,
    /// This node's name, as pods' `spec.nodeName` has it. Default: the `NODE_NAME` variable.
    pub node_name: Option<String>,
    /// Most pods kept; a pod past it gets no metadata (and a warning). Default: 1024 (the
    /// kubelet runs at most 110 pods a node unless told otherwise).
    pub max_pods: usize,
    /// Most labels kept per pod, the first by key. Default: 64.
    pub max_labels_per_pod: usize,
    /// Most bytes of one label (key and value together); a longer label is left out whole.
    /// Default: 384 (every valid label: a 317-byte key and a 63-byte value).
    pub max_label_bytes: usize,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            api_server: None,
            kubeconfig: None,
            node_name: None,
            max_pods: 1024,
            max_labels_per_pod: 64,
            max_label_bytes: 384,
        }
    }
}

/// Where the API server is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// The in-cluster service with the pod's service-account token and CA.
    InCluster,
    /// A URL, no credentials.
    Url(String),
    /// A kubeconfig file's current context.
    Kubeconfig(PathBuf),
}

/// What the watcher is to do, once the settings and the environment are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    /// The API server.
    pub source: ApiSource,
    /// This node's name.
    pub node_name: String,
    /// Most pods kept.
    pub max_pods: usize,
    /// How much of each pod's labels is kept.
    pub labels: LabelBounds,
}

impl KubernetesConfig {
    /// Every problem with these settings (empty when they are usable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, value, most) in [
            ("max_pods", self.max_pods, MOST_PODS),
            (
                "max_labels_per_pod",
                self.max_labels_per_pod,
                MOST_LABELS_PER_POD,
            ),
            ("max_label_bytes", self.max_label_bytes, MOST_LABEL_BYTES),
        ] {
            if value == 0 || value > most {
                problems.push(format!(
                    "kubernetes.{field} must be 1 to {most}, got {value}"
                ));
            }
        }
        if let Some(url) = &self.api_server {
            let scheme = url.parse::<http::Uri>().ok().and_then(|u| {
                u.host()?;
                u.scheme_str().map(str::to_owned)
            });
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                problems.push(format!(
                    "kubernetes.api_server: '{url}' is not an http:// or https:// URL"
                ));
            }
        }
        if self.api_server.is_some() && self.kubeconfig.is_some() {
            problems.push("kubernetes: give api_server or kubeconfig, not both".into());
        }
        if let Some(name) = &self.node_name {
            if let Err(reason) = check_node_name(name) {
                problems.push(format!("kubernetes.node_name: {reason}"));
            }
        }
        problems
    }

    /// What to watch given the environment `env` (a variable's value by name), `Ok(None)` when
    /// off, or why it is on but cannot run.
    pub fn plan(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<WatchPlan>, String> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let source = match (&self.api_server, &self.kubeconfig) {
            (Some(url), _) => ApiSource::Url(url.clone()),
            (None, Some(path)) => ApiSource::Kubeconfig(path.clone()),
            (None, None) if env(SERVICE_HOST_ENV).is_some_and(|h| !h.is_empty()) => {
                ApiSource::InCluster
            }
            (None, None) if self.enabled == Some(true) => {
                return Err(format!(
                    "kubernetes.enabled is true, but {SERVICE_HOST_ENV} is unset (not in a \
                     cluster) and neither api_server nor kubeconfig is given"
                ))
            }
            (None, None) => return Ok(None),
        };
        let node_name = match &self.node_name {
            Some(name) => name.clone(),
            None => env(NODE_NAME_ENV)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    format!(
                        "this node's name is unknown: set {NODE_NAME_ENV} (the downward API's \
                     spec.nodeName) or kubernetes.node_name"
                    )
                })?,
        };
        check_node_name(&node_name).map_err(|reason| format!("{NODE_NAME_ENV}: {reason}"))?;
        Ok(Some(WatchPlan {
            source,
            node_name,
            max_pods: self.max_pods,
            labels: LabelBounds {
                max_labels: self.max_labels_per_pod,
                max_label_bytes: self.max_label_bytes,
            },
        }))
    }
}

/// A node name is a DNS subdomain: lowercase letters, digits, `-` and `.`, at most 253 bytes.
/// (It goes into the watch's field selector, so nothing else may pass.)
fn check_node_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a node name (a DNS subdomain)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_outside_a_cluster_unless_configured() {
        let config = KubernetesConfig::default();
        assert_eq!(config.plan(env(&[("NODE_NAME", "n1")])), Ok(None));
        let forced = KubernetesConfig {
            enabled: Some(true),
            ..KubernetesConfig::default()
        };
        assert!(forced
            .plan(env(&[]))
            .unwrap_err()
            .contains("KUBERNETES_SERVICE_HOST"));
    }

    #[test]
    fn in_a_cluster_the_service_and_the_node_name_come_from_the_environment() {
        let plan = KubernetesConfig::default()
            .plan(env(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("NODE_NAME", "worker-1.example"),
            ]))
            .unwrap()
            .expect("on");
        assert_eq!(plan.source, ApiSource::InCluster);
        assert_eq!(plan.node_name, "worker-1.example");
        assert_eq!(plan.labels.max_labels, 64);
        let off = KubernetesConfig {
            enabled: Some(false),
            ..KubernetesConfig::default()
        };
        assert_eq!(
            off.plan(env(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")])),
            Ok(None)
        );
    }

    #[test]
    fn an_explicit_server_needs_a_node_name_that_is_a_dns_name() {
        let config = KubernetesConfig {
            api_server: Some("http://127.0.0.1:8001".into()),
            ..KubernetesConfig::default()
        };
        assert!(config.plan(env(&[])).unwrap_err().contains("NODE_NAME"));
        assert!(config
            .plan(env(&[("NODE_NAME", "n1,spec.nodeName!=x")]))
            .unwrap_err()
            .contains("not a node name"));
        let plan = config.plan(env(&[("NODE_NAME", "n1")])).unwrap().unwrap();
        assert_eq!(plan.source, ApiSource::Url("http://127.0.0.1:8001".into()));
    }

    #[test]
    fn every_bad_setting_is_named() {
        let config = KubernetesConfig {
            api_server: Some("127.0.0.1:8001".into()),
            kubeconfig: Some("/etc/kube/config".into()),
            node_name: Some("Node_1".into()),
            max_pods: 0,
            max_labels_per_pod: 100_000,
            max_label_bytes: 4096,
            ..KubernetesConfig::default()
        };
        let problems = config.problems().join("\n");
        for expected in [
            "kubernetes.max_pods must be 1 to 65536, got 0",
            "kubernetes.max_labels_per_pod must be 1 to",
            "kubernetes.max_label_bytes must be 1 to 512, got 4096",
            "'127.0.0.1:8001' is not an http:// or https:// URL",
            "not both",
            "kubernetes.node_name: 'Node_1' is not a node name",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        assert!(KubernetesConfig::default().problems().is_empty());
        assert!(toml::from_str::<KubernetesConfig>("bogus = 1").is_err());
    }
}
