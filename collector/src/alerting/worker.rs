//! One delivery worker per sink: takes due outbox rows oldest first, delivers them, and on
//! failure retries with backoff and jitter (honouring `Retry-After`), dead-letters what is too
//! old or refused for good, and raises a meta-alert to the other sinks when the sink keeps
//! failing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::sink_status::SinkStatus;
use super::{backoff, AlertPipeline, COLLECTOR_HOST};
use crate::alert::{Level, SystemAlert};
use crate::clock::now_unix_ns;
use crate::config::DeliverySettings;
use crate::metrics::figures::figures;
use crate::sinks::{DeliveryError, Sink};
use crate::store::Pending;

/// Rows fetched per round.
const BATCH: usize = 32;

/// Rule id of the meta-alert raised when a sink keeps failing.
pub const SINK_FAILING: &str = "kestrel.system.sink-failing";
/// Rule id of the alert raised when a failing sink delivers again.
pub const SINK_RECOVERED: &str = "kestrel.system.sink-recovered";

/// Delivers one sink's outbox.
pub struct SinkWorker {
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Retry settings.
    pub settings: DeliverySettings,
    /// Woken when alerts are queued.
    pub wake: Arc<Notify>,
    /// Raises meta-alerts and reaches the store.
    pub pipeline: AlertPipeline,
    /// Stops the worker.
    pub stop: CancellationToken,
    /// What readiness sees of this sink.
    pub status: Arc<SinkStatus>,
}

/// Consecutive failures of the sink and whether the meta-alert went out.
#[derive(Default)]
struct Health {
    failures: u32,
    meta_raised: bool,
    last_error: String,
}

