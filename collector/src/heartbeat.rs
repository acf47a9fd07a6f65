//! Silence is a signal: the collector watches when it last heard from each agent and raises
//! `agent silent` when an agent sends nothing (no heartbeat, batch or gap) for a configured
//! period, then `agent recovered` when it is heard from again.
//!
//! Agents known from the store count as heard from when the collector starts, so each gets the
//! full period to reconnect after a collector restart. The alerts go through the alert pipeline
//! ([`AlertPipeline::raise`]): stored, deduplicated and delivered like detections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alert::{rfc3339, Level, SystemAlert};
use crate::alerting::AlertPipeline;
use crate::identity::Identity;
use crate::pipeline::now_unix_ns;

/// Rule id of the alert raised when an agent falls silent.
pub const AGENT_SILENT: &str = "kestrel.system.agent-silent";
/// Rule id of the alert raised when a silent agent is heard from again.
pub const AGENT_RECOVERED: &str = "kestrel.system.agent-recovered";

#[derive(Debug, Clone, Copy)]
struct Heard {
    at: Instant,
    unix_ns: u64,
    silent_since: Option<Instant>,
}

/// Tracks when each agent was last heard from.
pub struct AgentMonitor {
    silent_after: Duration,
    agents: Mutex<HashMap<Identity, Heard>>,
    alerts: Option<AlertPipeline>,
}

/// The alert for `identity` not heard from since `last_seen_unix_ns`.
pub fn silent_alert(
    identity: &Identity,
    last_seen_unix_ns: u64,
    silent_after: Duration,
) -> SystemAlert {
    let after = humantime::format_duration(silent_after);
    SystemAlert {
        rule_id: AGENT_SILENT.into(),
        title: "Agent stopped sending heartbeats".into(),
        description: format!(
            "Nothing received from agent {identity} since {} (limit {after}). The host may be \
             down or isolated, the agent stopped or was killed, or its network path to the \
             collector is blocked: an attacker's first move is often to silence the sensor.",
            rfc3339(last_seen_unix_ns)
        ),
        level: Level::High,
        host: identity.to_string(),
        group: None,
        details: json!({
            "last_seen": rfc3339(last_seen_unix_ns),
            "last_seen_unix_ns": last_seen_unix_ns,
            "silent_after_s": silent_after.as_secs_f64(),
        }),
        time_unix_ns: now_unix_ns(),
    }
}

/// The alert for `identity` heard from again after `silent_for`.
pub fn recovered_alert(identity: &Identity, silent_for: Duration) -> SystemAlert {
    SystemAlert {
        rule_id: AGENT_RECOVERED.into(),
        title: "Agent reporting again".into(),
        description: format!(
            "Agent {identity} is sending again after {} of silence; events it spooled \
             meanwhile are being delivered.",
            humantime::format_duration(Duration::from_secs(silent_for.as_secs()))
        ),
        level: Level::Low,
        host: identity.to_string(),
        group: None,
        details: json!({ "silent_for_s": silent_for.as_secs_f64() }),
        time_unix_ns: now_unix_ns(),
    }
}

impl AgentMonitor {
    /// A monitor raising alerts through `alerts` (logging only without it) when an agent is
    /// silent for longer than `silent_after`.
    pub fn new(silent_after: Duration, alerts: Option<AlertPipeline>) -> AgentMonitor {
        AgentMonitor {
            silent_after,
            agents: Mutex::new(HashMap::new()),
            alerts,
        }
    }

    /// Starts watching agents already known (from the store) as if just heard from.
    pub fn watch_known(&self, identities: impl IntoIterator<Item = Identity>) {
        let now = Heard {
            at: Instant::now(),
            unix_ns: now_unix_ns(),
            silent_since: None,
        };
        let mut agents = self.lock();
        for identity in identities {
            agents.entry(identity).or_insert(now);
        }
    }

    /// Records that `identity` was heard from now; raises `agent recovered` if it was silent.
    pub fn heard(self: &Arc<Self>, identity: &Identity) {
        let now = Instant::now();
        let previous = self.lock().insert(
            identity.clone(),
            Heard {
                at: now,
                unix_ns: now_unix_ns(),
                silent_since: None,
            },
        );
        if let Some(since) = previous.and_then(|h| h.silent_since) {
            let silent_for = now.duration_since(since) + self.silent_after;
            info!(identity = %identity, silent_for_s = silent_for.as_secs(), "agent recovered");
            self.raise(recovered_alert(identity, silent_for));
        }
    }

    /// Agents currently silent.
    pub fn silent(&self) -> Vec<Identity> {
        self.lock()
            .iter()
            .filter(|(_, h)| h.silent_since.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks agents silent for too long and raises `agent silent` for each (once per silence).
    pub fn check(self: &Arc<Self>) {
        let now = Instant::now();
        let newly_silent: Vec<(Identity, u64)> = self
            .lock()
            .iter_mut()
            .filter(|(_, h)| {
                h.silent_since.is_none() && now.duration_since(h.at) > self.silent_after
            })
            .map(|(id, h)| {
                h.silent_since = Some(now);
                (id.clone(), h.unix_ns)
            })
            .collect();
        for (identity, last_seen) in newly_silent {
            warn!(identity = %identity, last_seen = %rfc3339(last_seen), "agent silent");
            self.raise(silent_alert(&identity, last_seen, self.silent_after));
        }
    }

    /// Checks every quarter of the silence period (at most every second) until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let period =
            (self.silent_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.check(),
            }
        }
    }

    fn raise(&self, alert: SystemAlert) {
        let Some(alerts) = self.alerts.clone() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = alerts.raise(alert).await {
                error!(error = %e, "cannot raise the agent heartbeat alert");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Heard>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silence_is_flagged_once_and_cleared_when_heard_again() {
        let monitor = Arc::new(AgentMonitor::new(Duration::from_millis(30), None));
        let id = Identity::new("spiffe://kestrel.local/node/a");
        monitor.heard(&id);
        monitor.check();
        assert!(monitor.silent().is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
        monitor.check();
        assert_eq!(monitor.silent(), std::slice::from_ref(&id));
        monitor.check();
        assert_eq!(monitor.silent().len(), 1);
        monitor.heard(&id);
        assert!(monitor.silent().is_empty());
    }

    #[test]
    fn alerts_name_the_agent_and_when_it_was_last_heard() {
        let id = Identity::new("spiffe://kestrel.local/node/a");
        let silent = silent_alert(&id, 1_700_000_000_000_000_000, Duration::from_secs(60));
        assert_eq!(silent.rule_id, AGENT_SILENT);
        assert_eq!(silent.host, id.as_str());
        assert_eq!(silent.level, Level::High);
        assert!(
            silent.description.contains("2023-11-14T22:13:20"),
            "{}",
            silent.description
        );
        let recovered = recovered_alert(&id, Duration::from_secs(90));
        assert_eq!(recovered.rule_id, AGENT_RECOVERED);
        assert!(
            recovered.description.contains("1m 30s"),
            "{}",
            recovered.description
        );
    }
}
