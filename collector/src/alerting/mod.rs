//! The alert pipeline after detection: admission (suppression, fingerprint dedup, rate limit)
//! in the store transaction, a durable per-sink outbox, and one delivery worker per sink.
//!
//! Other parts of the collector raise their own alerts through [`AlertPipeline::raise`]:
//!
//! ```no_run
//! # async fn example(alerts: kestrel_collector::alerting::AlertPipeline) {
//! use kestrel_collector::alert::{Level, SystemAlert};
//! alerts.raise(SystemAlert {
//!     rule_id: "agent-silent".into(),
//!     title: "Agent stopped sending heartbeats".into(),
//!     description: "No heartbeat from node-1 for 2m.".into(),
//!     level: Level::High,
//!     host: "spiffe://kestrel.local/node/node-1".into(),
//!     group: None,
//!     details: serde_json::json!({ "last_seen": "2026-01-01T00:00:00Z" }),
//!     time_unix_ns: kestrel_collector::clock::now_unix_ns(),
//! }).await.unwrap();
//! # }
//! ```

pub mod admit;
pub mod backoff;
pub mod batch;
pub mod glob;
pub mod losses;
pub mod sink_status;
pub mod suppress;
pub mod worker;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use admit::{Admission, Policy, Route};
pub use batch::{EventRecord, WriteBatch};

use crate::alert::{Alert, SystemAlert};
use crate::clock::now_unix_ns;
use crate::config::Settings;
use crate::sinks::{Sink, SinkError};
use crate::store::{SinkBacklog, Store, StoreError};
use sink_status::SinkStatus;
use worker::SinkWorker;

/// How long [`AlertPipeline::shutdown`] waits for deliveries that are due.
pub const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// `host` of the alerts the collector raises about itself.
pub const COLLECTOR_HOST: &str = "collector";

/// Admission policy and delivery workers; cheap to clone.
#[derive(Clone)]
pub struct AlertPipeline {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    policy: Policy,
    wakers: Vec<Arc<Notify>>,
    /// Each sink's delivery state, for readiness.
    sinks: Vec<Arc<SinkStatus>>,
    stop: CancellationToken,
    workers: TaskTracker,
}

impl AlertPipeline {
    /// Builds every configured sink and starts one delivery worker per sink (needs a tokio
    /// runtime). Every sink that cannot be built is reported.
    pub fn start(store: Store, settings: &Settings) -> Result<AlertPipeline, Vec<SinkError>> {
        let mut built = Vec::new();
        let mut errors = Vec::new();
        for sink in &settings.sinks {
            match sink.build() {
                Ok(sink) => built.push(sink),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AlertPipeline::start_with_sinks(store, settings, built))
    }

    /// Starts workers for sinks built by the caller; `settings.sinks` gives their routes (a
    /// sink without settings takes every alert).
    pub fn start_with_sinks(
        store: Store,
        settings: &Settings,
        sinks: Vec<Arc<dyn Sink>>,
    ) -> AlertPipeline {
        let mut policy = Policy::new(&settings.alerts, &settings.sinks);
        for sink in &sinks {
            if !policy.routes.iter().any(|r| r.sink == sink.name()) {
                policy.routes.push(Route {
                    sink: sink.name().to_owned(),
                    min_level: crate::alert::Level::Informational,
                    tags: Vec::new(),
                });
            }
        }
        let wakers: Vec<Arc<Notify>> = sinks.iter().map(|_| Arc::new(Notify::new())).collect();
        let statuses: Vec<Arc<SinkStatus>> = sinks
            .iter()
            .map(|sink| SinkStatus::new(sink.name(), settings.delivery.meta_alert_after))
            .collect();
        let pipeline = AlertPipeline {
            shared: Arc::new(Shared {
                store,
                policy,
                wakers: wakers.clone(),
                sinks: statuses.clone(),
                stop: CancellationToken::new(),
                workers: TaskTracker::new(),
            }),
        };
        for ((sink, wake), status) in sinks.into_iter().zip(wakers).zip(statuses) {
            info!(sink = sink.name(), "alert sink ready");
            let worker = SinkWorker {
                sink,
                settings: settings.delivery.clone(),
                wake,
                pipeline: pipeline.clone(),
                stop: pipeline.shared.stop.clone(),
                status,
            };
            pipeline.shared.workers.spawn(worker.run());
        }
        pipeline.shared.workers.close();
        pipeline.warn_about_orphans();
        pipeline
    }

    fn warn_about_orphans(&self) {
        let routes = self.shared.policy.sink_names();
        let backlog = self.shared.store.backlog();
        for SinkBacklog { sink, pending, .. } in backlog.unwrap_or_default() {
            if pending > 0 && !routes.contains(&sink) {
                warn!(sink = %sink, pending, "alerts wait in the outbox for a sink that is not configured");
            }
        }
    }

    /// Each sink's delivery state (alive or dead), in configuration order.
    pub fn sink_statuses(&self) -> &[Arc<SinkStatus>] {
        &self.shared.sinks
    }

    /// The admission policy (applied by the ingest pipeline in its store transaction).
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Wakes every delivery worker (call after committing new alerts).
    pub fn wake(&self) {
        for waker in &self.shared.wakers {
            waker.notify_one();
        }
    }

    /// Raises an alert about Kestrel itself or an agent (agent silent, agent recovered, …):
    /// stored, deduplicated and delivered like a detection.
    pub async fn raise(&self, alert: SystemAlert) -> Result<Admission, StoreError> {
        self.raise_excluding(alert, Vec::new()).await
    }

    /// [`raise`](Self::raise), skipping the named sinks.
    pub async fn raise_excluding(
        &self,
        alert: SystemAlert,
        exclude: Vec<String>,
    ) -> Result<Admission, StoreError> {
        let policy = self.shared.policy.clone();
        let record = Alert::from_system(&alert);
        let admission = self
            .shared
            .store
            .run(move |s| {
                s.in_admission_transaction(|tx| {
                    admit::admit(tx, &policy, record, now_unix_ns(), &exclude)
                })
            })
            .await?;
        if let Admission::Created(created) = &admission {
            info!(rule_id = %created.rule.id, host = %created.host, id = created.id, "system alert");
            self.wake();
        }
        Ok(admission)
    }

    /// Gives the workers up to [`SHUTDOWN_DRAIN`] to deliver what is due now, then stops them
    /// and waits for them. What is left (an attempt in flight, a sink in backoff) stays in the
    /// outbox and is delivered at the next start, under the same idempotency key.
    pub async fn shutdown(&self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        while tokio::time::Instant::now() < deadline && self.due_now().await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.shared.stop.cancel();
        self.shared.workers.wait().await;
    }

    /// True when a configured sink has a delivery due now.
    async fn due_now(&self) -> bool {
        let sinks = self.shared.policy.sink_names();
        if self.shared.wakers.is_empty() {
            return false;
        }
        let now = now_unix_ns();
        self.shared
            .store
            .run(move |s| {
                let mut due = false;
                for sink in &sinks {
                    due |= !s.due_deliveries(sink, now, 1)?.is_empty();
                }
                Ok(due)
            })
            .await
            .unwrap_or(false)
    }
}
