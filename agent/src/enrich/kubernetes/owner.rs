//! The workload that owns a pod (Deployment, DaemonSet, StatefulSet, Job, CronJob's Job, …),
//! from the pod's own owner references.
//!
//! A Deployment's pods are owned by a ReplicaSet, which the Deployment owns. Rather than asking
//! the API server about every ReplicaSet (more RBAC, more requests), the Deployment is found by
//! the naming rule its controller follows: the ReplicaSet is named
//! `<deployment>-<pod-template-hash>` and every pod it creates carries the label
//! `pod-template-hash=<hash>`. A ReplicaSet whose name does not end in its pods' hash (one created
//! by hand, or by another controller) is reported as the ReplicaSet itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label the Deployment controller puts on the pods of each of its ReplicaSets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A workload that owns pods: its kind (`Deployment`, `DaemonSet`, `Job`, …) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The owner's kind as the API names it (`Deployment`, `ReplicaSet`, `StatefulSet`, `Node`
    /// for a static pod's mirror).
    pub kind: String,
    /// The owner's name, in the pod's namespace.
    pub name: String,
}

/// The workload that owns the pod described by `meta`: its controlling owner reference (the
/// first owner when none is marked controller), with a ReplicaSet of a Deployment resolved to
/// the Deployment. `None` for a bare pod.
pub fn workload(meta: &ObjectMeta) -> Option<Workload> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    if owner.kind.is_empty() || owner.name.is_empty() {
        return None;
    }
    if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get(POD_TEMPLATE_HASH));
        if let Some(deployment) = hash.and_then(|hash| deployment_of(&owner.name, hash)) {
            return Some(Workload {
                kind: "Deployment".into(),
                name: deployment.into(),
            });
        }
    }
    Some(Workload {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    })
}

/// The Deployment a ReplicaSet named `replica_set` belongs to when its pods carry template hash
/// `hash`: the name without its `-<hash>` suffix.
fn deployment_of<'a>(replica_set: &'a str, hash: &str) -> Option<&'a str> {
    if hash.is_empty() {
        return None;
    }
    replica_set
        .strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(
        kind: &str,
        name: &str,
        controller: Option<bool>,
        hash: Option<&str>,
    ) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: if kind == "Node" { "v1" } else { "apps/v1" }.into(),
                kind: kind.into(),
                name: name.into(),
                controller,
                ..OwnerReference::default()
            }]),
            labels: hash.map(|h| [(POD_TEMPLATE_HASH.to_owned(), h.to_owned())].into()),
            ..ObjectMeta::default()
        }
    }

    fn pair(w: Option<Workload>) -> Option<(String, String)> {
        w.map(|w| (w.kind, w.name))
    }

    #[test]
    fn a_replica_set_of_a_deployment_resolves_to_the_deployment_by_its_template_hash() {
        let meta = owned_by(
            "ReplicaSet",
            "web-frontend-7d4b9c8f5",
            Some(true),
            Some("7d4b9c8f5"),
        );
        assert_eq!(
            pair(workload(&meta)),
            Some(("Deployment".into(), "web-frontend".into()))
        );
    }

    #[test]
    fn a_replica_set_whose_name_does_not_end_in_the_hash_stays_a_replica_set() {
        for (name, hash) in [
            ("handmade", Some("7d4b9c8f5")),
            ("web-7d4b9c8f5", None),
            ("web-7d4b9c8f5", Some("")),
            ("-7d4b9c8f5", Some("7d4b9c8f5")),
            ("web7d4b9c8f5", Some("7d4b9c8f5")),
        ] {
            let meta = owned_by("ReplicaSet", name, Some(true), hash);
            assert_eq!(
                pair(workload(&meta)),
                Some(("ReplicaSet".into(), name.into())),
                "{name} {hash:?}"
            );
        }
    }

    #[test]
    fn other_controllers_are_reported_as_they_are() {
        for kind in ["DaemonSet", "StatefulSet", "Job", "Node"] {
            let meta = owned_by(kind, "x", Some(true), Some("abc"));
            assert_eq!(pair(workload(&meta)), Some((kind.into(), "x".into())));
        }
    }

    #[test]
    fn the_controlling_owner_wins_over_the_first_and_a_bare_pod_has_none() {
        let mut meta = owned_by("ConfigMap", "not-the-controller", None, None);
        meta.owner_references
            .as_mut()
            .unwrap()
            .push(OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "backup-29012345".into(),
                controller: Some(true),
                ..OwnerReference::default()
            });
        assert_eq!(
            pair(workload(&meta)),
            Some(("Job".into(), "backup-29012345".into()))
        );
        assert_eq!(workload(&ObjectMeta::default()), None);
        assert_eq!(workload(&owned_by("", "x", Some(true), None)), None);
    }
}
