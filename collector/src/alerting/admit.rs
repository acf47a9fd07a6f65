//! Admission of a new alert, inside the store transaction that stores its events: suppression,
//! fingerprint deduplication, per-rule rate limit, then the alert row and one outbox row per
//! sink whose route takes it — all committed together, so an alert is never stored without its
//! pending deliveries, nor delivered without being stored. The decisions are made here, on the
//! values the store's [`AdmissionTx`] reads; the store only reads and writes rows.

use std::time::Duration;

use super::suppress;
use crate::alert::{rfc3339, Alert, AlertAncestor, Level, MAX_ANCESTORS};
use crate::config::AlertSettings;
use crate::sinks::SinkSettings;
use crate::store::{AdmissionTx, OpenAlert, RateWindow, StoreError};

/// Which alerts one sink takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The sink's name.
    pub sink: String,
    /// Least severe level it takes.
    pub min_level: Level,
    /// Rule alerts must carry one of these tags (lower-case); empty takes all.
    pub tags: Vec<String>,
}

impl Route {
    /// The route of a configured sink.
    pub fn of(sink: &SinkSettings) -> Route {
        Route {
            sink: sink.name.clone(),
            min_level: sink.min_level,
            tags: sink.tags.clone(),
        }
    }

    /// True when the sink takes `alert` (system alerts ignore the tag filter).
    pub fn accepts(&self, alert: &Alert) -> bool {
        alert.level() >= self.min_level
            && (self.tags.is_empty()
                || alert.is_system()
                || alert
                    .rule
                    .tags
                    .iter()
                    .any(|t| self.tags.contains(&t.to_ascii_lowercase())))
    }
}

/// How alerts are admitted and routed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Repeats within this window of the first occurrence fold into one alert (zero: never).
    pub dedup_window: Duration,
    /// New alerts per rule per window (0: unlimited). System alerts are exempt.
    pub rate_limit_per_rule: u32,
    /// Rate-limit window.
    pub rate_limit_window: Duration,
    /// One route per sink.
    pub routes: Vec<Route>,
}

impl Policy {
    /// The names of the sinks alerts are routed to.
    pub fn sink_names(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.sink.clone()).collect()
    }

    /// Store every alert, fold nothing, limit nothing, deliver nowhere.
    pub fn store_only() -> Policy {
        Policy {
            dedup_window: Duration::ZERO,
            rate_limit_per_rule: 0,
            rate_limit_window: Duration::from_secs(60),
            routes: Vec::new(),
        }
    }

    /// The policy of validated settings and sinks.
    pub fn new(alerts: &AlertSettings, sinks: &[SinkSettings]) -> Policy {
        Policy {
            dedup_window: alerts.dedup_window,
            rate_limit_per_rule: alerts.rate_limit_per_rule,
            rate_limit_window: alerts.rate_limit_window,
            routes: sinks.iter().map(Route::of).collect(),
        }
    }
}

/// What became of an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Stored with this id and queued for its sinks.
    Created(Box<Alert>),
    /// Folded into alert `id`, now seen `count` times.
    Deduplicated {
        /// The alert it was folded into.
        id: i64,
        /// Its occurrences now.
        count: u64,
    },
    /// Held back by suppression `id`.
    Suppressed {
        /// The suppression.
        id: i64,
    },
    /// Over the rule's rate limit; counted in `alert_rate_limits`.
    RateLimited,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Admits `alert` inside the caller's transaction (`tx`); `exclude` names sinks that must not
