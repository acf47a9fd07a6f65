//! `--metrics-listen ADDR`: the agent's figures (the ones its heartbeats carry) as Prometheus
//! text on `GET /metrics`, for a node's monitoring to scrape.

use std::{fmt::Write, sync::Arc};

use axum::{routing::get, Router};
use kestrel_proto::Heartbeat;
use tokio::net::TcpListener;

use crate::ship::{
    shipper::{AgentStats, ProcessUsage},
    spool::Spool,
};

/// Where the figures come from: the delivery's counters and spool when the agent ships to a
/// collector; otherwise only the process's own CPU and memory.
#[derive(Clone)]
pub struct MetricsSource {
    /// Counters and spool of the running delivery.
    pub delivery: Option<(Arc<AgentStats>, Arc<Spool>)>,
}

impl MetricsSource {
    /// The Prometheus text exposition of the figures now.
    pub fn render(&self) -> String {
        let heartbeat = match &self.delivery {
            Some((stats, spool)) => stats.snapshot(spool),
            None => {
                let usage = ProcessUsage::now();
                Heartbeat {
                    rss_bytes: usage.rss_bytes,
                    cpu_ns: usage.cpu_ns,
                    ..Heartbeat::default()
                }
            }
        };
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        let h = &heartbeat;
        metric(
            "kestrel_agent_events_sent_total",
            "counter",
            "Events sent to the collector, resends included.",
            h.events_sent as f64,
        );
        metric(
            "kestrel_agent_kernel_drops_total",
            "counter",
            "Records the kernel ring buffer had no room for.",
            h.kernel_drops as f64,
        );
        metric(
            "kestrel_agent_events_shed_total",
            "counter",
            "Events given up (spool full, queue full, write errors), each counted in a Gap.",
            h.events_shed as f64,
        );
        metric(
            "kestrel_agent_spool_bytes",
            "gauge",
            "Bytes the spool holds on disk.",
            h.spool_bytes as f64,
        );
        metric(
            "kestrel_agent_spool_max_bytes",
            "gauge",
            "Most bytes the spool may hold.",
            h.spool_max_bytes as f64,
        );
        metric(
            "kestrel_agent_spool_unacked",
            "gauge",
            "Spool records not yet acknowledged by the collector.",
            h.spool_unacked as f64,
        );
        metric(
            "kestrel_agent_queue_depth",
            "gauge",
            "Events waiting for the spool writer.",
            h.queue_depth as f64,
        );
        metric(
            "kestrel_agent_resident_bytes",
            "gauge",
            "Resident memory of the agent.",
            h.rss_bytes as f64,
        );
        metric(
            "kestrel_agent_cpu_seconds_total",
            "counter",
            "CPU time the agent has used (user + system).",
            h.cpu_ns as f64 / 1e9,
        );
        text
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, source: MetricsSource) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let source = source.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    source.render(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write as _};

    use super::*;
    use crate::ship::spool::SpoolConfig;

    #[tokio::test]
    async fn metrics_are_served_over_http_from_the_delivery_counters() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _writer) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        let stats = Arc::new(AgentStats::default());
        stats
            .kernel_drops
            .fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            MetricsSource {
                delivery: Some((stats, spool)),
            },
        ));
        let response = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("kestrel_agent_kernel_drops_total 7"),
            "{response}"
        );
        assert!(
            response.contains("kestrel_agent_spool_max_bytes 268435456"),
            "{response}"
        );
        assert!(response.contains("# TYPE kestrel_agent_resident_bytes gauge"));
    }
}
