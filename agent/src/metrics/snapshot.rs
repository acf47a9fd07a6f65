//! The figures the agent's heartbeats carry (events sent, kernel drops, shed, spool, queue,
//! memory, CPU) plus the age of the oldest unacknowledged event, read at each scrape from
//! the delivery's counters and spool, or from the process alone when the agent ships nowhere.

use std::sync::Arc;

use kestrel_proto::Heartbeat;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::ship::{
    shipper::{AgentStats, ProcessUsage},
    spool::Spool,
};

/// Reads the heartbeat figures on each scrape.
#[derive(Debug, Clone)]
pub struct HeartbeatFigures {
    /// Counters and spool of the running delivery; `None` without a collector.
    pub delivery: Option<(Arc<AgentStats>, Arc<Spool>)>,
}

impl HeartbeatFigures {
    /// The heartbeat as it would be sent now, and the oldest unacknowledged event's age in
    /// seconds.
    fn now(&self) -> (Heartbeat, f64) {
        match &self.delivery {
            Some((stats, spool)) => (
                stats.snapshot(spool),
                spool.oldest_unacked_age().as_secs_f64(),
            ),
            None => {
                let usage = ProcessUsage::now();
                let heartbeat = Heartbeat {
                    rss_bytes: usage.rss_bytes,
                    cpu_ns: usage.cpu_ns,
                    ..Heartbeat::default()
                };
                (heartbeat, 0.0)
            }
        }
    }
}

impl Collector for HeartbeatFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (h, oldest_unacked_age) = self.now();
        let mut counter = |name: &str, help: &str, value: u64| {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
        };
        counter(
            "kestrel_agent_events_sent",
            "Events sent to the collector, resends included",
            h.events_sent,
        )?;
        counter(
            "kestrel_agent_kernel_drops",
            "Records the kernel ring buffer had no room for",
            h.kernel_drops,
        )?;
        counter(
            "kestrel_agent_events_shed",
            "Events given up (spool full, queue full, write errors), each counted in a Gap",
            h.events_shed,
        )?;
        let cpu = ConstCounter::new(h.cpu_ns as f64 / 1e9);
        cpu.encode(encoder.encode_descriptor(
            "kestrel_agent_cpu_seconds",
            "CPU time the agent has used (user + system)",
            None,
            cpu.metric_type(),
        )?)?;
        let age = ConstGauge::new(oldest_unacked_age);
        age.encode(encoder.encode_descriptor(
            "kestrel_agent_spool_oldest_unacked_age_seconds",
            "Age of the oldest event not yet acknowledged by the collector (0: none waiting)",
            None,
            age.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, value: u64| {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        gauge(
            "kestrel_agent_spool_bytes",
            "Bytes the spool holds on disk",
            h.spool_bytes,
        )?;
        gauge(
            "kestrel_agent_spool_max_bytes",
            "Most bytes the spool may hold",
            h.spool_max_bytes,
        )?;
        gauge(
            "kestrel_agent_spool_unacked",
            "Spool records not yet acknowledged by the collector",
            h.spool_unacked,
        )?;
        gauge(
            "kestrel_agent_queue_depth",
            "Events waiting for the spool writer",
            h.queue_depth,
        )?;
        gauge(
            "kestrel_agent_resident_bytes",
            "Resident memory of the agent",
            h.rss_bytes,
        )?;
        Ok(())
    }
}
