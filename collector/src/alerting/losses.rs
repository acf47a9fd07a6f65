//! Lost events and tampering with the agent are alerts, not just rows: a kernel drop over a
//! threshold, shedding of security-relevant kinds (exec, credentials, …), a crashed or stopped
//! agent's blind window, a damaged spool, a signal or ptrace aimed at the agent's own pid, and a
//! stream that only says hello: heartbeats report unacknowledged events while no batch comes.
//!
//! A flood of gaps gives one alert per (host, condition) per window: the alerts fold by
//! fingerprint like any alert, with a dedup window of at least [`LossSettings::window`].

use std::time::Duration;

use kestrel_proto::event::Payload;
use kestrel_proto::{Event, Gap, Heartbeat};
use serde::Deserialize;
use serde_json::json;
use tracing::{error, warn};

use super::admit::{admit, Admission, Policy};
use super::AlertPipeline;
use crate::alert::{Alert, Level, SystemAlert};
use crate::clock::now_unix_ns;
use crate::store::{AdmissionTx, StoreError};

/// Rule id of the alert for events the agent lost (kernel drops, shedding, damaged spool).
pub const EVENTS_LOST: &str = "kestrel.system.events-lost";
/// Rule id of the alert for the window an agent did not watch (it crashed or was stopped).
pub const AGENT_DOWN: &str = "kestrel.system.agent-down";
/// Rule id of the alert for a signal or ptrace aimed at the agent.
pub const AGENT_TAMPERING: &str = "kestrel.system.agent-tampering";
/// Rule id of the alert for a stream that holds events but delivers none.
pub const AGENT_STALLED: &str = "kestrel.system.agent-stalled";

/// `[alerts.losses]`: which losses raise alerts, at which level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossAlertsConfig {
    /// A kernel drop (`reason = "kernel"`) of more than this many events in one Gap raises an
    /// alert. Default 100.
    pub kernel_drop_threshold: u64,
    /// Level of the kernel drop alert. Default `medium`.
    pub kernel_drop_level: Level,
    /// Kinds whose shedding (`spool_full`, `queue_full`) raises an alert at any count; a Gap
    /// that names no kind counts as one of them. Default exec, process, credential(s), ptrace,
    /// module, bpf, memfd.
    pub shed_kinds: Vec<String>,
    /// Level of the shedding alert. Default `high`.
    pub shed_level: Level,
    /// Level of the damaged-spool alert (`spool_corrupt`). Default `high`.
    pub spool_corrupt_level: Level,
    /// Level of the alert for the blind window of an agent that crashed (`agent_crashed`).
    /// Default `high`.
    pub agent_crashed_level: Level,
    /// Level of the alert for the blind window of an agent that was stopped (`agent_stopped`).
    /// Default `medium`.
    pub agent_stopped_level: Level,
    /// Level of the alert for a signal (other than 0) or ptrace aimed at the agent. Default
    /// `critical`.
    pub tampering_level: Level,
    /// A stream whose heartbeats report unacknowledged events this many times in a row, with
    /// no batch in between, raises a stalled-agent alert (the agent is connected and heard,
    /// yet delivers nothing). Default 3; 0 turns the alert off.
    pub stall_heartbeats: u32,
    /// Level of the stalled-agent alert. Default `high`.
    pub agent_stalled_level: Level,
    /// Repeats of one condition on one host within this window fold into one alert. Default
    /// `10m`.
    pub window: String,
}

impl Default for LossAlertsConfig {
    fn default() -> Self {
        LossAlertsConfig {
            kernel_drop_threshold: 100,
            kernel_drop_level: Level::Medium,
            shed_kinds: [
                "exec",
                "process",
                "credential",
                "credentials",
                "ptrace",
                "module",
                "bpf",
                "memfd",
            ]
            .map(String::from)
            .to_vec(),
            shed_level: Level::High,
            spool_corrupt_level: Level::High,
            agent_crashed_level: Level::High,
            agent_stopped_level: Level::Medium,
            tampering_level: Level::Critical,
            stall_heartbeats: 3,
            agent_stalled_level: Level::High,
            window: "10m".into(),
        }
    }
}

/// Validated `[alerts.losses]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LossSettings {
    /// The settings as written.
    pub config: LossAlertsConfig,
    /// `window`, parsed.
    pub window: Duration,
}

impl Default for LossSettings {
    fn default() -> Self {
        LossAlertsConfig::default()
            .validate(&mut Vec::new())
            .expect("the defaults are valid")
    }
}