/// get it (a meta-alert about a failing sink skips that sink).
pub fn admit(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    mut alert: Alert,
    now_ns: u64,
    exclude: &[String],
) -> Result<Admission, StoreError> {
    if let Some(id) = suppress::check(tx, &alert, now_ns)? {
        return Ok(Admission::Suppressed { id });
    }
    let first_ns = alert.time_unix_ns as i64;
    let last_ns =
        (alert.finding_info.last_seen_time.saturating_mul(1_000_000) as i64).max(first_ns);
    if !policy.dedup_window.is_zero() {
        let window = ns(policy.dedup_window);
        if let Some(OpenAlert { id, count }) =
            tx.open_duplicate(alert.fingerprint(), first_ns, window)?
        {
            tx.fold_duplicate(id, last_ns)?;
            return Ok(Admission::Deduplicated {
                id,
                count: count as u64 + 1,
            });
        }
    }
    if policy.rate_limit_per_rule > 0
        && !alert.is_system()
        && over_rate_limit(tx, policy, &alert.rule.id, now_ns)?
    {
        return Ok(Admission::RateLimited);
    }
    fill_ancestry(tx, &mut alert)?;
    let id = tx.insert_alert(&mut alert, first_ns, last_ns)?;
    for route in &policy.routes {
        if route.accepts(&alert) && !exclude.contains(&route.sink) {
            tx.enqueue(&route.sink, id, now_ns)?;
        }
    }
    Ok(Admission::Created(Box::new(alert)))
}

/// Counts the alert against its rule's window; true when the window is full.
fn over_rate_limit(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    rule_id: &str,
    now_ns: u64,
) -> Result<bool, StoreError> {
    let now = now_ns as i64;
    let window = ns(policy.rate_limit_window);
    match tx.rate_window(rule_id)? {
        Some(RateWindow {
            start_unix_ns,
            admitted,
        }) if now - start_unix_ns < window => {
            if admitted >= i64::from(policy.rate_limit_per_rule) {
                tx.count_rate_limited(rule_id)?;
                return Ok(true);
            }
            tx.count_rate_admitted(rule_id)?;
        }
        _ => tx.start_rate_window(rule_id, now)?,
    }
    Ok(false)
}

/// For an event that carries no ancestry (file, network, …), takes the ancestors from the
/// stored exec event of the same process execution.
fn fill_ancestry(tx: &AdmissionTx<'_>, alert: &mut Alert) -> Result<(), StoreError> {
    let is_exec = alert.event.as_ref().is_some_and(|e| e.kind == "exec");
    if is_exec || !alert.ancestors.is_empty() || alert.process.exec_id.is_empty() {
        return Ok(());
    }
    let Some(json) = tx.exec_event_json(&alert.host, &alert.process.exec_id)? else {
        return Ok(());
    };
    // Stored events are the proto serialized with serde (`payload.exec.ancestors[]`).
    let event: serde_json::Value = serde_json::from_str(&json)?;
    let Some(ancestors) = event["payload"]["exec"]["ancestors"].as_array() else {
        return Ok(());
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let number = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_default();
    alert.ancestors_omitted = ancestors.len().saturating_sub(MAX_ANCESTORS) as u64;
    alert.ancestors = ancestors
        .iter()
        .take(MAX_ANCESTORS)
        .map(|a| AlertAncestor {
            pid: number(a, "pid") as u32,
            exe: text(a, "exe"),
            command_line: a["argv"]
                .as_array()
                .map(|argv| {
                    argv.iter()
                        .filter_map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            user: text(a, "user"),
            uid: number(a, "uid") as u32,
            exec_id: text(a, "exec_id"),
            start_time: match number(a, "start_time_unix_ns") {
                0 => String::new(),
                ns => rfc3339(ns),
            },
        })
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::SystemAlert;

    fn system(level: Level) -> Alert {
        Alert::from_system(&SystemAlert {
            rule_id: "sink-failing".into(),
            title: "t".into(),
            description: String::new(),
            level,
            host: "collector".into(),
            group: None,
            details: serde_json::json!({}),
            time_unix_ns: 1,
        })
    }

    #[test]
    fn route_filters_by_level_and_lets_system_alerts_past_tags() {
        let route = Route {
            sink: "s".into(),
            min_level: Level::High,
            tags: vec!["attack.t1003".into()],
        };
        assert!(route.accepts(&system(Level::High)));
        assert!(!route.accepts(&system(Level::Medium)));
    }
}
