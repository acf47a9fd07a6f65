//! The collector's live instruments: counters, gauges and histograms the stages update as they
//! work (events by kind, batch commit time, rule evaluation and matches, alerts by outcome,
//! deliveries by sink and outcome, TLS refusals, agents connected, ingress limits, enrolments). One set per
//! process ([`figures`]), registered on the metrics endpoint by [`super::Metrics`].
//!
//! Label values are bounded: kinds, reasons, outcomes and limits come from fixed sets (a
//! value an agent sends outside them is counted as `other`); rule ids and sink names come from
//! the operator's rules and configuration, not from agents.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// One label whose value is from a fixed set.
pub type StaticLabel = [(&'static str, &'static str); 1];

/// Two labels whose values are from fixed sets.
pub type StaticLabels = [(&'static str, &'static str); 2];

/// `{rule}` or `{sink}`: a name from the operator's rules or configuration.
pub type NameLabel = [(&'static str, String); 1];

/// `{sink, outcome}`.
pub type SinkOutcome = [(&'static str, String); 2];

/// The instruments; see the module docs.
#[derive(Debug)]
pub struct Figures {
    /// Events received in batches, by kind (duplicates included).
    pub events_received: Family<StaticLabel, Counter>,
    /// Received events already stored (resends), dropped.
    pub events_duplicate: Counter,
    /// Events agents reported lost in Gaps, by kind and reason.
    pub events_lost_reported: Family<StaticLabels, Counter>,
    /// Seconds from a batch's arrival to its commit (when it is acknowledged).
    pub batch_commit: Histogram,
    /// Seconds detection took per stored event.
    pub rule_evaluation: Histogram,
    /// Detections, by rule id.
    pub rule_matches: Family<NameLabel, Counter>,
    /// Alerts through admission, by outcome (created, deduplicated, suppressed, rate_limited).
    pub alerts: Family<StaticLabel, Counter>,
    /// Delivery attempts, by sink and outcome (delivered, failed, dead_lettered).
    pub deliveries: Family<SinkOutcome, Counter>,
    /// Seconds from an alert entering a sink's outbox to its delivery, by sink.
    pub delivery_latency: Family<NameLabel, Histogram>,
    /// TLS handshakes and client certificates refused, by reason.
    pub tls_refusals: Family<StaticLabel, Counter>,
    /// Agent identities with a live stream.
    pub agents_connected: Gauge,
    /// Peers refused or cut off at an ingress limit, by limit.
    pub ingress_refused: Family<StaticLabel, Counter>,
    /// Enrolment requests, by outcome ([`crate::enrolment::service::OUTCOMES`]).
    pub enrolments: Family<StaticLabel, Counter>,
}

/// Histogram buckets for times from 10 µs to about 20 s.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_01, 2.0, 22)
}

static FIGURES: LazyLock<Figures> = LazyLock::new(|| Figures {
    events_received: Family::default(),
    events_duplicate: Counter::default(),
    events_lost_reported: Family::default(),
    batch_commit: Histogram::new(seconds_buckets()),
    rule_evaluation: Histogram::new(seconds_buckets()),
    rule_matches: Family::default(),
    alerts: Family::default(),
    deliveries: Family::default(),
    // 1 ms to about 9 hours: a prompt delivery to one retried with backoff for most of a day.
    delivery_latency: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.001, 2.0, 26))
    }),
    tls_refusals: Family::default(),
    agents_connected: Gauge::default(),
    ingress_refused: Family::default(),
    enrolments: Family::default(),
});

/// This process's instruments.
pub fn figures() -> &'static Figures {
    &FIGURES
}

impl Figures {
    /// Registers every instrument (shared, not copied) in `registry`. The series of the fixed
    /// label sets exist from the start (at 0), so a rate over them is defined before the first
    /// refusal or alert.
    pub fn register(&self, registry: &mut Registry) {
        for kind in &kestrel_ebpf_abi::KIND_NAMES[1..] {
            drop(self.events_received.get_or_create_owned(&[("kind", kind)]));
            for reason in crate::metrics::GAP_REASONS.iter().filter(|r| !r.is_empty()) {
                drop(
                    self.events_lost_reported
                        .get_or_create_owned(&[("kind", kind), ("reason", reason)]),
                );
            }
        }
        for limit in crate::ingress::limits::COUNTED {
            self.ingress_refused
                .get_or_create_owned(&[("limit", limit)]);
        }
        for reason in crate::ingress::tls::REFUSAL_REASONS {
            drop(self.tls_refusals.get_or_create_owned(&[("reason", reason)]));
        }
        for outcome in crate::alerting::admit::OUTCOMES {
            drop(self.alerts.get_or_create_owned(&[("outcome", outcome)]));
        }
        for outcome in crate::enrolment::service::OUTCOMES {
            drop(self.enrolments.get_or_create_owned(&[("outcome", outcome)]));
        }
        registry.register(
            "kestrel_collector_events_received",
            "Events received from agents, by kind (resends included)",
            self.events_received.clone(),
        );
        registry.register(
            "kestrel_collector_events_duplicate",
            "Received events already stored (resends after a lost ack), dropped before detection",
            self.events_duplicate.clone(),
        );
        registry.register(
            "kestrel_collector_events_lost_reported",
            "Events agents reported lost in Gaps since start, by kind and reason (unknown values: other)",
            self.events_lost_reported.clone(),
        );
        registry.register_with_unit(
            "kestrel_collector_batch_commit",
            "Time from a batch's arrival to its commit in the store (then it is acknowledged)",
            Unit::Seconds,
            self.batch_commit.clone(),
        );
        registry.register_with_unit(
            "kestrel_collector_rule_evaluation",
            "Time detection took for one stored event (every rule that applies to it)",
            Unit::Seconds,
            self.rule_evaluation.clone(),
        );
        registry.register(
            "kestrel_collector_rule_matches",
            "Detections, by rule id (before dedup, suppression and rate limits)",
            self.rule_matches.clone(),
        );
        registry.register(
            "kestrel_collector_alerts",
            "Alerts through admission, by outcome (created, deduplicated, suppressed, rate_limited)",
            self.alerts.clone(),
        );
        registry.register(
            "kestrel_collector_alert_deliveries",
            "Alert delivery attempts, by sink and outcome (delivered, failed, dead_lettered)",
            self.deliveries.clone(),
        );
        registry.register_with_unit(
            "kestrel_collector_alert_delivery_latency",
            "Time from an alert entering a sink's outbox to its delivery, by sink",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        registry.register(
            "kestrel_collector_tls_refusals",
            "TLS handshakes and client certificates refused, by reason",
            self.tls_refusals.clone(),
        );
        registry.register(
            "kestrel_collector_agents_connected",
            "Agent identities with a live stream",
            self.agents_connected.clone(),
        );
        registry.register(
            "kestrel_collector_enrolments",
            "Enrolment requests, by outcome (issued, or why refused)",
            self.enrolments.clone(),
        );
        registry.register(
            "kestrel_collector_ingress_refused",
            "Peers refused or cut off at an ingress limit since start, by limit",
            self.ingress_refused.clone(),
        );
    }

    /// Counts one delivery attempt to `sink` with `outcome`.
    pub fn delivery(&self, sink: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&[("sink", sink.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    }
}
