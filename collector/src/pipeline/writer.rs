//! The store writer: one thread that takes batches from every agent stream in arrival order,
//! drops duplicates, runs detection on the events that are new, and commits many batches in one
//! transaction (group commit). Each batch learns its outcome only once that transaction is
//! committed, so an acknowledgement never runs ahead of the disk.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kestrel_detect::{Detector, SharedRules};
use kestrel_proto::Event;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, Span};

use crate::alert::Alert;
use crate::alerting::admit::admit;
use crate::alerting::losses;
use crate::alerting::{Admission, AlertPipeline, Policy};
use crate::clock::now_unix_ns;
use crate::store::{GroupWriter, Store, StoreError};

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
}

impl Batch {
    /// Number of events.
    fn len(&self) -> usize {
        self.events.len()
    }

    /// Each event with its JSON text.
    fn iter(&self) -> impl Iterator<Item = (&Arc<Event>, &str)> {
        let starts = std::iter::once(0).chain(self.json_ends.iter().copied());
        self.events
            .iter()
            .zip(starts.zip(&self.json_ends))
            .map(|(event, (start, &end))| (event, &self.json[start..end]))
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
}

/// What the writer answers for one batch.
pub(super) struct Committed {
    /// Alerts created, or why the group was not stored.
    pub result: Result<usize, Arc<StoreError>>,
    /// The batch's events, handed back so the stream's task (not the writer) frees them.
    pub events: Batch,
}

/// Starts the writer thread; it ends when every sender of the returned queue is dropped.
/// When the thread cannot start, the queue is closed and every write fails with that.
pub(super) fn spawn(
    store: Store,
    rules: Arc<SharedRules>,
    alerts: Option<AlertPipeline>,
) -> mpsc::Sender<WriteRequest> {
    let (tx, rx) = mpsc::channel(QUEUE);
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
    }
    tx
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
}

impl Writer {
    fn run(mut self, store: &Store, mut queue: mpsc::Receiver<WriteRequest>) {
        while let Some(first) = queue.blocking_recv() {
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
                        });
                        batch.alerts =
                            self.write_batch(w, &request.identity, request.epoch, &batch.events)?;
                        if events >= MAX_GROUP_EVENTS || opened.elapsed() >= MAX_GROUP_TIME {
                            break;
                        }
                        next = queue.try_recv().ok();
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
        for (event, json) in events.iter() {
            if !w.insert_event(identity, epoch, event, json)? {
                continue;
            }
            created += losses::check_event(&w.admission(), &self.policy, identity, event, now)?;
            for detection in self.detector.evaluate(event) {
                let alert = Alert::from_detection(&detection, epoch);
                if let Admission::Created(alert) =
                    admit(&w.admission(), &self.policy, alert, now, &[])?
                {
                    log_alert(&alert);
                    created += 1;
                }
            }
        }
        Ok(created)
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
