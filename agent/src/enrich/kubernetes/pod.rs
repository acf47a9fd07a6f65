//! What the agent keeps of one pod from the API server, bounded: the API server is input like any
//! other, and a pod's labels are written by whoever may create pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::owner::{workload, Workload};

/// The annotation of a static pod's mirror naming the config hash the kubelet uses as the
/// pod's uid on the node (and so in its cgroup path); the mirror object has another uid.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Longest name, namespace, service account, node name or uid accepted (Kubernetes allows 253
/// for DNS subdomain names; the protocol carries at most 512 bytes per name).
pub const MAX_NAME_BYTES: usize = 253;

/// How much of a pod's labels is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelBounds {
    /// Most labels kept per pod (the first by key order).
    pub max_labels: usize,
    /// Most bytes of one label, key and value together; a longer label is dropped whole (a cut
    /// value could match a rule it should not).
    pub max_label_bytes: usize,
}

/// One pod on this node as the API server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels`, within the [`LabelBounds`], by key.
    pub labels: BTreeMap<String, String>,
    /// Labels left out by the bounds.
    pub labels_dropped: usize,
    /// The owning workload, if any.
    pub workload: Option<Workload>,
    /// `spec.serviceAccountName`.
    pub service_account: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// For a static pod's mirror, the uid the kubelet gave the pod on the node
    /// ([`MIRROR_ANNOTATION`]).
    pub mirror_of: Option<String>,
}

/// Why a pod object was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// The object has no `metadata.uid` to match containers by.
    #[error("pod {namespace}/{name}: no metadata.uid")]
    NoUid {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A name field is longer than any valid object has.
    #[error("pod uid {uid}: {field} is {len} bytes, more than {MAX_NAME_BYTES}")]
    TooLong {
        /// The pod's uid (itself cut to [`MAX_NAME_BYTES`]).
        uid: String,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

impl PodMeta {
    /// What to keep of `pod`, or why it is unusable.
    pub fn from_pod(pod: &Pod, bounds: LabelBounds) -> Result<Self, PodError> {
        let meta = &pod.metadata;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let uid = text(&meta.uid);
        if uid.is_empty() {
            return Err(PodError::NoUid {
                namespace: cut(&text(&meta.namespace)),
                name: cut(&text(&meta.name)),
            });
        }
        let spec = pod.spec.as_ref();
        let service_account = spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default();
        let node_name = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        let mirror_of = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .filter(|hash| !hash.is_empty())
            .cloned();
        let workload = workload(meta);
        let mut names = vec![
            ("metadata.uid", &uid),
            ("spec.serviceAccountName", &service_account),
            ("spec.nodeName", &node_name),
        ];
        let (name, namespace) = (text(&meta.name), text(&meta.namespace));
        names.extend([("metadata.name", &name), ("metadata.namespace", &namespace)]);
        if let Some(hash) = &mirror_of {
            names.push(("metadata.annotations[kubernetes.io/config.mirror]", hash));
        }
        if let Some(w) = &workload {
            names.extend([
                ("metadata.ownerReferences.kind", &w.kind),
                ("metadata.ownerReferences.name", &w.name),
            ]);
        }
        if let Some(&(field, value)) = names.iter().find(|(_, v)| v.len() > MAX_NAME_BYTES) {
            return Err(PodError::TooLong {
                uid: cut(&uid),
                field,
                len: value.len(),
            });
        }
        let (labels, labels_dropped) = bounded_labels(meta.labels.as_ref(), bounds);
        Ok(Self {
            uid,
            name,
            namespace,
            labels,
            labels_dropped,
            workload,
            service_account,
            node_name,
            mirror_of,
        })
    }
}

/// The labels within `bounds` (first by key) and how many were left out.
fn bounded_labels(
    labels: Option<&BTreeMap<String, String>>,
    bounds: LabelBounds,
) -> (BTreeMap<String, String>, usize) {
    let Some(labels) = labels else {
        return (BTreeMap::new(), 0);
    };
    let kept: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, v)| !k.is_empty() && k.len() + v.len() <= bounds.max_label_bytes)
        .take(bounds.max_labels)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dropped = labels.len() - kept.len();
    (kept, dropped)
}

/// `s` cut to at most [`MAX_NAME_BYTES`] on a character boundary, for error messages.
fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: LabelBounds = LabelBounds {
        max_labels: 3,
        max_label_bytes: 20,
    };

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_pod_keeps_its_names_labels_owner_service_account_and_node() {
        let meta = PodMeta::from_pod(
            &pod(serde_json::json!({
                "metadata": {
                    "name": "web-7d4b9c8f5-x2x9q", "namespace": "shop",
                    "uid": "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60",
                    "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-7d4b9c8f5", "uid": "r1", "controller": true}]
                },
                "spec": {"serviceAccountName": "web", "nodeName": "node-1", "containers": []}
            })),
            LabelBounds {
                max_labels: 64,
                max_label_bytes: 512,
            },
        )
        .unwrap();
        assert_eq!(meta.name, "web-7d4b9c8f5-x2x9q");
        assert_eq!(meta.namespace, "shop");
        assert_eq!(meta.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(meta.labels.len(), 2);
        assert_eq!(
            meta.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(
            (meta.service_account.as_str(), meta.node_name.as_str()),
            ("web", "node-1")
        );
        assert_eq!(meta.mirror_of, None);
    }

    #[test]
    fn labels_past_the_bounds_are_dropped_whole_and_counted() {
        let meta = PodMeta::from_pod(
            &pod(serde_json::json!({"metadata": {"uid": "u1", "labels": {
                "a": "1", "b": "this value is far too long to keep", "c": "3", "d": "4", "e": "5"
            }}})),
            BOUNDS,
        )
        .unwrap();
        let kept: Vec<&str> = meta.labels.keys().map(String::as_str).collect();
        assert_eq!(kept, ["a", "c", "d"]);
        assert_eq!(meta.labels_dropped, 2);
    }

    #[test]
    fn a_pod_without_uid_or_with_an_overlong_name_is_refused() {
        let err = PodMeta::from_pod(
            &pod(serde_json::json!({"metadata": {"name": "x", "namespace": "y"}})),
            BOUNDS,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "pod y/x: no metadata.uid");
        let long = "n".repeat(10_000);
        let err = PodMeta::from_pod(
            &pod(serde_json::json!({"metadata": {"uid": "u2", "name": long}})),
            BOUNDS,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PodError::TooLong {
                uid: "u2".into(),
                field: "metadata.name",
                len: 10_000
            }
        );
    }

    #[test]
    fn a_static_pod_mirror_names_the_uid_the_kubelet_gave_it() {
        let meta = PodMeta::from_pod(
            &pod(
                serde_json::json!({"metadata": {"uid": "mirror-uid", "annotations": {
                    "kubernetes.io/config.mirror": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
                }}}),
            ),
            BOUNDS,
        )
        .unwrap();
        assert_eq!(
            meta.mirror_of.as_deref(),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
    }
}
