//! `serve --metrics-listen ADDR`: what the collector has stored and still owes, as Prometheus
//! text on `GET /metrics`. Read from the store on each scrape (a read-only connection), so the
//! figures are the durable ones. The event count is the store's running count, kept in the
//! transactions that insert and delete events: counting a large events table on every scrape
//! would hold a read transaction long enough to stall WAL checkpoints.
//!
//! Label values an agent chooses (a Gap's reason) cannot forge lines or grow the series without
//! bound: every label value is escaped per the text format, and a reason outside
//! [`GAP_REASONS`] is counted under `other`.

use std::collections::BTreeMap;
use std::{fmt::Write, path::PathBuf};

use axum::{http::StatusCode, routing::get, Router};
use tokio::net::TcpListener;

use crate::store::{Access, Store, StoreError};
use crate::text::prometheus_label;

/// The Gap reasons agents send (see `Gap.reason` in the protocol); `""` is a Gap that states
/// none. Any other reason is a label value `other`.
pub const GAP_REASONS: &[&str] = &[
    "",
    "spool_full",
    "spool_corrupt",
    "queue_full",
    "kernel",
    "agent_crashed",
    "agent_stopped",
];

/// `(reason, count)` with reasons outside [`GAP_REASONS`] folded into `other`, counts summed
/// saturating; in a stable order.
pub fn fold_reasons(by_reason: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, count) in by_reason {
        let label = if GAP_REASONS.contains(&reason.as_str()) {
            reason
        } else {
            "other".to_owned()
        };
        let total = folded.entry(label).or_default();
        *total = total.saturating_add(count);
    }
    folded.into_iter().collect()
}

/// Serves `GET /metrics` on `listener` for the store in `data`, until the task is dropped.
pub async fn serve(listener: TcpListener, data: PathBuf) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let data = data.clone();
            async move {
                match tokio::task::spawn_blocking(move || render(&data)).await {
                    Ok(Ok(text)) => (StatusCode::OK, text),
                    Ok(Err(e)) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reading the store: {e}\n"),
                    ),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                }
            }
        }),
    );
    axum::serve(listener, app).await
}

/// The Prometheus text exposition of the store in `data` now.
pub fn render(data: &std::path::Path) -> Result<String, StoreError> {
    let stats = Store::open_existing(data, Access::ReadOnly)?.stats()?;
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    // Store counts are never negative; a negative one would be a bug, shown as 0.
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    let one = |value: u64| vec![(String::new(), value)];
    let labelled = |samples: Vec<(String, u64)>, label: &str| -> Vec<(String, u64)> {
        samples
            .into_iter()
            .map(|(key, value)| {
                let escaped = prometheus_label(&key);
                (format!("{{{label}=\"{escaped}\"}}"), value)
            })
            .collect()
    };
    family(
        "kestrel_collector_events_stored",
        "gauge",
        "Events in the store.",
        one(stats.events),
    );
    family(
        "kestrel_collector_alerts_stored",
        "gauge",
        "Alerts in the store.",
        one(count(stats.alerts)),
    );
    family(
        "kestrel_collector_events_lost_total",
        "counter",
        "Events agents reported lost (Gap records), by reason (unknown reasons: other); 0 counts for windows of unknown size.",
        labelled(fold_reasons(stats.events_lost_by_reason), "reason"),
    );
    family(
        "kestrel_collector_agents_known",
        "gauge",
        "Agent identities that have connected.",
        one(count(stats.agents)),
    );
    family(
        "kestrel_collector_alert_outbox_pending",
        "gauge",
        "Alert deliveries waiting to be sent, by sink.",
        labelled(
            stats
                .outbox_pending_by_sink
                .into_iter()
                .map(|(sink, n)| (sink, count(n)))
                .collect(),
            "sink",
        ),
    );
    family(
        "kestrel_collector_alert_dead_letters",
        "gauge",
        "Alert deliveries given up on (see `alerts replay`).",
        one(count(stats.dead_letters)),
    );
    crate::ingress::limits::write_metrics(&mut text);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reasons_fold_into_other_and_counts_saturate() {
        let folded = fold_reasons(vec![
            ("kernel".into(), u64::MAX),
            ("made-up\n".into(), 2),
            ("also made up".into(), u64::MAX),
            ("spool_full".into(), 3),
        ]);
        assert_eq!(
            folded,
            vec![
                ("kernel".to_owned(), u64::MAX),
                ("other".to_owned(), u64::MAX),
                ("spool_full".to_owned(), 3),
            ]
        );
    }
}
