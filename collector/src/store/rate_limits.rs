//! The `alert_rate_limits` table: per (rule, host), the current rate-limit window and how many
//! alerts it delivered or held back.

use rusqlite::{params, OptionalExtension};

use super::{AdmissionTx, Store, StoreError};

/// The current rate-limit window of one rule on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// When the window opened, Unix ns.
    pub start_unix_ns: i64,
    /// Alerts it let through to the sinks so far.
    pub admitted: i64,
    /// Alerts whose delivery it held back so far.
    pub held: i64,
    /// Alerts held back in every window of this rule and host.
    pub held_total: i64,
}

impl AdmissionTx<'_> {
    /// The current window of rule `rule_id` on `host`, if it has one.
    pub fn rate_window(&self, rule_id: &str, host: &str) -> Result<Option<RateWindow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT window_start_unix_ns, admitted, suppressed, suppressed_total \
                 FROM alert_rate_limits WHERE rule_id = ?1 AND host = ?2",
                [rule_id, host],
                |r| {
                    Ok(RateWindow {
                        start_unix_ns: r.get(0)?,
                        admitted: r.get(1)?,
                        held: r.get(2)?,
                        held_total: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Counts one alert of `rule_id` on `host` whose delivery its full window held back.
    pub fn count_rate_limited(&self, rule_id: &str, host: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alert_rate_limits SET suppressed = suppressed + 1, \
             suppressed_total = suppressed_total + 1 WHERE rule_id = ?1 AND host = ?2",
            [rule_id, host],
        )?;
        Ok(())
    }

    /// Counts one alert of `rule_id` on `host` let through in its current window.
    pub fn count_rate_admitted(&self, rule_id: &str, host: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alert_rate_limits SET admitted = admitted + 1 WHERE rule_id = ?1 AND host = ?2",
            [rule_id, host],
        )?;
        Ok(())
    }

    /// Opens a new window for `rule_id` on `host` at `now_unix_ns` holding one admitted alert
    /// (the held back total carries over).
    pub fn start_rate_window(
        &self,
        rule_id: &str,
        host: &str,
        now_unix_ns: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO alert_rate_limits (rule_id, host, window_start_unix_ns, admitted, \
             suppressed, suppressed_total) VALUES (?1, ?2, ?3, 1, 0, 0) \
             ON CONFLICT (rule_id, host) DO UPDATE SET window_start_unix_ns = ?3, admitted = 1, \
             suppressed = 0",
            params![rule_id, host, now_unix_ns],
        )?;
        Ok(())
    }
}

impl Store {
    /// Per rule (by rule id) that the rate limit ever held deliveries back for: how many in
    /// all, every host together.
    pub fn rate_limited_totals(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT rule_id, SUM(suppressed_total) FROM alert_rate_limits \
             GROUP BY rule_id HAVING SUM(suppressed_total) > 0 ORDER BY rule_id",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
