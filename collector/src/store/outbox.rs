//! The per-sink outbox tables: pending deliveries (`alert_outbox`), deliveries made
//! (`alert_deliveries`) and given up on (`alert_dead_letters`). When to retry and when to give
//! up is `alerting::worker`'s decision.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use tracing::warn;

use super::alerts::alert_from_row;
use super::{sql, AdmissionTx, Store, StoreError};
use crate::alert::Alert;

/// One pending delivery of one alert to one sink.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Outbox row id.
    pub id: i64,
    /// The alert's row id.
    pub alert_id: i64,
    /// When it was queued (or replayed).
    pub enqueued_unix_ns: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The alert, with its current count and status.
    pub alert: Alert,
}

/// The state of one alert's delivery to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryState {
    /// The sink.
    pub sink: String,
    /// `delivered`, `pending` or `dead`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// Delivery time, next attempt, or when it was given up.
    pub at_unix_ns: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// What one sink still owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBacklog {
    /// The sink.
    pub sink: String,
    /// Deliveries pending.
    pub pending: u64,
    /// Dead letters.
    pub dead: u64,
}

impl AdmissionTx<'_> {
    /// Queues alert `alert_id` for `sink`, due at once (`now_ns`).
    pub fn enqueue(&self, sink: &str, alert_id: i64, now_ns: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO alert_outbox (sink, alert_id, enqueued_unix_ns, next_attempt_unix_ns) \
                 VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![sink, alert_id, sql(now_ns)])?;
        Ok(())
    }
}

impl Store {
    /// Up to `limit` deliveries for `sink` due at `now_ns`, oldest first.
    pub fn due_deliveries(
        &self,
        sink: &str,
        now_ns: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT o.id, o.alert_id, o.enqueued_unix_ns, o.attempts, a.json, a.count, \
             a.last_seen_unix_ns, a.acked_unix_ns FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id \
             WHERE o.sink = ?1 AND o.next_attempt_unix_ns <= ?2 ORDER BY o.id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![sink, sql(now_ns), limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for row in rows {
            let (id, alert_id, enqueued, attempts, json, count, last_seen, acked) = row?;
            match alert_from_row(&json, count, last_seen, acked) {
                Ok(alert) => out.push(Pending {
                    id,
                    alert_id,
                    enqueued_unix_ns: enqueued as u64,
                    attempts: attempts as u32,
                    alert,
                }),
                Err(e) => unreadable.push((id, alert_id, e.to_string())),
            }
        }
        drop(stmt);
        // A record that cannot be read now never will be: retrying it would block every
        // delivery behind it, so it leaves the outbox alone, with the reason.
        for (id, alert_id, error) in unreadable {
            let reason = format!("alert record unreadable, not delivered: {error}");
            warn!(sink, alert = alert_id, error = %reason, "alert delivery dead-lettered");
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO alert_dead_letters (sink, alert_id, enqueued_unix_ns, \
                 failed_unix_ns, attempts, last_error) SELECT sink, alert_id, enqueued_unix_ns, \
                 ?2, attempts, ?3 FROM alert_outbox WHERE id = ?1",
                params![id, sql(now_ns), reason],
            )?;
            tx.execute("DELETE FROM alert_outbox WHERE id = ?1", [id])?;
            tx.commit()?;
        }
        Ok(out)
    }

    /// The earliest next attempt queued for `sink`.
    pub fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let next: Option<i64> = self
            .lock()
            .query_row(
                "SELECT MIN(next_attempt_unix_ns) FROM alert_outbox WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(next.map(|n| n as u64))
    }

    /// The delivery succeeded: the row leaves the outbox, the delivery is recorded.
    pub fn record_delivered(
        &self,
        sink: &str,
        row: &Pending,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM alert_outbox WHERE id = ?1", [row.id])?;
        tx.execute(
            "INSERT INTO alert_deliveries (sink, alert_id, delivered_unix_ns, attempts) \
             VALUES (?1, ?2, ?3, ?4)",
            params![sink, row.alert_id, sql(now_ns), row.attempts + 1],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The attempt failed and will be retried at `next_ns`.
    pub fn retry_at(&self, row: &Pending, next_ns: u64, error: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_unix_ns = ?2, \
             last_error = ?3 WHERE id = ?1",
            params![row.id, sql(next_ns), error],
        )?;
        Ok(())
    }

    /// The delivery is given up on: the row moves to the dead-letter table.
    pub fn dead_letter(
        &self,
        sink: &str,
        row: &Pending,
        now_ns: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM alert_outbox WHERE id = ?1", [row.id])?;
        tx.execute(
            "INSERT INTO alert_dead_letters (sink, alert_id, enqueued_unix_ns, failed_unix_ns, \
             attempts, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                sink,
                row.alert_id,
                sql(row.enqueued_unix_ns),
                sql(now_ns),
                row.attempts + 1,
                error
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Moves dead letters back into the outbox (optionally only one sink's, or one alert's),
    /// due now with a fresh age. Returns how many.
    pub fn replay_dead_letters(
        &self,
        sink: Option<&str>,
        alert_id: Option<i64>,
        now_ns: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let filter = "(?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR alert_id = ?2)";
        tx.execute(
            &format!(
                "INSERT INTO alert_outbox (sink, alert_id, enqueued_unix_ns, next_attempt_unix_ns) \
                 SELECT sink, alert_id, ?3, ?3 FROM alert_dead_letters WHERE {filter} ORDER BY id"
            ),
            params![sink, alert_id, sql(now_ns)],
        )?;
        let moved = tx.execute(
            &format!("DELETE FROM alert_dead_letters WHERE {filter}"),
            params![sink, alert_id],
        )?;
        tx.commit()?;
        Ok(moved)
    }

    /// Every delivery state of alert `alert_id`.
    pub fn deliveries(&self, alert_id: i64) -> Result<Vec<DeliveryState>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT sink, 'delivered', attempts, delivered_unix_ns, NULL FROM alert_deliveries \
             WHERE alert_id = ?1 \
             UNION ALL SELECT sink, 'pending', attempts, next_attempt_unix_ns, last_error \
             FROM alert_outbox WHERE alert_id = ?1 \
             UNION ALL SELECT sink, 'dead', attempts, failed_unix_ns, last_error \
             FROM alert_dead_letters WHERE alert_id = ?1 ORDER BY 1",
        )?;
        let rows = stmt.query_map([alert_id], |r| {
            Ok(DeliveryState {
                sink: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get::<_, i64>(2)? as u32,
                at_unix_ns: r.get::<_, i64>(3)? as u64,
                last_error: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per sink, by name: deliveries pending and dead letters.
    pub fn backlog(&self) -> Result<Vec<SinkBacklog>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT sink, SUM(pending), SUM(dead) FROM ( \
             SELECT sink, 1 AS pending, 0 AS dead FROM alert_outbox \
             UNION ALL SELECT sink, 0, 1 FROM alert_dead_letters) GROUP BY sink ORDER BY sink",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SinkBacklog {
                sink: r.get(0)?,
                pending: r.get::<_, i64>(1)? as u64,
                dead: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
