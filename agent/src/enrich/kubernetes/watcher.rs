//! Keeps the [`PodDirectory`] current from a list and watch of this node's pods (field selector
//! `spec.nodeName=<node>`), through kube-runtime's [`watcher`].
//!
//! The watcher lists, then watches from the list's resourceVersion; a `410 Gone` or a watch it
//! cannot resume starts a new list (a relist, which replaces the directory's contents), and a
//! lost connection or refused request is retried after an exponential backoff (kube-runtime's
//! default: 0.8 s doubling to 30 s, with jitter). An object that does not decode as a pod, or
//! decodes without what the agent needs, is skipped with a warning. Nothing here ever stops
//! events: the resolver reads whatever the directory holds.

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    runtime::{watcher, WatchStreamExt as _},
    Api, Client,
};

use super::{
    directory::{PodDirectory, Upsert},
    pod::{LabelBounds, PodMeta},
};

/// What [`PodWatcher::run`] has seen, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCounts {
    /// Lists started (the first one and every relist).
    pub lists: u64,
    /// Errors from the API server or the connection (each followed by a backoff).
    pub errors: u64,
    /// Objects skipped as unusable.
    pub skipped: u64,
}

/// Watches this node's pods and keeps a [`PodDirectory`] of them.
pub struct PodWatcher {
    client: Client,
    node_name: String,
    directory: Arc<PodDirectory>,
    labels: LabelBounds,
    counts: Arc<std::sync::Mutex<WatchCounts>>,
}

impl PodWatcher {
    /// A watcher of the pods on node `node_name` through `client`, into `directory`.
    pub fn new(
        client: Client,
        node_name: impl Into<String>,
        directory: Arc<PodDirectory>,
        labels: LabelBounds,
    ) -> Self {
        Self {
            client,
            node_name: node_name.into(),
            directory,
            labels,
            counts: Arc::default(),
        }
    }

    /// A handle on the counts, readable while [`run`](Self::run) goes on.
    pub fn counts(&self) -> Arc<std::sync::Mutex<WatchCounts>> {
        Arc::clone(&self.counts)
    }

    /// Lists and watches until the task is dropped (errors are retried, never returned).
    pub async fn run(self) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.node_name);
        let config = watcher::Config::default().fields(&selector);
        let mut events = watcher(api, config).default_backoff().boxed();
        tracing::info!(node = %self.node_name, "watching this node's pods on the Kubernetes API server");
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => {
                    self.count(|c| c.lists += 1);
                    self.directory.begin_relist();
                }
                Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => self.apply(&pod),
                Ok(watcher::Event::InitDone) => {
                    let dropped = self.directory.end_relist();
                    tracing::info!(
                        pods = self.directory.len(),
                        dropped,
                        "Kubernetes pods listed"
                    );
                }
                Ok(watcher::Event::Delete(pod)) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.directory.remove(uid);
                    }
                }
                Err(error) => {
                    self.count(|c| c.errors += 1);
                    tracing::warn!(%error, "Kubernetes pod watch; retrying after a backoff");
                }
            }
        }
    }

    /// Keeps what is usable of `pod`.
    fn apply(&self, pod: &Pod) {
        let meta = match PodMeta::from_pod(pod, self.labels) {
            Ok(meta) => meta,
            Err(error) => {
                self.count(|c| c.skipped += 1);
                tracing::warn!(%error, "Kubernetes pod object skipped");
                return;
            }
        };
        if meta.node_name != self.node_name {
            self.count(|c| c.skipped += 1);
            tracing::warn!(
                uid = %meta.uid,
                node = %meta.node_name,
                "Kubernetes API server sent a pod of another node; skipped"
            );
            return;
        }
        if meta.labels_dropped > 0 {
            tracing::debug!(uid = %meta.uid, dropped = meta.labels_dropped, "pod labels past the bounds left out");
        }
        let uid = meta.uid.clone();
        if self.directory.upsert(meta) == Upsert::Full {
            tracing::warn!(
                %uid,
                refused = self.directory.refused(),
                "Kubernetes pod directory full (kubernetes.max_pods); this pod gets no metadata"
            );
        }
    }

    fn count(&self, change: impl FnOnce(&mut WatchCounts)) {
        change(
            &mut self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}
