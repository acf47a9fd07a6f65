//! Admission of a new alert, inside the store transaction that stores its events: suppression,
//! fingerprint deduplication, the rate limit per (rule, host), then the alert row and one outbox
//! row per sink whose route takes it (none when the rate limit holds its delivery back) — all committed together, so an alert is never stored without its
//! pending deliveries, nor delivered without being stored. The decisions are made here, on the
//! values the store's [`AdmissionTx`] reads; the store only reads and writes rows.

use std::time::Duration;

use super::losses::LossSettings;
use super::suppress;
use crate::alert::{rfc3339, Alert, AlertAncestor, Level, SystemAlert, MAX_ANCESTORS};
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
    /// Alerts delivered per rule and host per window (0: unlimited); the rest are stored with
    /// their delivery held. System alerts are exempt.
    pub rate_limit_per_rule: u32,
    /// Rate-limit window.
    pub rate_limit_window: Duration,
    /// One route per sink.
    pub routes: Vec<Route>,
    /// Which losses and tampering raise alerts (`[alerts.losses]`).
    pub losses: LossSettings,
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
            losses: LossSettings::default(),
        }
    }

    /// The policy of validated settings and sinks.
    pub fn new(alerts: &AlertSettings, sinks: &[SinkSettings]) -> Policy {
        Policy {
            dedup_window: alerts.dedup_window,
            rate_limit_per_rule: alerts.rate_limit_per_rule,
            rate_limit_window: alerts.rate_limit_window,
            routes: sinks.iter().map(Route::of).collect(),
            losses: alerts.losses.clone(),
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
    /// Stored as alert `id`, but over its rule's rate limit on its host: not queued for the
    /// sinks (counted in `alert_rate_limits`; a `kestrel.system.rate-limited` alert says so).
    RateLimited {
        /// The stored alert.
        id: i64,
    },
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Admits `alert` inside the caller's transaction (`tx`); `exclude` names sinks that must not
/// get it (a meta-alert about a failing sink skips that sink).
pub fn admit(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    alert: Alert,
    now_ns: u64,
    exclude: &[String],
) -> Result<Admission, StoreError> {
    let admission = admit_counted(tx, policy, alert, now_ns, exclude)?;
    let outcome = match &admission {
        Admission::Created(_) => "created",
        Admission::Deduplicated { .. } => "deduplicated",
        Admission::Suppressed { .. } => "suppressed",
        Admission::RateLimited { .. } => "rate_limited",
    };
    crate::metrics::figures::figures()
        .alerts
        .get_or_create(&[("outcome", outcome)])
        .inc();
    Ok(admission)
}

/// Every outcome of [`admit`], as counted on `kestrel_collector_alerts_total`.
pub const OUTCOMES: [&str; 4] = ["created", "deduplicated", "suppressed", "rate_limited"];

/// [`admit`] before it is counted.
fn admit_counted(
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
    if policy.rate_limit_per_rule > 0 && !alert.is_system() {
        alert.delivery_held = rate_limit(tx, policy, &alert, now_ns, exclude)?;
    }
    fill_ancestry(tx, &mut alert)?;
    let id = tx.insert_alert(&mut alert, first_ns, last_ns)?;
    if alert.delivery_held.is_some() {
        return Ok(Admission::RateLimited { id });
    }
    for route in &policy.routes {
        if route.accepts(&alert) && !exclude.contains(&route.sink) {
            tx.enqueue(&route.sink, id, now_ns)?;
        }
    }
    Ok(Admission::Created(Box::new(alert)))
}

/// Rule id of the alert saying that a rule's rate limit on a host holds deliveries back.
pub const RATE_LIMITED: &str = "kestrel.system.rate-limited";

/// Counts `alert` against the window of its rule on its host. Returns why its delivery is
/// held when the window is full; the first alert held in a window raises [`RATE_LIMITED`]
/// (once per window, rule and host), so a flood is never silent.
fn rate_limit(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    alert: &Alert,
    now_ns: u64,
    exclude: &[String],
) -> Result<Option<String>, StoreError> {
    let (rule_id, host) = (alert.rule.id.as_str(), alert.host.as_str());
    let now = now_ns as i64;
    let window = ns(policy.rate_limit_window);
    let limit = i64::from(policy.rate_limit_per_rule);
    match tx.rate_window(rule_id, host)? {
        Some(current) if now - current.start_unix_ns < window => {
            if current.admitted < limit {
                tx.count_rate_admitted(rule_id, host)?;
                return Ok(None);
            }
            tx.count_rate_limited(rule_id, host)?;
            if current.held == 0 {
                let meta = rate_limited_alert(policy, alert, current, now_ns);
                admit(tx, policy, Alert::from_system(&meta), now_ns, exclude)?;
            }
            Ok(Some(format!(
                "rate limit: rule {rule_id} delivered {limit} alerts from {host} within {}",
                humantime::format_duration(policy.rate_limit_window)
            )))
        }
        _ => {
            tx.start_rate_window(rule_id, host, now)?;
            Ok(None)
        }
    }
}

/// The [`RATE_LIMITED`] alert for the first alert `held` back in window `current`.
fn rate_limited_alert(
    policy: &Policy,
    held: &Alert,
    current: RateWindow,
    now_ns: u64,
) -> SystemAlert {
    let window_start = rfc3339(current.start_unix_ns as u64);
    let window = humantime::format_duration(policy.rate_limit_window).to_string();
    SystemAlert {
        rule_id: RATE_LIMITED.into(),
        title: format!("Rate limit holds back alerts of rule {}", held.rule.title),
        description: format!(
            "Rule {} ({}) raised {} alerts on this host within {window} (from {window_start}); \
             further alerts of the rule on this host in that window are stored but not sent. \
             `kestrel-collector alerts list` shows them. A flood of one rule can hide a real \
             finding among the repeats: look at what causes it.",
            held.rule.id, held.rule.title, current.admitted
        ),
        level: Level::High,
        host: held.host.clone(),
        // One alert per window: the window's start is part of the fingerprint.
        group: Some(format!(
            "rule_id={}, window_start={window_start}",
            held.rule.id
        )),
        details: serde_json::json!({
            "rule_id": held.rule.id,
            "rule_title": held.rule.title,
            "host": held.host,
            "limit": policy.rate_limit_per_rule,
            "window": window,
            "window_start": window_start,
            "delivered_in_window": current.admitted,
            "held_in_window": current.held + 1,
            "held_total": current.held_total + 1,
            "first_held_alert_uid": held.uid(),
        }),
        time_unix_ns: now_ns,
    }
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
