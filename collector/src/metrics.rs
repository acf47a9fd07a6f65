//! `serve --metrics-listen ADDR`: what the collector has stored and still owes, as Prometheus
//! text on `GET /metrics`. Read from the store on each scrape (a read-only connection), so the
//! figures are the durable ones. The event count is the store's running count, kept in the
//! transactions that insert and delete events: counting a large events table on every scrape
//! would hold a read transaction long enough to stall WAL checkpoints.

use std::{fmt::Write, path::PathBuf};

use axum::{http::StatusCode, routing::get, Router};
use rusqlite::{Connection, OpenFlags};
use tokio::net::TcpListener;

use crate::store::DB_FILE;

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
pub fn render(data: &std::path::Path) -> rusqlite::Result<String> {
    let db = Connection::open_with_flags(
        data.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, i64)>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let one = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        Ok(vec![(String::new(), db.query_row(sql, [], |r| r.get(0))?)])
    };
    let labelled = |sql: &str, label: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut statement = db.prepare(sql)?;
        let rows = statement.query_map([], |r| {
            let key: String = r.get(0)?;
            let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
            Ok((format!("{{{label}=\"{escaped}\"}}"), r.get(1)?))
        })?;
        rows.collect()
    };
    family(
        "kestrel_collector_events_stored",
        "gauge",
        "Events in the store.",
        vec![(
            String::new(),
            i64::try_from(crate::store::read_event_count(&db)?).unwrap_or(i64::MAX),
        )],
    );
    family(
        "kestrel_collector_alerts_stored",
        "gauge",
        "Alerts in the store.",
        one("SELECT COUNT(*) FROM alerts")?,
    );
    family(
        "kestrel_collector_events_lost_total",
        "counter",
        "Events agents reported lost (Gap records), by reason; 0 counts for windows of unknown size.",
        labelled(
            "SELECT reason, SUM(count) FROM gaps GROUP BY reason",
            "reason",
        )?,
    );
    family(
        "kestrel_collector_agents_known",
        "gauge",
        "Agent identities that have connected.",
        one("SELECT COUNT(*) FROM agents")?,
    );
    family(
        "kestrel_collector_alert_outbox_pending",
        "gauge",
        "Alert deliveries waiting to be sent, by sink.",
        labelled(
            "SELECT sink, COUNT(*) FROM alert_outbox GROUP BY sink",
            "sink",
        )?,
    );
    family(
        "kestrel_collector_alert_dead_letters",
        "gauge",
        "Alert deliveries given up on (see `alerts replay`).",
        one("SELECT COUNT(*) FROM alert_dead_letters")?,
    );
    Ok(text)
}
