//! The store writer: one thread that takes batches from every agent stream in arrival order,
//! drops duplicates, runs detection on the events that are new, and commits many batches in one
//! transaction (group commit). Each batch learns its outcome only once that transaction is
//! committed, so an acknowledgement never runs ahead of the disk.
//!
//! A resent event whose content differs from the one stored at its (identity, epoch, seq) — a
//! rewound or restored spool, or a second holder of the agent's certificate — is not taken as
//! a duplicate: the stored event is kept, and the batch's conflicting sequence numbers raise
//! one `kestrel.system.sequence-conflict` alert, stored in the same transaction.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kestrel_detect::{Detector, SharedRules};
use kestrel_proto::Event;
use serde_json::json;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tracing::{error, info, warn, Span};

use super::fair_queue::FairQueue;
use crate::alert::{Alert, Level, SystemAlert};
use crate::alerting::admit::admit;
use crate::alerting::losses;
use crate::alerting::{Admission, AlertPipeline, Policy};
use crate::clock::now_unix_ns;
use crate::metrics::figures::figures;
use crate::store::{GroupWriter, Inserted, Store, StoreError};

/// Rule id of the alert raised when a resent event's content differs from the stored one.
pub const SEQUENCE_CONFLICT_RULE: &str = "kestrel.system.sequence-conflict";

/// A group stops taking batches once it holds this many events...
pub const MAX_GROUP_EVENTS: usize = 16 * 1024;

/// ...or once it has been open this long, so the first batch's ack is not held back for long.
pub const MAX_GROUP_TIME: Duration = Duration::from_millis(50);

/// Batches waiting for the writer, from all streams together.
pub const QUEUE: usize = 64;

/// A batch's events serialize to about this many bytes each (the JSON buffer's first size).
pub(super) const JSON_BYTES_HINT: usize = 1024;

/// Events stamped with identity and sequence, and their JSON texts one after the other.
pub(super) struct Batch {
    /// Shared so that detections and correlation evidence hold them without copying.
    pub events: Vec<Arc<Event>>,
    /// The JSON of every event, concatenated.
    pub json: String,
    /// Where each event's JSON ends in `json` (it starts where the one before ends).
    pub json_ends: Vec<usize>,
    /// Each event's content digest as received ([`crate::store::event_digest`]).
    pub digests: Vec<u64>,
}

impl Batch {
    /// Number of events.
    fn len(&self) -> usize {
        self.events.len()
    }

    /// Each event with its JSON text and digest.
    fn iter(&self) -> impl Iterator<Item = (&Arc<Event>, &str, u64)> {
        let starts = std::iter::once(0).chain(self.json_ends.iter().copied());
        self.events
            .iter()
            .zip(starts.zip(&self.json_ends))
            .zip(&self.digests)
            .map(|((event, (start, &end)), &digest)| (event, &self.json[start..end], digest))
    }
}

/// One batch for the writer.
pub(super) struct WriteRequest {
    pub identity: String,
    pub epoch: u64,
    pub events: Batch,
    /// The agent stream's span, so the writer's logs carry identity and epoch.
    pub span: Span,
    /// Sent once the transaction holding the batch is committed (or failed).
    pub reply: oneshot::Sender<Committed>,
    /// The identity's events in flight that this batch holds, freed once it is committed.
    pub permit: OwnedSemaphorePermit,
}

/// What the writer answers for one batch.
pub(super) struct Committed {
    /// Alerts created, or why the group was not stored.
    pub result: Result<usize, Arc<StoreError>>,
    /// The batch's events, handed back so the stream's task (not the writer) frees them.
    pub events: Batch,
}

/// Starts the writer thread; it ends once the returned queue is closed and empty.
/// When the thread cannot start, the queue is closed and every write fails with that.
pub(super) fn spawn(
    store: Store,
    rules: Arc<SharedRules>,
    alerts: Option<AlertPipeline>,
) -> Arc<FairQueue<WriteRequest>> {
    let queue = Arc::new(FairQueue::new(QUEUE));
    let rx = queue.clone();
    let writer = Writer {
        detector: Detector::with_shared(rules),
        policy: alerts
            .as_ref()
            .map_or_else(Policy::store_only, |a| a.policy().clone()),
        alerts,
    };
    let spawned = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(&store, rx));
    if let Err(e) = spawned {
        error!(error = %e, "cannot start the store writer thread: no batch can be stored");
        queue.close();
    }
    queue
}

struct Writer {
    /// One detector for all streams: correlation state spans agents (group keys separate them).
    detector: Detector,
    policy: Policy,
    alerts: Option<AlertPipeline>,
}

/// A batch taken into the open group, waiting for the commit.
struct Taken {
    reply: oneshot::Sender<Committed>,
    events: Batch,
    alerts: usize,
    _permit: OwnedSemaphorePermit,
}

