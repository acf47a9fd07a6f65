//! Merging what the Kubernetes API server says about a pod ([`PodMeta`]) into the container
//! context that the cgroup path and the runtime give.

use kestrel_proto::Container;

use crate::enrich::kubernetes::pod::PodMeta;

/// Adds `pod`'s labels, owner workload, service account and node name to `container`; the
/// runtime's pod name and namespace stay where it gave them, and fill in where it did not.
pub fn merge(container: &mut Container, pod: &PodMeta) {
    container.pod_labels = pod.labels.clone();
    let (kind, name) = match &pod.workload {
        Some(w) => (w.kind.clone(), w.name.clone()),
        None => (String::new(), String::new()),
    };
    container.workload_kind = kind;
    container.workload_name = name;
    container.service_account = pod.service_account.clone();
    container.node_name = pod.node_name.clone();
    if container.pod_name.is_empty() {
        container.pod_name = pod.name.clone();
    }
    if container.pod_namespace.is_empty() {
        container.pod_namespace = pod.namespace.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::kubernetes::owner::Workload;

    #[test]
    fn the_api_fills_in_kubernetes_fields_and_the_runtime_keeps_its_names() {
        let pod = PodMeta {
            uid: "u1".into(),
            name: "api-name".into(),
            namespace: "api-namespace".into(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            workload: Some(Workload {
                kind: "StatefulSet".into(),
                name: "db".into(),
            }),
            service_account: "db".into(),
            node_name: "node-1".into(),
            ..PodMeta::default()
        };
        let mut from_runtime = Container {
            id: "c1".into(),
            pod_name: "db-0".into(),
            pod_uid: "u1".into(),
            ..Container::default()
        };
        merge(&mut from_runtime, &pod);
        assert_eq!(from_runtime.pod_name, "db-0", "the runtime's name stays");
        assert_eq!(
            from_runtime.pod_namespace, "api-namespace",
            "the gap is filled"
        );
        assert_eq!(
            from_runtime.pod_labels.get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(
            (
                from_runtime.workload_kind.as_str(),
                from_runtime.workload_name.as_str()
            ),
            ("StatefulSet", "db")
        );
        assert_eq!(
            (
                from_runtime.service_account.as_str(),
                from_runtime.node_name.as_str()
            ),
            ("db", "node-1")
        );
    }
}
