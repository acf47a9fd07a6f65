//! The agent's live instruments: counters, gauges and histograms that the stages update as
//! they work (events by kind, losses by kind and reason, batch round trips, the collector
//! stream, hooks, ring reads). One set per process ([`figures`]), registered on the metrics
//! endpoint by [`super::Metrics`].
//!
//! Every label value is one of a fixed set (the ABI's kind names, the loss reasons), so no
//! input can grow the number of series.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// `{kind}`: an event kind name of the ABI.
pub type KindLabel = [(&'static str, &'static str); 1];

/// `{kind, reason}`: an event kind and why its events were lost.
pub type LossLabels = [(&'static str, &'static str); 2];

/// Why events are lost, as the `reason` label says it: the kernel's and the spool's
/// ([`crate::ship::spool::priority::ShedReason`]).
pub const LOSS_REASONS: [&str; 4] = ["kernel", "queue_full", "spool_full", "spool_error"];

/// The instruments; see the module docs.
#[derive(Debug)]
pub struct Figures {
    /// Events the pipeline produced, by kind (before the spool).
    pub events: Family<KindLabel, Counter>,
    /// Events lost, by kind and reason (`kernel`: no room in the ring buffer; `queue_full`,
    /// `spool_full`, `spool_error`: shed on the way to the collector).
    pub events_lost: Family<LossLabels, Counter>,
    /// Seconds from sending a batch to the collector's acknowledgement of it.
    pub batch_round_trip: Histogram,
    /// 1 while a stream to the collector is open, else 0.
    pub collector_connected: Gauge,
    /// Kernel hooks attached.
    pub hooks_attached: Gauge,
    /// Kernel hooks this kernel could not attach.
    pub hooks_unavailable: Gauge,
    /// Records read from the kernel ring buffer.
    pub ring_records: Counter,
    /// Ring buffer records that did not decode (skipped).
    pub malformed_records: Counter,
}

static FIGURES: LazyLock<Figures> = LazyLock::new(|| Figures {
    events: Family::default(),
    events_lost: Family::default(),
    // 1 ms to about 65 s: loopback to a congested WAN, and a collector stalled on its store.
    batch_round_trip: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
    collector_connected: Gauge::default(),
    hooks_attached: Gauge::default(),
    hooks_unavailable: Gauge::default(),
    ring_records: Counter::default(),
    malformed_records: Counter::default(),
});

/// This process's instruments.
pub fn figures() -> &'static Figures {
    &FIGURES
}

impl Figures {
    /// Counts one event of `kind` produced.
    pub fn event(&self, kind: &'static str) {
        self.events.get_or_create(&[("kind", kind)]).inc();
    }

    /// Counts `count` events of `kind` lost for `reason`.
    pub fn lost(&self, kind: &'static str, reason: &'static str, count: u64) {
        self.events_lost
            .get_or_create(&[("kind", kind), ("reason", reason)])
            .inc_by(count);
    }

    /// Registers every instrument (shared, not copied) in `registry`. The series of every kind
    /// (and loss reason) exist from the start, at 0: a family without series would not be
    /// exported at all, and a rate over it would start undefined.
    pub fn register(&self, registry: &mut Registry) {
        for kind in &kestrel_ebpf_abi::KIND_NAMES[1..] {
            drop(self.events.get_or_create_owned(&[("kind", kind)]));
            for reason in LOSS_REASONS {
                drop(
                    self.events_lost
                        .get_or_create_owned(&[("kind", kind), ("reason", reason)]),
                );
            }
        }
        registry.register(
            "kestrel_agent_events",
            "Events produced, by kind",
            self.events.clone(),
        );
        registry.register(
            "kestrel_agent_events_lost",
            "Events lost, by kind and reason (kernel, queue_full, spool_full, spool_error); each is also reported to the collector in a Gap",
            self.events_lost.clone(),
        );
        registry.register_with_unit(
            "kestrel_agent_batch_round_trip",
            "Time from sending a batch to the collector's acknowledgement",
            Unit::Seconds,
            self.batch_round_trip.clone(),
        );
        registry.register(
            "kestrel_agent_collector_connected",
            "1 while a stream to the collector is open",
            self.collector_connected.clone(),
        );
        registry.register(
            "kestrel_agent_hooks_attached",
            "Kernel hooks attached",
            self.hooks_attached.clone(),
        );
        registry.register(
            "kestrel_agent_hooks_unavailable",
            "Kernel hooks this kernel could not attach (see `kestrel-agent probe`)",
            self.hooks_unavailable.clone(),
        );
        registry.register(
            "kestrel_agent_ring_records_read",
            "Records read from the kernel ring buffer",
            self.ring_records.clone(),
        );
        registry.register(
            "kestrel_agent_ring_records_malformed",
            "Ring buffer records that did not decode and were skipped",
            self.malformed_records.clone(),
        );
    }
}
