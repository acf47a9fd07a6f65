//! What happens to one agent message once it is authenticated: stamp, dedup, detect, store,
//! alert.
//!
//! Batches from every stream go to one [`writer`] thread in arrival order. It drops duplicates
//! by (identity, epoch, seq) first, so only new events reach detection (a resend cannot feed a
//! correlation twice), and commits many batches in one transaction (group commit). A batch's
//! outcome is known, and it may be acknowledged, only after that commit.
//!
//! The writer serves agents in turn ([`fair_queue`]), and each identity may have at most
//! [`Pipeline::with_agent_in_flight_limit`] events waiting for it, so one agent that floods
//! cannot hold the writer while the others wait. Each event's content digest is stored with
//! it: a resend with the same content is a silent duplicate, one with other content raises a
//! `kestrel.system.sequence-conflict` alert (see [`writer`]).
//!
//! Independent of gRPC so tests and benchmarks can drive it directly.

mod fair_queue;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kestrel_detect::{RuleSet, SharedRules};
use kestrel_proto::{EventBatch, Gap, Heartbeat, Hello};
use tokio::sync::{oneshot, Semaphore};
use tracing::Span;

use crate::alerting::AlertPipeline;
use crate::clock::now_unix_ns;
use crate::ingress::identity::Identity;
use crate::store::{self, Store, StoreError};

pub use writer::{MAX_GROUP_EVENTS, MAX_GROUP_TIME, SEQUENCE_CONFLICT_RULE};

/// Events of one identity waiting for the store writer, by default.
pub const AGENT_IN_FLIGHT_EVENTS: usize = 16 * 1024;

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
    /// The transaction holding the batch (with other batches) failed and was rolled back.
    #[error("group commit: {0}")]
    Commit(Arc<StoreError>),
    /// The store writer thread is not running.
    #[error("the store writer is not running")]
    WriterGone,
    /// The batch holds more events than one identity may have waiting for the writer.
    #[error("batch has {len} events; the limit is {max} events in flight per agent")]
    TooLarge {
        /// Events in the batch.
        len: usize,
        /// The per-identity limit.
        max: usize,
    },
}

/// The ingest pipeline shared by every agent stream.
pub struct Pipeline {
    store: Store,
    /// Rule set shared with the reloader; the detector picks up replacements per event.
    rules: Arc<SharedRules>,
    /// Raises the alerts of lost events (gaps).
    alerts: Option<AlertPipeline>,
    writer: Arc<fair_queue::FairQueue<writer::WriteRequest>>,
    /// Events each identity may still submit (see [`Self::with_agent_in_flight_limit`]).
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    agent_in_flight_limit: usize,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The writer finishes what is queued, then its thread ends.
        self.writer.close();
    }
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Last sequence number of the batch: everything up to it is durably stored.
    pub up_to_seq: u64,
    /// Alerts raised (duplicates of already stored events raise none).
    pub alerts: usize,
}

/// A batch handed to the store writer; resolves to its outcome once the transaction holding
/// it is committed. Batches submitted one after the other resolve in that order.
pub struct PendingBatch {
    up_to_seq: u64,
    reply: oneshot::Receiver<writer::Committed>,
}

impl PendingBatch {
    /// The last sequence number of the batch.
    pub fn up_to_seq(&self) -> u64 {
        self.up_to_seq
    }
}

impl Future for PendingBatch {
    type Output = Result<BatchOutcome, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let up_to_seq = self.up_to_seq;
        Pin::new(&mut self.reply).poll(cx).map(|reply| match reply {
            Ok(writer::Committed { result, events }) => {
                // Freed here, on the stream's task, rather than on the single writer.
                drop(events);
                match result {
                    Ok(alerts) => Ok(BatchOutcome { up_to_seq, alerts }),
                    Err(e) => Err(PipelineError::Commit(e)),
                }
            }
            Err(_) => Err(PipelineError::WriterGone),
        })
    }
}

impl Pipeline {
    /// A pipeline storing into `store`, matching `rules`, and handing alerts to `alerts`
    /// (admission and sinks); without it alerts are only stored. Starts the store writer
    /// thread, which ends when the pipeline is dropped.
    pub fn new(store: Store, rules: Arc<RuleSet>, alerts: Option<AlertPipeline>) -> Pipeline {
        let rules = SharedRules::new(rules);
        let writer = writer::spawn(store.clone(), rules.clone(), alerts.clone());
        Pipeline {
            store,
            rules,
            writer,
            alerts,
            in_flight: Mutex::default(),
            agent_in_flight_limit: AGENT_IN_FLIGHT_EVENTS,
        }
    }

    /// Lets each identity have at most `events` events submitted and not yet committed; its
    /// further batches wait (default [`AGENT_IN_FLIGHT_EVENTS`]).
    pub fn with_agent_in_flight_limit(mut self, events: usize) -> Pipeline {
        self.agent_in_flight_limit = events.max(1);
        self
    }