impl LossAlertsConfig {
    /// Checks the values; adds each problem (naming its key) to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) -> Option<LossSettings> {
        match humantime::parse_duration(&self.window) {
            Ok(window) if !window.is_zero() => Some(LossSettings {
                config: self.clone(),
                window,
            }),
            Ok(_) => {
                problems.push("alerts.losses.window: must be greater than zero".into());
                None
            }
            Err(e) => {
                problems.push(format!(
                    "alerts.losses.window: {:?} is not a duration ({e}); write e.g. \"10m\"",
                    self.window
                ));
                None
            }
        }
    }
}

/// The alert a Gap from `host` calls for, if any.
pub fn gap_alert(
    settings: &LossSettings,
    host: &str,
    gap: &Gap,
    now_ns: u64,
) -> Option<SystemAlert> {
    let c = &settings.config;
    let kind = if gap.kind.is_empty() {
        "unstated"
    } else {
        gap.kind.as_str()
    };
    let (rule_id, level, group, title, what) = match gap.reason.as_str() {
        "kernel" if gap.count > c.kernel_drop_threshold => (
            EVENTS_LOST,
            c.kernel_drop_level,
            "kernel".to_owned(),
            "Kernel ring buffer dropped events",
            format!(
                "The kernel dropped {} events (kind {kind}, CPU {}) because the agent's ring \
                 buffer was full: a flood of activity can hide an attack in the drop.",
                gap.count, gap.cpu
            ),
        ),
        "spool_full" | "queue_full"
            if gap.kind.is_empty() || c.shed_kinds.iter().any(|k| k == &gap.kind) =>
        {
            (
                EVENTS_LOST,
                c.shed_level,
                format!("shed {kind}"),
                "Agent shed security-relevant events",
                format!(
                    "The agent discarded {} {kind} events ({}): process and credential events are \
                 what detection relies on.",
                    gap.count, gap.reason
                ),
            )
        }
        "spool_corrupt" => (
            EVENTS_LOST,
            c.spool_corrupt_level,
            "spool_corrupt".to_owned(),
            "Agent spool damaged: events lost",
            format!(
                "{} spooled events could not be read back (a damaged, unreadable or missing \
                 spool record or segment): check the node's disk, and whether someone edited \
                 the spool.",
                gap.count
            ),
        ),
        "agent_crashed" => (
            AGENT_DOWN,
            c.agent_crashed_level,
            "agent_crashed".to_owned(),
            "Agent crashed: nothing was watched for a while",
            "The previous agent run ended without a clean stop; nothing on the host was \
             observed during the window in the details."
                .to_owned(),
        ),
        "agent_stopped" => (
            AGENT_DOWN,
            c.agent_stopped_level,
            "agent_stopped".to_owned(),
            "Agent was stopped: nothing was watched for a while",
            "The agent was stopped and started again; nothing on the host was observed during \
             the window in the details. Check that the stop was planned."
                .to_owned(),
        ),
        _ => return None,
    };
    Some(SystemAlert {
        rule_id: rule_id.into(),
        title: title.into(),
        description: what,
        level,
        host: host.to_owned(),
        group: Some(group),
        details: json!({
            "reason": gap.reason,
            "kind": gap.kind,
            "cpu": gap.cpu,
            "count": gap.count,
            "first_seq": gap.first_seq,
            "last_seq": gap.last_seq,
            "first_time": crate::alert::rfc3339(gap.first_time_unix_ns),
            "last_time": crate::alert::rfc3339(gap.last_time_unix_ns),
        }),
        time_unix_ns: now_ns,
    })
}

/// The tampering alert for `event` from `host` when it is a signal (not 0) or ptrace aimed at
/// `agent_pid`, the pid the agent of `host` announced in its Hello.
pub fn tampering_alert(
    settings: &LossSettings,
    host: &str,
    agent_pid: u32,
    event: &Event,
) -> Option<SystemAlert> {
    let (what, target, detail) = match &event.payload {
        Some(Payload::Signal(s)) if s.signal != 0 => (
            "signal",
            s.target_pid,
            json!({ "syscall": s.syscall, "signal": s.signal, "result": s.result }),
        ),
        Some(Payload::Ptrace(p)) => (
            "ptrace",
            p.target_pid,
            json!({ "syscall": p.syscall, "request": p.request, "result": p.result }),
        ),
        _ => return None,
    };
    if agent_pid == 0 || target != agent_pid {
        return None;
    }
    let process = event.process.clone().unwrap_or_default();
    Some(SystemAlert {
        rule_id: AGENT_TAMPERING.into(),
        title: format!("A process sent a {what} to the Kestrel agent"),
        description: format!(
            "{} (pid {}, uid {}) aimed a {what} at the agent (pid {agent_pid}): stopping or \
             blinding the agent is how an attacker hides.",
            process.exe, process.pid, process.uid
        ),
        level: settings.config.tampering_level,
        host: host.to_owned(),
        group: Some(format!("{what} from {}", process.exe)),
        details: json!({
            "action": what,
            "agent_pid": agent_pid,
            "target_pid": target,
            "call": detail,
            "process": { "pid": process.pid, "exe": process.exe, "uid": process.uid,
                "user": process.user, "argv": process.argv, "exec_id": process.exec_id },
            "seq": event.seq,
        }),
        time_unix_ns: event.time_unix_ns,
    })
}

