//! The hand-off from the pipeline to the spool: a bounded queue whose overflow is counted (and
//! later reported in a Gap) instead of silently dropped, and the task that drains it into the
//! [`SpoolWriter`].

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use kestrel_proto::Event;
use tokio::sync::mpsc;

use super::{ShedReason, Spool, SpoolWriter};

/// Most events the writer takes from the queue for one append (one write and one fsync).
const BURST: usize = 4096;

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotQueued {
    /// The queue is full: the event was counted as shed.
    #[error("spool queue full")]
    Full,
    /// The spool writer has stopped.
    #[error("spool writer stopped")]
    Closed,
}

/// The pipeline's end of the queue to the spool writer.
#[derive(Debug, Clone)]
pub struct SpoolSender {
    queue: mpsc::Sender<Event>,
    spool: Arc<Spool>,
}

impl SpoolSender {
    /// A queue of `capacity` events into the writer task; returns the sender and the receiver
    /// to hand to [`run_writer`].
    pub fn channel(spool: Arc<Spool>, capacity: usize) -> (SpoolSender, mpsc::Receiver<Event>) {
        let (queue, rx) = mpsc::channel(capacity);
        (SpoolSender { queue, spool }, rx)
    }

    /// Queues an event for the spool without waiting. The queue is shared by priority like the
    /// spool itself: a kind is accepted only while the queue is below its tier's share (by
    /// default low kinds up to 70 %, normal up to 90 %, exec, credential and module events up to
    /// all of it), so when the writer falls behind in a burst, exec events are still queued
    /// after forks and exits are shed. A refused event is counted as shed (`queue_full`,
    /// reported in a Gap).
    pub fn try_send(&self, event: Event) -> Result<(), NotQueued> {
        // Kinds are below KIND_SLOTS (15): the ABI number is the record header code.
        let kind = event.kind() as u8;
        let share = self
            .spool
            .config
            .priorities
            .limit(kind, self.queue.max_capacity() as u64);
        if self.spool.queued.load(Ordering::Relaxed) >= share {
            self.spool
                .record_shed(ShedReason::QueueFull, kind, event.time_unix_ns);
            return Err(NotQueued::Full);
        }
        match self.queue.try_send(event) {
            Ok(()) => {
                self.spool.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                self.spool
                    .record_shed(ShedReason::QueueFull, kind, event.time_unix_ns);
                Err(NotQueued::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(NotQueued::Closed),
        }
    }

    /// Events waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The spool this queue feeds.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }
}

/// Drains `events` into the spool until the queue closes, then writes the last Gap records and
/// tells readers that the writer is done. File I/O runs on the blocking pool; write errors are
/// logged (and their events counted as lost) and the writer carries on.
pub async fn run_writer(mut writer: SpoolWriter, mut events: mpsc::Receiver<Event>) {
    let mut tick = tokio::time::interval(
        writer
            .spool()
            .config()
            .gap_interval
            .max(Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let linger = writer.spool().config().linger;
    let mut burst = Vec::with_capacity(BURST);
    loop {
        let mut open = tokio::select! {
            received = events.recv_many(&mut burst, BURST) => received > 0,
            _ = tick.tick() => {
                writer = blocking(writer, |w| w.tick()).await;
                continue;
            }
        };
        // Let a burst gather for up to `linger`: one write and one fsync for all of it.
        let deadline = tokio::time::Instant::now() + linger;
        while open && burst.len() < BURST {
            let room = BURST - burst.len();
            match tokio::time::timeout_at(deadline, events.recv_many(&mut burst, room)).await {
                Ok(received) => open = received > 0,
                Err(_) => break,
            }
        }
        if burst.is_empty() {
            break;
        }
        let batch = std::mem::take(&mut burst);
        writer
            .spool()
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        writer = blocking(writer, move |w| w.append(&batch)).await;
        burst.reserve(BURST);
        if !open {
            break;
        }
    }
    blocking(writer, |w| w.close()).await;
}

/// Runs `f` on the writer on the blocking pool and logs its error.
async fn blocking(
    mut writer: SpoolWriter,
    f: impl FnOnce(&mut SpoolWriter) -> Result<(), super::SpoolError> + Send + 'static,
) -> SpoolWriter {
    let result = tokio::task::spawn_blocking(move || {
        let result = f(&mut writer);
        (writer, result)
    })
    .await;
    match result {
        Ok((writer, Ok(()))) => writer,
        Ok((writer, Err(e))) => {
            tracing::error!(error = %e, "spool write failed; its events are reported lost");
            writer
        }
        Err(e) => panic!("spool writer task failed: {e}"),
    }
}
