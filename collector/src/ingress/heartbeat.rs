//! Silence is a signal: the collector watches when it last heard from each agent and raises
//! `agent silent` when an agent sends nothing (no heartbeat, batch or gap) for a configured
//! period, then `agent recovered` when it is heard from again.
//!
//! Silence outlives a collector restart: when an agent falls silent or recovers, that is written
//! to the store, and a starting collector picks up every known agent with its last-seen time and
//! silence. An agent already silent is not alerted on again, and its return raises `agent
//! recovered` for the whole silence; any other known agent gets the full period to reconnect
//! (the collector's own downtime is not the agent's silence), and if it does not, the alert
//! names when it was really last heard from. The alerts go through the alert pipeline
//! ([`AlertPipeline::raise`]): stored, deduplicated and delivered like detections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alert::{rfc3339, Level, SystemAlert};
use crate::alerting::AlertPipeline;
use crate::clock::now_unix_ns;
use crate::ingress::identity::Identity;
use crate::store::{AgentLiveness, Store};

/// Rule id of the alert raised when an agent falls silent.
pub const AGENT_SILENT: &str = "kestrel.system.agent-silent";
/// Rule id of the alert raised when a silent agent is heard from again.
pub const AGENT_RECOVERED: &str = "kestrel.system.agent-recovered";

#[derive(Debug, Clone, Copy)]
struct Heard {
    /// When the silence period started counting (last heard, or the collector's start).
    at: Instant,
    /// When it was last heard from, Unix ns.
    unix_ns: u64,
    /// Since when it has been silent, Unix ns.
    silent_since: Option<u64>,
}

/// A change of an agent's silence, to be written to the store.
type SilenceChange = (Identity, Option<u64>);

/// Tracks when each agent was last heard from.
pub struct AgentMonitor {
    silent_after: Duration,
    agents: Mutex<HashMap<Identity, Heard>>,
    alerts: Option<AlertPipeline>,
    store: Option<Store>,
    changes: mpsc::UnboundedSender<SilenceChange>,
    /// Taken by [`AgentMonitor::run`], which writes the changes in order.
    pending: Mutex<Option<mpsc::UnboundedReceiver<SilenceChange>>>,
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
    /// silent for longer than `silent_after`, and keeping silences in `store` when given.
    pub fn new(
        silent_after: Duration,
        alerts: Option<AlertPipeline>,
        store: Option<Store>,
    ) -> AgentMonitor {
        let (changes, pending) = mpsc::unbounded_channel();
        AgentMonitor {
            silent_after,
            agents: Mutex::new(HashMap::new()),
            alerts,
            store,
            changes,
            pending: Mutex::new(Some(pending)),
        }
    }

    /// Starts watching agents already known (from the store): an agent silent before stays
    /// silent without a new alert; any other gets the full period from now.
    pub fn watch_known(&self, known: impl IntoIterator<Item = AgentLiveness>) {
        let now = Instant::now();
        let mut agents = self.lock();
        for agent in known {
            agents
                .entry(Identity::new(agent.identity))
                .or_insert(Heard {
                    at: now,
                    unix_ns: agent.last_seen_unix_ns,
                    silent_since: agent.silent_since_unix_ns,
                });
        }
    }

    /// Records that `identity` was heard from now; raises `agent recovered` if it was silent.
    pub fn heard(self: &Arc<Self>, identity: &Identity) {
        let now_unix_ns = now_unix_ns();
        let previous = self.lock().insert(
            identity.clone(),
            Heard {
                at: Instant::now(),
                unix_ns: now_unix_ns,
                silent_since: None,
            },
        );
        if let Some(previous) = previous.filter(|h| h.silent_since.is_some()) {
            let silent_for = Duration::from_nanos(now_unix_ns.saturating_sub(previous.unix_ns));
            info!(identity = %identity, silent_for_s = silent_for.as_secs(), "agent recovered");
            let _ = self.changes.send((identity.clone(), None));
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
        let now_unix_ns = now_unix_ns();
        let newly_silent: Vec<(Identity, u64)> = self
            .lock()
            .iter_mut()
            .filter(|(_, h)| {
                h.silent_since.is_none() && now.duration_since(h.at) > self.silent_after
            })
            .map(|(id, h)| {
                h.silent_since = Some(now_unix_ns);
                (id.clone(), h.unix_ns)
            })
            .collect();
        for (identity, last_seen) in newly_silent {
            warn!(identity = %identity, last_seen = %rfc3339(last_seen), "agent silent");
            let _ = self.changes.send((identity.clone(), Some(now_unix_ns)));
            self.raise(silent_alert(&identity, last_seen, self.silent_after));
        }
    }

    /// Checks every quarter of the silence period (at most every second), and writes silences
    /// to the store in the order they happened, until `stop`. Call once.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let period =
            (self.silent_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut changes) = taken else {
            error!("the agent silence monitor was started twice");
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.check(),
                Some(change) = changes.recv() => self.persist(change).await,
            }
        }
        while let Ok(change) = changes.try_recv() {
            self.persist(change).await;
        }
    }

    async fn persist(&self, (identity, since): SilenceChange) {
        let Some(store) = &self.store else {
            return;
        };
        let name = identity.to_string();
        if let Err(e) = store
            .run(move |store| store.set_agent_silent(&name, since))
            .await
        {
            error!(identity = %identity, error = %e, "cannot record the agent's silence in the store");
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
        let monitor = Arc::new(AgentMonitor::new(Duration::from_millis(30), None, None));
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
