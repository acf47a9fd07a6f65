//! `--metrics-listen ADDR`: the agent's figures as Prometheus text on `GET /metrics` (served by
//! [`crate::endpoint`]), for a node's monitoring to scrape: the live instruments of
//! [`figures`], the heartbeat figures read at each scrape ([`snapshot`]) and
//! `kestrel_agent_build_info`. Encoded by `prometheus-client`.

pub mod figures;
pub mod snapshot;

use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::ship::{shipper::AgentStats, spool::Spool};
use snapshot::HeartbeatFigures;

/// Content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The agent's metrics; `delivery` is the running delivery's counters and spool when the
    /// agent ships to a collector.
    pub fn new(delivery: Option<(Arc<AgentStats>, Arc<Spool>)>) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "kestrel_agent_build",
            "The agent's version (value 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        figures::figures().register(&mut registry);
        registry.register_collector(Box::new(HeartbeatFigures { delivery }));
        Metrics { registry }
    }

    /// The Prometheus text exposition (version 0.0.4) of the figures now.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::spool::SpoolConfig;

    #[test]
    fn heartbeat_figures_and_instruments_are_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _writer) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        let stats = Arc::new(AgentStats::default());
        stats
            .kernel_drops
            .fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        figures::figures().lost("fork", "queue_full", 3);
        let text = Metrics::new(Some((stats, spool))).render();
        assert!(
            text.contains("kestrel_agent_kernel_drops_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("kestrel_agent_spool_max_bytes 268435456\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE kestrel_agent_resident_bytes gauge\n"));
        assert!(text.contains("kestrel_agent_spool_oldest_unacked_age_seconds 0.0\n"));
        assert!(
            text.contains("kestrel_agent_events_lost_total{kind=\"fork\",reason=\"queue_full\"}"),
            "{text}"
        );
        assert!(text.contains("# TYPE kestrel_agent_batch_round_trip_seconds histogram\n"));
        assert!(text.contains(&format!(
            "kestrel_agent_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
