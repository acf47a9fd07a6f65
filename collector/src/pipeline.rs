//! What happens to one agent message once it is authenticated: stamp, detect, store, alert.
//!
//! Independent of gRPC so tests and benchmarks can drive it directly.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kestrel_proto::{EventBatch, Gap, Heartbeat, Hello};
use tracing::{error, info, Span};

use crate::alert::{Alert, AlertLog};
use crate::detect::RuleSet;
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
    rules: Arc<RuleSet>,
    alert_log: Option<Arc<AlertLog>>,
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
    /// A pipeline storing into `store`, matching `rules`, and writing alerts to `alert_log`.
    pub fn new(store: Store, rules: Arc<RuleSet>, alert_log: Option<Arc<AlertLog>>) -> Pipeline {
        Pipeline {
            store,
            rules,
            alert_log,
        }
    }

    /// Ingests one batch from `identity`: overwrites each event's host with the identity and its
    /// seq with `first_seq + i`, matches rules, stores events and new alerts in one transaction,
    /// then appends the alerts to the JSONL output. Returns `None` for an empty batch.
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
        let rules = self.rules.clone();
        let alert_log = self.alert_log.clone();
        let span = Span::current();
        let alerts = self
            .store
            .run(move |store| {
                let _entered = span.enter();
                let records: Vec<EventRecord> = events
                    .into_iter()
                    .zip(first_seq..)
                    .map(|(mut event, seq)| {
                        event.host.clone_from(&identity);
                        event.seq = seq;
                        let alerts = rules
                            .matching(&event)
                            .into_iter()
                            .map(|rule| Alert::new(rule, &event, epoch))
                            .collect();
                        EventRecord { event, alerts }
                    })
                    .collect();
                let stored = store.write_batch(&identity, epoch, &records)?;
                for alert in &stored {
                    info!(
                        rule_id = %alert.rule.id,
                        rule = %alert.rule.title,
                        level = %alert.rule.level,
                        exe = %alert.process.exe,
                        pid = alert.process.pid,
                        seq = alert.event.seq,
                        "alert"
                    );
                }
                if let (Some(log), false) = (alert_log, stored.is_empty()) {
                    // The alerts are committed in the store already; a failing JSONL output
                    // must not make the agent resend (the resend would be a duplicate anyway).
                    if let Err(e) = log.append(&stored) {
                        error!(error = %e, alerts = stored.len(), "cannot write alerts JSONL");
                    }
                }
                Ok(stored.len())
            })
            .await?;
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
