//! The `alerts` table: new alerts and their folded repeats (admission), and reading and
//! acknowledging them (`kestrel-collector alerts`).

use rusqlite::{params, OptionalExtension};
use tracing::warn;

use super::{sql, AdmissionTx, Store, StoreError};
use crate::alert::Alert;

/// An unacknowledged alert that a repeat may be folded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAlert {
    /// Its row id.
    pub id: i64,
    /// Its occurrences so far.
    pub count: i64,
}

/// Who acknowledged an alert, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAck {
    /// When it was acknowledged, Unix ns (`None`: not acknowledged).
    pub acked_unix_ns: Option<u64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
}

/// Reads an alert row's record with its dedup state folded in.
pub(super) fn alert_from_row(
    json: &str,
    count: i64,
    last_seen: i64,
    acked: Option<i64>,
) -> Result<Alert, StoreError> {
    let mut alert: Alert = serde_json::from_str(json)?;
    alert.apply_state(count as u64, last_seen as u64, acked.is_some());
    Ok(alert)
}

impl AdmissionTx<'_> {
    /// The newest unacknowledged alert with `fingerprint` first seen less than `window_ns`
    /// away from `first_seen_ns` (either side).
    pub fn open_duplicate(
        &self,
        fingerprint: &str,
        first_seen_ns: i64,
        window_ns: i64,
    ) -> Result<Option<OpenAlert>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, count FROM alerts WHERE fingerprint = ?1 AND acked_unix_ns IS NULL \
                 AND first_seen_unix_ns > ?2 - ?3 AND first_seen_unix_ns < ?2 + ?3 \
                 ORDER BY id DESC LIMIT 1",
                params![fingerprint, first_seen_ns, window_ns],
                |r| {
                    Ok(OpenAlert {
                        id: r.get(0)?,
                        count: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Folds one more occurrence, last seen at `last_seen_ns`, into alert `id`.
    pub fn fold_duplicate(&self, id: i64, last_seen_ns: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alerts SET count = count + 1, \
             last_seen_unix_ns = MAX(last_seen_unix_ns, ?2) WHERE id = ?1",
            params![id, last_seen_ns],
        )?;
        Ok(())
    }

    /// Stores `alert` as a new alert seen once, from `first_seen_ns` to `last_seen_ns`: gives
    /// it the next row id (set on `alert` before its record is stored) and returns that id.
    pub fn insert_alert(
        &self,
        alert: &mut Alert,
        first_seen_ns: i64,
        last_seen_ns: i64,
    ) -> Result<i64, StoreError> {
        let id: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM alerts", [], |r| {
                    r.get(0)
                })?;
        alert.id = Some(id);
        self.conn
            .prepare_cached(
                "INSERT INTO alerts (id, time_unix_ns, rule_id, rule_title, level, identity, \
                 exec_id, json, uid, fingerprint, count, first_seen_unix_ns, last_seen_unix_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?2, ?11)",
            )?
            .execute(params![
                id,
                first_seen_ns,
                alert.rule.id,
                alert.rule.title,
                alert.rule.level,
                alert.host,
                alert.process.exec_id,
                serde_json::to_string(&alert)?,
                alert.uid(),
                alert.fingerprint(),
                last_seen_ns,
            ])?;
        Ok(id)
    }
}

impl Store {
    /// Ids of the newest `limit` readable alerts (only unacknowledged ones when `only_open`),
    /// newest first. A row whose record cannot be read back (written by an older collector
    /// that nested the ancestry too deep, or damaged) is left out, with a warning, so that it
    /// does not hide the others; [`Store::alert`] still reports its error.
    pub fn alert_ids(&self, only_open: bool, limit: usize) -> Result<Vec<i64>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, json FROM alerts WHERE (?1 = 0 OR acked_unix_ns IS NULL) \
             ORDER BY id DESC",
        )?;
        let mut rows = statement.query(params![only_open as i64])?;
        let mut ids = Vec::new();
        while ids.len() < limit {
            let Some(row) = rows.next()? else { break };
            let id: i64 = row.get(0)?;
            let json: String = row.get(1)?;
            match serde_json::from_str::<Alert>(&json) {
                Ok(_) => ids.push(id),
                Err(e) => warn!(alert = id, error = %e, "alert record unreadable; left out"),
            }
        }
        Ok(ids)
    }

    /// True when an alert of rule `rule_id` is stored.
    pub fn has_alerts_of_rule(&self, rule_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE rule_id = ?1)",
            params![rule_id],
            |row| row.get(0),
        )?)
    }

    /// Alert `id` read back with its dedup and ack state.
    pub fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        let row: Option<(String, i64, i64, Option<i64>)> = self
            .lock()
            .query_row(
                "SELECT json, count, last_seen_unix_ns, acked_unix_ns FROM alerts WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(json, count, last, acked)| alert_from_row(&json, count, last, acked))
            .transpose()
    }

    /// The acknowledgement of alert `id`; `None` when there is no such alert.
    pub fn alert_ack(&self, id: i64) -> Result<Option<AlertAck>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT acked_unix_ns, acked_by FROM alerts WHERE id = ?1",
                [id],
                |r| {
                    Ok(AlertAck {
                        acked_unix_ns: r.get::<_, Option<i64>>(0)?.map(|t| t as u64),
                        acked_by: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Marks alert `id` acknowledged by `by` at `now_unix_ns` (an earlier acknowledgement
    /// stays); false when there is no such alert.
    pub fn acknowledge(&self, id: i64, now_unix_ns: u64, by: &str) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE alerts SET acked_unix_ns = COALESCE(acked_unix_ns, ?2), \
             acked_by = COALESCE(acked_by, ?3) WHERE id = ?1",
            params![id, sql(now_unix_ns), by],
        )?;
        Ok(changed > 0)
    }
}