impl SinkWorker {
    /// Runs until `stop` is cancelled. An attempt cut short by the stop stays in the outbox and
    /// is made again (same idempotency key) at the next start.
    pub async fn run(self) {
        let _worker = self.status.worker();
        let stop = self.stop.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = self.deliver_forever() => {}
        }
        debug!(sink = self.sink.name(), "delivery worker stopped");
    }

    async fn deliver_forever(&self) {
        let name = self.sink.name().to_owned();
        let mut health = Health::default();
        loop {
            let sink = name.clone();
            let now = now_unix_ns();
            let due = self
                .pipeline
                .store()
                .run(move |s| s.due_deliveries(&sink, now, BATCH))
                .await;
            let rows = match due {
                Ok(rows) => rows,
                Err(e) => {
                    error!(sink = %name, error = %e, "cannot read the outbox");
                    tokio::time::sleep(self.settings.poll_interval).await;
                    continue;
                }
            };
            if rows.is_empty() {
                self.idle(&name).await;
                continue;
            }
            for row in rows {
                if let Some(pause) = self.attempt(&name, row, &mut health).await {
                    tokio::time::sleep(pause).await;
                    break;
                }
            }
        }
    }

    /// Waits for a wake-up, the next due row or the poll interval, whichever comes first.
    async fn idle(&self, name: &str) {
        let sink = name.to_owned();
        let next = self
            .pipeline
            .store()
            .run(move |s| s.next_due(&sink))
            .await
            .ok()
            .flatten();
        let mut wait = self.settings.poll_interval;
        if let Some(next) = next {
            wait = wait.min(Duration::from_nanos(next.saturating_sub(now_unix_ns())));
        }
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    /// Makes one attempt; returns how long to leave the sink alone after a retryable failure.
    async fn attempt(&self, name: &str, row: Pending, health: &mut Health) -> Option<Duration> {
        let started = std::time::Instant::now();
        let result = self.sink.deliver(&row.alert).await;
        let now = now_unix_ns();
        let store = self.pipeline.store().clone();
        match result {
            Ok(()) => {
                figures().delivery(name, "delivered");
                figures()
                    .delivery_latency
                    .get_or_create(&[("sink", name.to_owned())])
                    .observe(
                        Duration::from_nanos(now.saturating_sub(row.enqueued_unix_ns))
                            .as_secs_f64(),
                    );
                debug!(
                    sink = name,
                    alert = row.alert_id,
                    attempts = row.attempts + 1,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "alert delivered"
                );
                let sink = name.to_owned();
                let row_id = row.alert_id;
                if let Err(e) = store
                    .run(move |s| s.record_delivered(&sink, &row, now))
                    .await
                {
                    error!(sink = name, alert = row_id, error = %e, "delivered, but cannot record it");
                }
                if health.meta_raised {
                    self.raise_recovered(name, health).await;
                }
                *health = Health::default();
                self.status.delivered();
                None
            }
            Err(error) => {
                health.failures += 1;
                health.last_error = error.to_string();
                self.status.failed(health.failures, &health.last_error);
                let attempts = row.attempts + 1;
                let age = Duration::from_nanos(now.saturating_sub(row.enqueued_unix_ns));
                let (permanent, retry_after) = match &error {
                    DeliveryError::Permanent { .. } => (true, None),
                    DeliveryError::Retryable { retry_after, .. } => (false, *retry_after),
                };
                let dead = permanent || age >= self.settings.max_age;
                figures().delivery(name, if dead { "dead_lettered" } else { "failed" });
                let pause = if dead {
                    warn!(sink = name, alert = row.alert_id, attempts, error = %error,
                        reason = if permanent { "refused for good" } else { "too old" },
                        "alert delivery dead-lettered; `kestrel-collector alerts replay` resends it");
                    let sink = name.to_owned();
                    let message = error.to_string();
                    let moved = store
                        .run(move |s| s.dead_letter(&sink, &row, now, &message))
                        .await;
                    if let Err(e) = moved {
                        error!(sink = name, error = %e, "cannot dead-letter");
                    }
                    None
                } else {
                    let delay = backoff::delay(
                        attempts,
                        self.settings.initial_backoff,
                        self.settings.max_backoff,
                    )
                    .max(retry_after.unwrap_or_default().min(self.settings.max_age));
                    warn!(sink = name, alert = row.alert_id, attempts, error = %error,
                        retry_in_ms = delay.as_millis() as u64, "alert delivery failed; will retry");
                    let next = now.saturating_add(delay.as_nanos() as u64);
                    let message = error.to_string();
                    let noted = store.run(move |s| s.retry_at(&row, next, &message)).await;
                    if let Err(e) = noted {
                        error!(sink = name, error = %e, "cannot record the failed attempt");
                    }
                    Some(delay)
                };
                let threshold = self.settings.meta_alert_after;
                if threshold > 0 && health.failures >= threshold && !health.meta_raised {
                    self.raise_failing(name, health).await;
                }
                pause
            }
        }
    }

    async fn raise_failing(&self, name: &str, health: &mut Health) {
        health.meta_raised = true;
        let alert = SystemAlert {
            rule_id: SINK_FAILING.into(),
            title: format!("Alert sink {name} keeps failing"),
            description: format!(
                "The collector could not deliver alerts to sink {name} {} times in a row \
                 (last error: {}). Alerts wait in its outbox and are retried; check the \
                 endpoint, its credentials and `kestrel-collector alerts list`.",
                health.failures, health.last_error
            ),
            level: Level::High,
            host: COLLECTOR_HOST.into(),
            group: Some(name.to_owned()),
            details: json!({
                "sink": name,
                "consecutive_failures": health.failures,
                "last_error": health.last_error,
            }),
            time_unix_ns: now_unix_ns(),
        };
        warn!(
            sink = name,
            failures = health.failures,
            "sink keeps failing: meta-alert raised"
        );
        if let Err(e) = self
            .pipeline
            .raise_excluding(alert, vec![name.to_owned()])
            .await
        {
            error!(sink = name, error = %e, "cannot raise the sink-failing meta-alert");
        }
    }

    async fn raise_recovered(&self, name: &str, health: &Health) {
        let alert = SystemAlert {
            rule_id: SINK_RECOVERED.into(),
            title: format!("Alert sink {name} delivers again"),
            description: format!(
                "Sink {name} accepted an alert after {} failed attempts; its backlog is being \
                 delivered.",
                health.failures
            ),
            level: Level::Low,
            host: COLLECTOR_HOST.into(),
            group: Some(name.to_owned()),
            details: json!({ "sink": name, "failed_attempts": health.failures }),
            time_unix_ns: now_unix_ns(),
        };
        info!(sink = name, "sink recovered");
        if let Err(e) = self.pipeline.raise(alert).await {
            error!(sink = name, error = %e, "cannot raise the sink-recovered alert");
        }
    }
}
