//! What happens to one agent message once it is authenticated: stamp, detect, store, alert.
//!
//! Independent of gRPC so tests and benchmarks can drive it directly.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kestrel_proto::{EventBatch, Gap, Heartbeat, Hello};
use tracing::{info, Span};

use crate::alert::Alert;
use crate::alerting::{AlertPipeline, Policy};
use crate::detect::{Detector, RuleSet, SharedRules};
use crate::identity::Identity;
use crate::store::{EventRecord, Store, StoreError};

/// A batch could not be ingested; the agent must resend it.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The batch's sequence numbers run past `u64::MAX`.
    #[error("batch first_seq {first_seq} with {len} events overflows the sequence space")]
    SeqOverflow {
        /// The batch's first sequence number.
        first_seq: u64,
        /// Number of events in the batch.
        len: usize,
    },
    /// The store refused the batch.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The ingest pipeline shared by every agent stream.
pub struct Pipeline {
    store: Store,
    /// Rule set shared with the reloader; the detector picks up replacements per event.
    rules: Arc<SharedRules>,
    /// One detector for all streams: correlation state spans agents (group keys separate them).
    detector: Arc<Mutex<Detector>>,
    alerts: Option<AlertPipeline>,
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Last sequence number of the batch: everything up to it is durably stored.
    pub up_to_seq: u64,
    /// Alerts raised (duplicates of already stored events raise none).
    pub alerts: usize,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Pipeline {
    /// A pipeline storing into `store`, matching `rules`, and handing alerts to `alerts`
    /// (admission and sinks); without it alerts are only stored.
    pub fn new(store: Store, rules: Arc<RuleSet>, alerts: Option<AlertPipeline>) -> Pipeline {
        let rules = SharedRules::new(rules);
        let detector = Arc::new(Mutex::new(Detector::with_shared(rules.clone())));
        Pipeline {
            store,
            rules,
            detector,
            alerts,
        }
    }

    /// The shared rule set: replace it (hot reload) and the next event uses the new rules.
    pub fn shared_rules(&self) -> &Arc<SharedRules> {
        &self.rules
    }

    /// Ingests one batch from `identity`: overwrites each event's host with the identity and its
    /// seq with `first_seq + i`, matches rules, stores events and new alerts (with their outbox
    /// rows) in one transaction, then wakes the sinks. Returns `None` for an empty batch.
    pub async fn ingest_batch(
        &self,
        identity: &Identity,
        epoch: u64,
        batch: EventBatch,
    ) -> Result<Option<BatchOutcome>, PipelineError> {
        let EventBatch { first_seq, events } = batch;
        let Some(last) = events.len().checked_sub(1) else {
            return Ok(None);
        };
        let up_to_seq = u64::try_from(last)
            .ok()
            .and_then(|last| first_seq.checked_add(last))
            .ok_or(PipelineError::SeqOverflow {
                first_seq,
                len: events.len(),
            })?;

        let identity = identity.as_str().to_owned();
        let detector = self.detector.clone();
        let policy = self
            .alerts
            .as_ref()
            .map_or_else(Policy::store_only, |a| a.policy().clone());
        let span = Span::current();
        let alerts = self
            .store
            .run(move |store| {
                let _entered = span.enter();
                let mut detector = detector.lock().unwrap_or_else(|p| p.into_inner());
                let records: Vec<EventRecord> = events
                    .into_iter()
                    .zip(first_seq..)
                    .map(|(mut event, seq)| {
                        event.host.clone_from(&identity);
                        event.seq = seq;
                        let alerts = detector
                            .evaluate(&event)
                            .iter()
                            .map(|detection| Alert::from_detection(detection, epoch))
                            .collect();
                        EventRecord { event, alerts }
                    })
                    .collect();
                let stored =
                    store.write_batch_with(&identity, epoch, &records, &policy, now_unix_ns())?;
                for alert in &stored {
                    info!(
                        rule_id = %alert.rule.id,
                        rule = %alert.rule.title,
                        level = %alert.rule.level,
                        exe = %alert.process.exe,
                        pid = alert.process.pid,
                        seq = alert.event.as_ref().map_or(0, |e| e.seq),
                        "alert"
                    );
                }
                Ok(stored.len())
            })
            .await?;
        if let (Some(sinks), true) = (&self.alerts, alerts > 0) {
            sinks.wake();
        }
        Ok(Some(BatchOutcome { up_to_seq, alerts }))
    }

    /// Records an agent's Hello (agents table).
    pub async fn record_hello(&self, identity: &Identity, hello: Hello) -> Result<(), StoreError> {
        let identity = identity.as_str().to_owned();
        self.store
            .run(move |s| s.write_hello(&identity, now_unix_ns(), &hello))
            .await
    }

    /// Records a heartbeat (agent last seen, statistics).
    pub async fn record_heartbeat(
        &self,
        identity: &Identity,
        heartbeat: Heartbeat,
    ) -> Result<(), StoreError> {
        let identity = identity.as_str().to_owned();
        self.store
            .run(move |s| s.write_heartbeat(&identity, now_unix_ns(), &heartbeat))
            .await
    }

    /// Records a gap (events lost on the agent).
    pub async fn record_gap(
        &self,
        identity: &Identity,
        epoch: u64,
        gap: Gap,
    ) -> Result<(), StoreError> {
        let identity = identity.as_str().to_owned();
        self.store
            .run(move |s| s.write_gap(&identity, epoch, now_unix_ns(), &gap))
            .await
    }
}
