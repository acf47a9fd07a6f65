//! `serve --metrics-listen ADDR`: what the collector has stored and still owes, as Prometheus
//! text on `GET /metrics`. Read from the store on each scrape (a read-only connection), so the
//! figures are the durable ones. The event count is the store's running count, kept in the
//! transactions that insert and delete events: counting a large events table on every scrape
//! would hold a read transaction long enough to stall WAL checkpoints.

use std::{fmt::Write, path::PathBuf};

use axum::{http::StatusCode, routing::get, Router};
use tokio::net::TcpListener;

use crate::store::{Access, Store, StoreError};

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
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, i64)>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let one = |value: i64| vec![(String::new(), value)];
    let labelled = |samples: Vec<(String, i64)>, label: &str| -> Vec<(String, i64)> {
        samples
            .into_iter()
            .map(|(key, value)| {
                let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
                (format!("{{{label}=\"{escaped}\"}}"), value)
            })
            .collect()
    };
    family(
        "kestrel_collector_events_stored",
        "gauge",
        "Events in the store.",
        one(i64::try_from(stats.events).unwrap_or(i64::MAX)),
    );
    family(
        "kestrel_collector_alerts_stored",
        "gauge",
        "Alerts in the store.",
        one(stats.alerts),
    );
    family(
        "kestrel_collector_events_lost_total",
        "counter",
        "Events agents reported lost (Gap records), by reason; 0 counts for windows of unknown size.",
        labelled(stats.events_lost_by_reason, "reason"),
    );
    family(
        "kestrel_collector_agents_known",
        "gauge",
        "Agent identities that have connected.",
        one(stats.agents),
    );
    family(
        "kestrel_collector_alert_outbox_pending",
        "gauge",
        "Alert deliveries waiting to be sent, by sink.",
        labelled(stats.outbox_pending_by_sink, "sink"),
    );
    family(
        "kestrel_collector_alert_dead_letters",
        "gauge",
        "Alert deliveries given up on (see `alerts replay`).",
        one(stats.dead_letters),
    );
    crate::ingress::limits::write_metrics(&mut text);
    Ok(text)
}
