//! Suppressions: a rule id (or `*`) plus field matchers plus an optional expiry. An alert that
//! a live suppression matches is counted on the suppression (`hits`) instead of being stored
//! or delivered. Managed with `kestrel-collector alerts suppress add|list|remove`.
//!
//! A matcher is `FIELD=GLOB`: FIELD is a dotted path into the alert record (`host`,
//! `process.exe`, `process.user`, `process.command_line`, `container.image`,
//! `ancestors.exe`, …; through an array any element may match), GLOB takes `*` and `?`.
//!
//! The suppressions themselves are stored rows ([`Matcher`], [`Suppression`], defined by the
//! store); what they mean is decided here.

use serde_json::Value;

use super::glob;
use crate::alert::Alert;
use crate::store::{AdmissionTx, StoreError};
pub use crate::store::{Matcher, Suppression};

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

impl Suppression {
    /// True when it applies at `now_ns` to `record` (the alert as JSON) of rule `rule_id`.
    pub fn applies(&self, rule_id: &str, record: &Value, now_ns: u64) -> bool {
        (self.rule_id == "*" || self.rule_id == rule_id)
            && self.expires_unix_ns.is_none_or(|e| e > now_ns)
            && self.matchers.iter().all(|m| m.matches(record))
    }
}

/// The first live suppression matching `alert`, counting the hit on it.
pub fn check(tx: &AdmissionTx<'_>, alert: &Alert, now_ns: u64) -> Result<Option<i64>, StoreError> {
    if !tx.any_live_suppression(&alert.rule.id, now_ns)? {
        return Ok(None);
    }
    let record = serde_json::to_value(alert)?;
    for suppression in tx.suppressions()? {
        if suppression.applies(&alert.rule.id, &record, now_ns) {
            tx.count_suppression_hit(suppression.id, now_ns)?;
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
