//! The agent's watch of its node's pods against a stand-in API server on loopback
//! (`kestrel_testkit::kube_api`) that speaks the list and watch protocol with recorded pod
//! objects: adds, changes and deletes, a `410 Gone` that forces a relist, a dropped watch, a
//! failed list, malformed and foreign objects, an answer line without end, and a full
//! directory. No cluster is needed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kestrel_agent::enrich::kubernetes::{
    client::connect,
    config::ApiSource,
    line_limit::MAX_LINE_BYTES,
    pod::LabelBounds,
    watcher::{PodWatcher, WatchCounts},
    PodDirectory,
};
use kestrel_testkit::kube_api::{
    event, gone, recorded_pods, FakeApiServer, ListAnswer, WatchAnswer,
};
use serde_json::{json, Value};

const BOUNDS: LabelBounds = LabelBounds {
    max_labels: 64,
    max_label_bytes: 384,
};
const WEB: &str = "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60";
const EXPORTER: &str = "a9b8c7d6-e5f4-4a3b-8c2d-1e0f9a8b7c6d";
const BACKUP: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
/// The uid the kubelet gives the static etcd pod on the node (its mirror's config hash).
const ETCD_ON_NODE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn with_version(mut pod: Value, version: &str) -> Value {
    pod["metadata"]["resourceVersion"] = json!(version);
    pod
}

/// Starts a watcher of `node-1` against `server`; returns its directory and counts.
async fn watch(
    server: &FakeApiServer,
    max_pods: usize,
) -> (Arc<PodDirectory>, Arc<std::sync::Mutex<WatchCounts>>) {
    let client = connect(&ApiSource::Url(server.url())).await.unwrap();
    let directory = Arc::new(PodDirectory::new(max_pods));
    let watcher = PodWatcher::new(client, "node-1", Arc::clone(&directory), BOUNDS);
    let counts = watcher.counts();
    tokio::spawn(watcher.run());
    (directory, counts)
}

/// Waits up to 30 s for `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_watch_follows_adds_changes_deletes_a_gone_relist_and_a_disconnect() {
    let pods = recorded_pods();
    let (web, exporter, backup, etcd) = (&pods[0], &pods[1], &pods[2], &pods[3]);
    let mut relabelled = with_version(web.clone(), "102");
    relabelled["metadata"]["labels"]["release"] = json!("canary");
    let no_uid = json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "ghost", "namespace": "x", "resourceVersion": "97"},
        "spec": {"nodeName": "node-1", "containers": []}});
    let other_node = {
        let mut pod = with_version(exporter.clone(), "96");
        pod["metadata"]["uid"] = json!("11111111-2222-4333-8444-555555555555");
        pod["spec"]["nodeName"] = json!("node-2");
        pod
    };
    let malformed = r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bad","uid":"u-bad","resourceVersion":"103"},"spec":"not an object"}}"#;
    let server = FakeApiServer::start(
        vec![
            // The first list fails: retried after a backoff.
            ListAnswer::Status(500),
            ListAnswer::Pods(
                "100",
                vec![web.clone(), exporter.clone(), no_uid, other_node],
            ),
            // After the 410: the exporter is gone, the Job's pod and the mirror are new.
            ListAnswer::Pods(
                "200",
                vec![relabelled.clone(), backup.clone(), etcd.clone()],
            ),
        ],
        vec![
            WatchAnswer {
                lines: vec![
                    event("MODIFIED", &relabelled),
                    malformed.into(),
                    event("DELETED", &with_version(exporter.clone(), "104")),
                    event("ADDED", &with_version(exporter.clone(), "105")),
                    gone(),
                ],
                hold: false,
            },
            // A disconnect after one event: the watch resumes from its resourceVersion.
            WatchAnswer {
                lines: vec![event("DELETED", &with_version(backup.clone(), "202"))],
                hold: false,
            },
            WatchAnswer {
                lines: vec![event("ADDED", &with_version(backup.clone(), "203"))],
                hold: true,
            },
        ],
    )
    .await;
    let (directory, counts) = watch(&server, 1024).await;

    until("the relist after 410 and the resumed watch", || {
        server
            .requests()
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("resourceVersion=202"))
            && directory.get(BACKUP).is_some()
    })
    .await;
    let web = directory.get(WEB).expect("the Deployment's pod");
    assert_eq!(
        (web.name.as_str(), web.namespace.as_str()),
        ("web-7d4b9c8f5-x2x9q", "shop")
    );
    assert_eq!(
        web.labels.get("release").map(String::as_str),
        Some("canary"),
        "the MODIFIED event, kept through the relist"
    );
    let workload = web.workload.clone().unwrap();
    assert_eq!(
        (workload.kind.as_str(), workload.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(
        (web.service_account.as_str(), web.node_name.as_str()),
        ("web", "node-1")
    );
    assert!(
        directory.get(EXPORTER).is_none(),
        "re-added during the watch, then absent from the relist"
    );
    let backup = directory
        .get(BACKUP)
        .expect("re-added after the disconnect");
    assert_eq!(backup.workload.clone().unwrap().kind, "Job");
    let etcd = directory
        .get(ETCD_ON_NODE)
        .expect("the static pod by its node uid");
    assert_eq!(etcd.name, "etcd-node-1");
    assert_eq!(directory.len(), 3);
    assert!(directory.get("u-bad").is_none());

    let counts = *counts.lock().unwrap();
    assert_eq!(
        counts.lists, 3,
        "the failed list, the first and the relist: {counts:?}"
    );
    assert!(
        counts.errors >= 3,
        "500, malformed object and 410: {counts:?}"
    );
    assert_eq!(counts.skipped, 2, "no uid, another node: {counts:?}");
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-1")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("resourceVersion=100")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_full_directory_keeps_the_first_pods_and_refuses_the_rest() {
    let server = FakeApiServer::start(
        vec![ListAnswer::Pods("100", recorded_pods())],
        vec![WatchAnswer {
            lines: vec![],
            hold: true,
        }],
    )
    .await;
    let (directory, _) = watch(&server, 2).await;
    until("the list", || directory.refused() >= 2).await;
    assert_eq!(directory.len(), 2);
}

#[tokio::test]
async fn a_line_without_end_fails_the_answer_instead_of_filling_memory() {
    let endless = "x".repeat(MAX_LINE_BYTES + 1);
    let server = FakeApiServer::start(
        vec![ListAnswer::Pods("100", vec![])],
        vec![
            WatchAnswer {
                lines: vec![endless],
                hold: true,
            },
            WatchAnswer {
                lines: vec![event(
                    "ADDED",
                    &with_version(recorded_pods()[0].clone(), "101"),
                )],
                hold: true,
            },
        ],
    )
    .await;
    let (directory, counts) = watch(&server, 1024).await;
    until("the watch resumed after the oversized line", || {
        directory.get(WEB).is_some()
    })
    .await;
    assert!(counts.lock().unwrap().errors >= 1);
    let watches = server
        .requests()
        .iter()
        .filter(|r| r.contains("watch=true"))
        .count();
    assert_eq!(watches, 2);
}