impl Writer {
    fn run(mut self, store: &Store, queue: Arc<FairQueue<WriteRequest>>) {
        while let Some(first) = queue.pop_blocking() {
            let mut taken: Vec<Taken> = Vec::new();
            let committed = panic::catch_unwind(AssertUnwindSafe(|| {
                store.write_group(|w| {
                    let opened = Instant::now();
                    let mut events = 0;
                    let mut next = Some(first);
                    while let Some(request) = next.take() {
                        events += request.events.len();
                        let _entered = request.span.enter();
                        let batch = taken.push_mut(Taken {
                            reply: request.reply,
                            events: request.events,
                            alerts: 0,
                            _permit: request.permit,
                        });
                        batch.alerts =
                            self.write_batch(w, &request.identity, request.epoch, &batch.events)?;
                        if events >= MAX_GROUP_EVENTS || opened.elapsed() >= MAX_GROUP_TIME {
                            break;
                        }
                        next = queue.try_pop();
                    }
                    Ok(())
                })
            }));
            let committed = match committed {
                Ok(result) => result.map_err(Arc::new),
                Err(_) => Err(Arc::new(StoreError::Task(
                    "the store writer panicked; the group was rolled back".into(),
                ))),
            };
            if let (Ok(()), Some(sinks)) = (&committed, &self.alerts) {
                if taken.iter().any(|t| t.alerts > 0) {
                    sinks.wake();
                }
            }
            if let Err(e) = &committed {
                error!(batches = taken.len(), error = %e, "group of batches not stored");
            }
            for t in taken {
                // A stream that went away no longer waits for its outcome.
                let _ = t.reply.send(Committed {
                    result: committed.clone().map(|()| t.alerts),
                    events: t.events,
                });
            }
        }
    }

    /// Writes one batch into the open group: each event unless it is a duplicate, and only then
    /// through detection, in the batch's order. Returns the alerts created.
    fn write_batch(
        &mut self,
        w: &mut GroupWriter<'_>,
        identity: &str,
        epoch: u64,
        events: &Batch,
    ) -> Result<usize, StoreError> {
        let now = now_unix_ns();
        let mut created = 0;
        let mut conflicts = Conflicts::default();
        let mut last_seq = None;
        for (event, json, digest) in events.iter() {
            last_seq = Some(event.seq);
            match w.insert_checked(identity, epoch, event, json, digest)? {
                Inserted::New => {}
                Inserted::Duplicate => {
                    figures().events_duplicate.inc();
                    continue;
                }
                Inserted::Conflict { stored } => {
                    conflicts.add(event.seq, stored, digest);
                    continue;
                }
            }
            created += losses::check_event(&w.admission(), &self.policy, identity, event, now)?;
            let evaluating = Instant::now();
            let detections = self.detector.evaluate(event);
            figures()
                .rule_evaluation
                .observe(evaluating.elapsed().as_secs_f64());
            for detection in detections {
                figures()
                    .rule_matches
                    .get_or_create(&[("rule", detection.rule.id.to_string())])
                    .inc();
                let alert = Alert::from_detection(&detection, epoch);
                if let Admission::Created(alert) =
                    admit(&w.admission(), &self.policy, alert, now, &[])?
                {
                    log_alert(&alert);
                    created += 1;
                }
            }
        }
        if let Some(last_seq) = last_seq {
            w.raise_high_water(identity, epoch, last_seq)?;
        }
        if let Some(alert) = conflicts.alert(identity, epoch, now) {
            if let Admission::Created(_) = admit(&w.admission(), &self.policy, alert, now, &[])? {
                created += 1;
            }
        }
        Ok(created)
    }
}

/// The events of one batch whose content differs from the stored ones.
#[derive(Default)]
struct Conflicts {
    /// (seq, stored digest, received digest), in batch order.
    seqs: Vec<(u64, u64, u64)>,
}

/// Conflicting seqs listed in an alert, at most.
const CONFLICTS_LISTED: usize = 16;

impl Conflicts {
    fn add(&mut self, seq: u64, stored: u64, received: u64) {
        self.seqs.push((seq, stored, received));
    }

    /// The system alert for these conflicts (logged), if there are any.
    fn alert(&self, identity: &str, epoch: u64, now: u64) -> Option<Alert> {
        let first = self.seqs.first()?.0;
        let last = self.seqs.last()?.0;
        let count = self.seqs.len();
        warn!(
            identity,
            epoch,
            first_seq = first,
            last_seq = last,
            count,
            "resent events differ from the stored ones at the same sequence numbers: \
             sequence conflict (stored events kept)"
        );
        let listed: Vec<_> = self
            .seqs
            .iter()
            .take(CONFLICTS_LISTED)
            .map(|(seq, stored, received)| {
                json!({
                    "seq": seq,
                    "stored_digest": format!("{stored:016x}"),
                    "received_digest": format!("{received:016x}"),
                })
            })
            .collect();
        let system = SystemAlert {
            rule_id: SEQUENCE_CONFLICT_RULE.into(),
            title: "Agent resent sequence numbers with different content".into(),
            description: format!(
                "{identity} sent {count} event(s) in epoch {epoch}, seq {first}..={last}, whose \
                 content differs from the events already stored at those sequence numbers. The \
                 stored events were kept and the new ones dropped. A rewound or restored spool \
                 (VM snapshot), or a second holder of this agent's certificate, does this."
            ),
            level: Level::High,
            host: identity.to_owned(),
            group: Some(format!("epoch {epoch}")),
            details: json!({
                "identity": identity,
                "epoch": epoch,
                "first_seq": first,
                "last_seq": last,
                "conflicting_events": count,
                "conflicts": listed,
            }),
            time_unix_ns: now,
        };
        Some(Alert::from_system(&system))
    }
}

fn log_alert(alert: &Alert) {
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
