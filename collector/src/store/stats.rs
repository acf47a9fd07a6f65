//! What the store holds and still owes, counted for the `/metrics` endpoint.

use rusqlite::Connection;

use super::events::read_event_count;
use super::{Store, StoreError};

/// Counts over the whole store at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events in the store (the running count).
    pub events: u64,
    /// Alerts in the store.
    pub alerts: i64,
    /// Events agents reported lost, per reason (as reported: any string), saturating at
    /// `u64::MAX`.
    pub events_lost_by_reason: Vec<(String, u64)>,
    /// Agent identities that have connected.
    pub agents: i64,
    /// Deliveries waiting to be sent, per sink.
    pub outbox_pending_by_sink: Vec<(String, i64)>,
    /// Deliveries given up on.
    pub dead_letters: i64,
}

fn count(conn: &Connection, sql: &str) -> rusqlite::Result<i64> {
    conn.query_row(sql, [], |r| r.get(0))
}

fn count_by(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Gap counts per reason. Counts are u64 stored bit-for-bit as i64 and any agent may send
/// `u64::MAX`: summed as unsigned reals (SQL `SUM` fails on an i64 overflow, which broke every
/// scrape for good) and saturated.
fn lost_by_reason(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut statement = conn.prepare(
        "SELECT reason, TOTAL(CASE WHEN count < 0 THEN count + 18446744073709551616.0 \
         ELSE count END) FROM gaps GROUP BY reason",
    )?;
    // `as` saturates: a total beyond u64::MAX reads as u64::MAX.
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as u64)))?;
    rows.collect()
}

impl Store {
    /// The counts of [`StoreStats`], now.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let conn = self.lock();
        Ok(StoreStats {
            events: read_event_count(&conn)?,
            alerts: count(&conn, "SELECT COUNT(*) FROM alerts")?,
            events_lost_by_reason: lost_by_reason(&conn)?,
            agents: count(&conn, "SELECT COUNT(*) FROM agents")?,
            outbox_pending_by_sink: count_by(
                &conn,
                "SELECT sink, COUNT(*) FROM alert_outbox GROUP BY sink",
            )?,
            dead_letters: count(&conn, "SELECT COUNT(*) FROM alert_dead_letters")?,
        })
    }
}