    /// The highest sequence number stored for (`identity`, `epoch`), if any.
    pub async fn high_water(
        &self,
        identity: &Identity,
        epoch: u64,
    ) -> Result<Option<u64>, StoreError> {
        let identity = identity.as_str().to_owned();
        self.store
            .run(move |s| s.high_water(&identity, epoch))
            .await
    }

    /// The event permits of `identity`.
    fn permits(&self, identity: &str) -> Arc<Semaphore> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight
            .entry(identity.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.agent_in_flight_limit)))
            .clone()
    }

    /// The shared rule set: replace it (hot reload) and the next event uses the new rules.
    pub fn shared_rules(&self) -> &Arc<SharedRules> {
        &self.rules
    }

    /// Ingests one batch from `identity` and waits until it is committed: see
    /// [`submit_batch`](Self::submit_batch). Returns `None` for an empty batch.
    pub async fn ingest_batch(
        &self,
        identity: &Identity,
        epoch: u64,
        batch: EventBatch,
    ) -> Result<Option<BatchOutcome>, PipelineError> {
        match self.submit_batch(identity, epoch, batch).await? {
            Some(pending) => pending.await.map(Some),
            None => Ok(None),
        }
    }

    /// Hands one batch from `identity` to the store writer without waiting for its commit:
    /// digests each event's content as received, overwrites its host with the identity and its
    /// seq with `first_seq + i`, serializes it, and queues it (waiting while the identity has
    /// its limit of events in flight, or the writer's queue is full). The writer
    /// stores the new events, runs detection on them (not on duplicates), stores their alerts
    /// in the same transaction, commits, then wakes the sinks. Returns `None` for an empty
    /// batch.
    pub async fn submit_batch(
        &self,
        identity: &Identity,
        epoch: u64,
        batch: EventBatch,
    ) -> Result<Option<PendingBatch>, PipelineError> {
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
        let identity = identity.as_str();
        let max = self.agent_in_flight_limit;
        let permit = u32::try_from(events.len())
            .ok()
            .filter(|&n| n as usize <= max)
            .ok_or(PipelineError::TooLarge {
                len: events.len(),
                max,
            })?;
        let permit = self
            .permits(identity)
            .acquire_many_owned(permit)
            .await
            .map_err(|_| PipelineError::WriterGone)?;
        // Serialized here, on the stream's task, so streams do this in parallel and the single
        // writer only inserts and detects. The events are stamped in place, and their JSON
        // texts share one buffer (one allocation per batch, not one per event).
        let mut events = events;
        let mut json = Vec::with_capacity(events.len() * writer::JSON_BYTES_HINT);
        let mut json_ends = Vec::with_capacity(events.len());
        let mut digests = Vec::with_capacity(events.len());
        for (event, seq) in events.iter_mut().zip(first_seq..) {
            digests.push(store::event_digest(event));
            event.host.push_str(identity);
            event.seq = seq;
            store::append_event_json(&mut json, event)?;
            json_ends.push(json.len());
        }
        // Behind an `Arc` here, on the stream's task, so the writer never copies an event into
        // a detection.
        let events = events.into_iter().map(Arc::new).collect();
        // serde_json writes UTF-8 only: this cannot fail, and checks the batch once.
        let json = String::from_utf8(json)
            .map_err(|e| StoreError::Task(format!("event JSON is not UTF-8: {e}")))?;
        let (reply, outcome) = oneshot::channel();
        let request = writer::WriteRequest {
            identity: identity.to_owned(),
            epoch,
            events: writer::Batch {
                events,
                json,
                json_ends,
                digests,
            },
            span: Span::current(),
            reply,
            permit,
        };
        self.writer
            .push(identity, request)
            .await
            .map_err(|_| PipelineError::WriterGone)?;
        Ok(Some(PendingBatch {
            up_to_seq,
            reply: outcome,
        }))
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

    /// Heartbeats reporting unacknowledged events with no batch between them after which a
    /// stream is stalled; `None` when no alert would be raised.
    pub fn stall_heartbeats(&self) -> Option<u32> {
        self.alerts.as_ref()?.stall_heartbeats()
    }

    /// Raises the stalled-agent alert for a stream of `identity`.
    pub async fn record_stall(&self, identity: &Identity, heartbeats: u32, heartbeat: &Heartbeat) {
        if let Some(alerts) = &self.alerts {
            alerts
                .on_stall(identity.as_str(), heartbeats, heartbeat)
                .await;
        }
    }

    /// Records a gap (events lost on the agent) and raises the alert it calls for.
    pub async fn record_gap(
        &self,
        identity: &Identity,
        epoch: u64,
        gap: Gap,
    ) -> Result<(), StoreError> {
        let host = identity.as_str().to_owned();
        let stored = gap.clone();
        let new = self
            .store
            .run(move |s| s.write_gap(&host, epoch, now_unix_ns(), &stored))
            .await?;
        if let (true, Some(alerts)) = (new, &self.alerts) {
            alerts.on_gap(identity.as_str(), &gap).await;
        }
        Ok(())
    }
}
