//! Suppressions: a rule id (or `*`) plus field matchers plus an optional expiry. An alert that
//! a live suppression matches is counted on the suppression (`hits`) instead of being stored
//! or delivered. Managed with `kestrel-collector alerts suppress add|list|remove`.
//!
//! A matcher is `FIELD=GLOB`: FIELD is a dotted path into the alert record (`host`,
//! `process.exe`, `process.user`, `process.command_line`, `container.image`,
//! `ancestors.exe`, …; through an array any element may match), GLOB takes `*` and `?`.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::glob;
use crate::alert::Alert;
use crate::store::StoreError;

/// One field matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// Dotted path into the alert record.
    pub field: String,
    /// Wildcard pattern.
    pub pattern: String,
}

impl Matcher {
    /// Parses `FIELD=GLOB`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (field, pattern) = text
            .split_once('=')
            .ok_or_else(|| format!("matcher {text:?}: expected FIELD=GLOB"))?;
        let field = field.trim();
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(format!(
                "matcher {text:?}: FIELD must be a dotted path such as process.exe"
            ));
        }
        Ok(Matcher {
            field: field.to_owned(),
            pattern: pattern.to_owned(),
        })
    }

    /// True when some value at `field` in `record` matches the pattern.
    pub fn matches(&self, record: &Value) -> bool {
        let parts: Vec<&str> = self.field.split('.').collect();
        values_at(record, &parts)
            .iter()
            .any(|v| glob::matches(&self.pattern, &text_of(v)))
    }
}

fn values_at<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(|i| values_at(i, path)).collect(),
        _ => match path.split_first() {
            None => vec![value],
            Some((first, rest)) => value
                .get(*first)
                .map_or_else(Vec::new, |v| values_at(v, rest)),
        },
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
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

impl Suppression {
    /// True when it applies at `now_ns` to `record` (the alert as JSON) of rule `rule_id`.
    pub fn applies(&self, rule_id: &str, record: &Value, now_ns: u64) -> bool {
        (self.rule_id == "*" || self.rule_id == rule_id)
            && self.expires_unix_ns.is_none_or(|e| e > now_ns)
            && self.matchers.iter().all(|m| m.matches(record))
    }
}

/// Adds a suppression; returns its id.
pub fn add(
    conn: &Connection,
    rule_id: &str,
    matchers: &[Matcher],
    reason: &str,
    now_ns: u64,
    expires_unix_ns: Option<u64>,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO alert_suppressions (rule_id, matchers, reason, created_unix_ns, \
         expires_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            rule_id,
            serde_json::to_string(matchers)?,
            reason,
            now_ns as i64,
            expires_unix_ns.map(|e| e as i64)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Removes a suppression; false when there was none with that id.
pub fn remove(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM alert_suppressions WHERE id = ?1", [id])? > 0)
}

/// Every suppression, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<Suppression>, StoreError> {
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

/// The first live suppression matching `alert`, counting the hit on it.
pub fn check(conn: &Connection, alert: &Alert, now_ns: u64) -> Result<Option<i64>, StoreError> {
    let any: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM alert_suppressions WHERE (rule_id = ?1 OR rule_id = '*') \
             AND (expires_unix_ns IS NULL OR expires_unix_ns > ?2) LIMIT 1",
            params![alert.rule.id, now_ns as i64],
            |r| r.get(0),
        )
        .optional()?;
    if any.is_none() {
        return Ok(None);
    }
    let record = serde_json::to_value(alert)?;
    for suppression in list(conn)? {
        if suppression.applies(&alert.rule.id, &record, now_ns) {
            conn.execute(
                "UPDATE alert_suppressions SET hits = hits + 1, last_hit_unix_ns = ?2 \
                 WHERE id = ?1",
                params![suppression.id, now_ns as i64],
            )?;
            return Ok(Some(suppression.id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matchers_follow_dotted_paths_and_arrays() {
        let record = json!({
            "host": "node-7",
            "process": {"exe": "/usr/bin/cat", "pid": 42},
            "ancestors": [{"exe": "/bin/sh"}, {"exe": "/usr/sbin/cron"}],
        });
        let m = |t: &str| Matcher::parse(t).unwrap().matches(&record);
        assert!(m("host=node-*"));
        assert!(m("process.exe=*/cat"));
        assert!(m("process.pid=42"));
        assert!(m("ancestors.exe=/usr/sbin/cron"));
        assert!(!m("ancestors.exe=/usr/sbin/sshd"));
        assert!(!m("process.missing=*x"));
    }

    #[test]
    fn malformed_matchers_are_refused() {
        assert!(Matcher::parse("process.exe").is_err());
        assert!(Matcher::parse("process..exe=x").is_err());
        assert!(Matcher::parse("=x").is_err());
    }

    #[test]
    fn expired_suppression_no_longer_applies() {
        let s = Suppression {
            id: 1,
            rule_id: "r".into(),
            matchers: vec![],
            reason: "test".into(),
            created_unix_ns: 0,
            expires_unix_ns: Some(100),
            hits: 0,
            last_hit_unix_ns: None,
        };
        assert!(s.applies("r", &json!({}), 99));
        assert!(!s.applies("r", &json!({}), 100));
        assert!(!s.applies("other", &json!({}), 0));
    }
}
