//! Storing a batch of events that already carry their alerts (benchmarks and tests drive the
//! store this way; ingest detects inside the writer instead, see `pipeline`).

use kestrel_proto::Event;

use super::admit::{admit, Admission, Policy};
use crate::alert::Alert;
use crate::clock::now_unix_ns;
use crate::store::{event_json, Store, StoreError};

/// One event of a batch with the alerts its rules produced.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The event, already stamped with host identity and sequence number.
    pub event: Event,
    /// Alerts for this event; stored only when the event is new (not a duplicate).
    pub alerts: Vec<Alert>,
}

/// Writes batches of [`EventRecord`]s into a [`Store`], admitting their alerts.
pub trait WriteBatch {
    /// [`write_batch_with`](Self::write_batch_with) under [`Policy::store_only`]: every alert
    /// of a new event is stored, none is folded, limited or queued for a sink.
    fn write_batch(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
    ) -> Result<Vec<Alert>, StoreError>;

    /// Stores a batch in one transaction: each event unless (identity, epoch, seq) is already
    /// stored, and the alerts of the events that were new, admitted under
    /// `policy` (suppression, dedup, rate limit, outbox rows for the sinks) at `now_unix_ns`.
    /// Returns the newly created alerts with their row ids; duplicates (already stored events)
    /// yield no alert.
    fn write_batch_with(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
        policy: &Policy,
        now_unix_ns: u64,
    ) -> Result<Vec<Alert>, StoreError>;
}

impl WriteBatch for Store {
    fn write_batch(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
    ) -> Result<Vec<Alert>, StoreError> {
        let now = now_unix_ns();
        self.write_batch_with(identity, epoch, records, &Policy::store_only(), now)
    }

    fn write_batch_with(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
        policy: &Policy,
        now_unix_ns: u64,
    ) -> Result<Vec<Alert>, StoreError> {
        self.write_group(|w| {
            let mut stored = Vec::new();
            for record in records {
                let json = event_json(&record.event)?;
                if !w.insert_event(identity, epoch, &record.event, &json)? {
                    continue;
                }
                for alert in &record.alerts {
                    let admission = admit(&w.admission(), policy, alert.clone(), now_unix_ns, &[])?;
                    if let Admission::Created(alert) = admission {
                        stored.push(*alert);
                    }
                }
            }
            Ok(stored)
        })
    }
}
