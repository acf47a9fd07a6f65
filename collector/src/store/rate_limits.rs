//! The `alert_rate_limits` table: per rule, the current rate-limit window and what it let
//! through or held back.

use rusqlite::{params, OptionalExtension};

use super::{AdmissionTx, Store, StoreError};

/// A rule's current rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// When the window opened, Unix ns.
    pub start_unix_ns: i64,
    /// Alerts it admitted so far.
    pub admitted: i64,
}

impl AdmissionTx<'_> {
    /// The current window of rule `rule_id`, if it has one.
    pub fn rate_window(&self, rule_id: &str) -> Result<Option<RateWindow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT window_start_unix_ns, admitted FROM alert_rate_limits WHERE rule_id = ?1",
                [rule_id],
                |r| {
                    Ok(RateWindow {
                        start_unix_ns: r.get(0)?,
                        admitted: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Counts one alert of `rule_id` held back by its full window.
    pub fn count_rate_limited(&self, rule_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alert_rate_limits SET suppressed = suppressed + 1, \
             suppressed_total = suppressed_total + 1 WHERE rule_id = ?1",
            [rule_id],
        )?;
        Ok(())
    }

    /// Counts one alert of `rule_id` admitted in its current window.
    pub fn count_rate_admitted(&self, rule_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alert_rate_limits SET admitted = admitted + 1 WHERE rule_id = ?1",
            [rule_id],
        )?;
        Ok(())
    }

    /// Opens a new window for `rule_id` at `now_unix_ns` holding one admitted alert (the held
    /// back total carries over).
    pub fn start_rate_window(&self, rule_id: &str, now_unix_ns: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO alert_rate_limits (rule_id, window_start_unix_ns, admitted, \
             suppressed, suppressed_total) VALUES (?1, ?2, 1, 0, 0) \
             ON CONFLICT (rule_id) DO UPDATE SET window_start_unix_ns = ?2, admitted = 1, \
             suppressed = 0",
            params![rule_id, now_unix_ns],
        )?;
        Ok(())
    }
}

impl Store {
    /// Per rule (by rule id) that the rate limit ever held alerts back for: how many in all.
    pub fn rate_limited_totals(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT rule_id, suppressed_total FROM alert_rate_limits \
             WHERE suppressed_total > 0 ORDER BY rule_id",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
