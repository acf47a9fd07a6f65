//! The `alert_suppressions` table: suppressions as stored (their matching is
//! `alerting::suppress`), the hits counted on them, and their management.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{sql, AdmissionTx, Store, StoreError};

/// One field matcher of a suppression: `FIELD=GLOB`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// Dotted path into the alert record.
    pub field: String,
    /// Wildcard pattern.
    pub pattern: String,
}

/// A stored suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    /// Row id.
    pub id: i64,
    /// Rule id, or `*` for every rule.
    pub rule_id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Why (who asked, ticket).
    pub reason: String,
    /// When it was added.
    pub created_unix_ns: u64,
    /// When it stops applying; `None` never.
    pub expires_unix_ns: Option<u64>,
    /// Alerts it held back.
    pub hits: u64,
    /// Last time it held one back.
    pub last_hit_unix_ns: Option<u64>,
}

/// Every suppression, oldest first.
fn list(conn: &Connection) -> Result<Vec<Suppression>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, rule_id, matchers, reason, created_unix_ns, expires_unix_ns, hits, \
         last_hit_unix_ns FROM alert_suppressions ORDER BY id",
    )?;
    let rows = stmt.query_map([], row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

type RowResult = Result<Suppression, StoreError>;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let matchers: String = r.get(2)?;
    let parsed = serde_json::from_str(&matchers).map_err(StoreError::from);
    Ok(parsed.map(|matchers| Suppression {
        id: r.get(0).unwrap_or_default(),
        rule_id: r.get(1).unwrap_or_default(),
        matchers,
        reason: r.get(3).unwrap_or_default(),
        created_unix_ns: r.get::<_, i64>(4).unwrap_or_default() as u64,
        expires_unix_ns: r.get::<_, Option<i64>>(5).ok().flatten().map(|e| e as u64),
        hits: r.get::<_, i64>(6).unwrap_or_default() as u64,
        last_hit_unix_ns: r.get::<_, Option<i64>>(7).ok().flatten().map(|e| e as u64),
    }))
}

impl AdmissionTx<'_> {
    /// True when some suppression of rule `rule_id` (or of every rule) is live at `now_ns`:
    /// only then is it worth matching the alert against them.
    pub fn any_live_suppression(&self, rule_id: &str, now_ns: u64) -> Result<bool, StoreError> {
        let any: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM alert_suppressions WHERE (rule_id = ?1 OR rule_id = '*') \
                 AND (expires_unix_ns IS NULL OR expires_unix_ns > ?2) LIMIT 1",
                params![rule_id, sql(now_ns)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(any.is_some())
    }

    /// Every suppression, oldest first.
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        list(self.conn)
    }

    /// Counts a hit at `now_ns` on suppression `id`.
    pub fn count_suppression_hit(&self, id: i64, now_ns: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE alert_suppressions SET hits = hits + 1, last_hit_unix_ns = ?2 \
             WHERE id = ?1",
            params![id, sql(now_ns)],
        )?;
        Ok(())
    }
}

impl Store {
    /// Adds a suppression; returns its id.
    pub fn add_suppression(
        &self,
        rule_id: &str,
        matchers: &[Matcher],
        reason: &str,
        now_ns: u64,
        expires_unix_ns: Option<u64>,
    ) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO alert_suppressions (rule_id, matchers, reason, created_unix_ns, \
             expires_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                rule_id,
                serde_json::to_string(matchers)?,
                reason,
                sql(now_ns),
                expires_unix_ns.map(sql)
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Removes a suppression; false when there was none with that id.
    pub fn remove_suppression(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM alert_suppressions WHERE id = ?1", [id])?
            > 0)
    }

    /// Every suppression, oldest first.
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        list(&self.lock())
    }
}