/// The alert for a stream of `host` whose last `heartbeats` heartbeats reported events
/// unacknowledged (`heartbeat` is the latest) while it sent no batch.
pub fn stalled_alert(
    settings: &LossSettings,
    host: &str,
    heartbeats: u32,
    heartbeat: &Heartbeat,
    now_ns: u64,
) -> SystemAlert {
    SystemAlert {
        rule_id: AGENT_STALLED.into(),
        title: "Agent connected but delivers nothing".into(),
        description: format!(
            "The agent keeps its stream open and its last {heartbeats} heartbeats reported \
             {} spooled events not yet delivered, but it sent no events: the host is not being \
             watched. Check the agent's log and its spool.",
            heartbeat.spool_unacked
        ),
        level: settings.config.agent_stalled_level,
        host: host.to_owned(),
        group: Some("stalled".into()),
        details: json!({
            "heartbeats": heartbeats,
            "spool_unacked": heartbeat.spool_unacked,
            "spool_bytes": heartbeat.spool_bytes,
            "events_sent": heartbeat.events_sent,
            "events_shed": heartbeat.events_shed,
        }),
        time_unix_ns: now_ns,
    }
}

/// Admits a loss or tampering alert, folding repeats within the loss window.
pub fn admit_loss(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    alert: &SystemAlert,
    now_ns: u64,
) -> Result<Admission, StoreError> {
    let mut policy = policy.clone();
    policy.dedup_window = policy.dedup_window.max(policy.losses.window);
    admit(tx, &policy, Alert::from_system(alert), now_ns, &[])
}

/// Checks one stored event from `host` for tampering with its agent (inside the writer's
/// transaction). Returns 1 when it raised a new alert.
pub fn check_event(
    tx: &AdmissionTx<'_>,
    policy: &Policy,
    host: &str,
    event: &Event,
    now_ns: u64,
) -> Result<usize, StoreError> {
    if !matches!(event.payload, Some(Payload::Signal(_) | Payload::Ptrace(_))) {
        return Ok(0);
    }
    let Some(agent_pid) = tx.agent_pid(host)? else {
        return Ok(0);
    };
    let Some(alert) = tampering_alert(&policy.losses, host, agent_pid, event) else {
        return Ok(0);
    };
    warn!(
        host,
        agent_pid,
        seq = event.seq,
        "signal or ptrace aimed at the agent"
    );
    let admission = admit_loss(tx, policy, &alert, now_ns)?;
    Ok(usize::from(matches!(admission, Admission::Created(_))))
}

impl AlertPipeline {
    /// Heartbeats reporting unacknowledged events, with no batch between them, after which a
    /// stream counts as stalled (`None`: the alert is off).
    pub fn stall_heartbeats(&self) -> Option<u32> {
        Some(self.policy().losses.config.stall_heartbeats).filter(|n| *n > 0)
    }

    /// Raises the stalled-agent alert for a stream of `host` (see [`stalled_alert`]).
    pub async fn on_stall(&self, host: &str, heartbeats: u32, heartbeat: &Heartbeat) {
        let now = now_unix_ns();
        warn!(
            host,
            heartbeats,
            spool_unacked = heartbeat.spool_unacked,
            "agent stream delivers nothing while its spool holds events"
        );
        let alert = stalled_alert(&self.policy().losses, host, heartbeats, heartbeat, now);
        let policy = self.policy().clone();
        let admitted = self
            .store()
            .run(move |s| s.in_admission_transaction(|tx| admit_loss(tx, &policy, &alert, now)))
            .await;
        match admitted {
            Ok(Admission::Created(_)) => self.wake(),
            Ok(_) => {}
            Err(e) => error!(host, error = %e, "cannot raise the stalled-agent alert"),
        }
    }

    /// Raises the alert a newly stored Gap from `host` calls for, if any (logged on failure:
    /// the gap itself is stored).
    pub async fn on_gap(&self, host: &str, gap: &Gap) {
        let now = now_unix_ns();
        let Some(alert) = gap_alert(&self.policy().losses, host, gap, now) else {
            return;
        };
        let policy = self.policy().clone();
        let admitted = self
            .store()
            .run(move |s| s.in_admission_transaction(|tx| admit_loss(tx, &policy, &alert, now)))
            .await;
        match admitted {
            Ok(Admission::Created(_)) => self.wake(),
            Ok(_) => {}
            Err(e) => error!(host, error = %e, "cannot raise the events-lost alert"),
        }
    }
}
