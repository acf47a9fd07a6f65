//! What the collector has stored and still owes, read from the store at each scrape (a
//! read-only connection), so the figures are the durable ones: events and alerts stored,
//! events lost by reason (Gap records), agents known, outbox backlog by sink, dead letters.
//! The event count is the store's running count, kept in the transactions that insert and
//! delete events: counting a large events table on every scrape would hold a read transaction
//! long enough to stall WAL checkpoints.
//!
//! Label values an agent chooses (a Gap's reason) cannot grow the series without bound: a
//! reason outside [`GAP_REASONS`] is counted under `other` (and the encoder escapes values).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::store::StoreStats;

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

/// The store's counts at one moment, encoded with the names above.
#[derive(Debug)]
pub struct StoreFigures(pub StoreStats);

impl Collector for StoreFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        // Store counts are never negative; a negative one would be a bug, shown as 0.
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        let mut gauge = |name: &str, help: &str, value: u64| {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        gauge(
            "kestrel_collector_events_stored",
            "Events in the store",
            stats.events,
        )?;
        gauge(
            "kestrel_collector_alerts_stored",
            "Alerts in the store",
            count(stats.alerts),
        )?;
        gauge(
            "kestrel_collector_agents_known",
            "Agent identities that have connected",
            count(stats.agents),
        )?;
        gauge(
            "kestrel_collector_alert_dead_letters",
            "Alert deliveries given up on (see `alerts replay`)",
            count(stats.dead_letters),
        )?;
        let mut family = encoder.encode_descriptor(
            "kestrel_collector_events_lost",
            "Events agents reported lost (Gap records), by reason (unknown reasons: other); 0 counts for windows of unknown size",
            None,
            MetricType::Counter,
        )?;
        for (reason, lost) in fold_reasons(stats.events_lost_by_reason.clone()) {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(lost).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "kestrel_collector_alert_outbox_pending",
            "Alert deliveries waiting to be sent, by sink",
            None,
            MetricType::Gauge,
        )?;
        for (sink, pending) in &stats.outbox_pending_by_sink {
            let labels = [("sink", sink.as_str())];
            ConstGauge::new(*pending).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
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
