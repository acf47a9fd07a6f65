//! The alert record: an OCSF Detection Finding (class 2004) with Kestrel's own keys on top.
//!
//! One record is what every sink receives and what the store keeps in `alerts.json`. The OCSF
//! attributes (`class_uid`, `severity_id`, `finding_info`, `evidences`, `metadata`, `device`, …)
//! follow OCSF 1.3; the Kestrel keys (`rule`, `host`, `process`, `ancestors`, `container`,
//! `event`) are a flat view of the same facts for scripts and the JSON-lines sink, and stay stable.

pub mod fingerprint;
pub mod render;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kestrel_detect::{Detection, Rule, RuleKind};
use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event;

/// OCSF schema version the record follows.
pub const OCSF_VERSION: &str = "1.3.0";
/// OCSF class `Detection Finding`.
pub const CLASS_UID: u32 = 2004;
/// Rule id prefix of the alerts Kestrel raises about itself and its agents.
pub const SYSTEM_RULE_PREFIX: &str = "kestrel.system.";
/// Every rule id of the alerts Kestrel raises about itself and its agents (a suppression may
/// name them like any rule's).
pub const SYSTEM_RULES: &[&str] = &[
    crate::pipeline::SEQUENCE_CONFLICT_RULE,
    crate::alerting::admit::RATE_LIMITED,
    crate::alerting::worker::SINK_FAILING,
    crate::alerting::worker::SINK_RECOVERED,
    crate::alerting::losses::EVENTS_LOST,
    crate::alerting::losses::AGENT_DOWN,
    crate::alerting::losses::AGENT_TAMPERING,
    crate::alerting::losses::AGENT_STALLED,
    crate::ingress::heartbeat::AGENT_SILENT,
    crate::ingress::heartbeat::AGENT_RECOVERED,
];
/// Ancestors an alert keeps (nearest first); the rest are only counted in `ancestors_omitted`.
/// The agent may send any chain, and the record's size must not depend on it.
pub const MAX_ANCESTORS: usize = 64;

/// Alert severity, least severe first (Sigma levels; OCSF `severity_id` 1..=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Sigma `informational`.
    Informational,
    /// Sigma `low`.
    Low,
    /// Sigma `medium`.
    Medium,
    /// Sigma `high`.
    High,
    /// Sigma `critical`.
    Critical,
}

impl Level {
    /// Every level, least severe first.
    pub const ALL: [Level; 5] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];

    /// Parses a Sigma level (case-insensitive; `info` is accepted for `informational`).
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "informational" | "info" => Some(Level::Informational),
            "low" => Some(Level::Low),
            "medium" => Some(Level::Medium),
            "high" => Some(Level::High),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }

    /// The Sigma name (`informational` … `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// OCSF `severity_id` (1 Informational … 5 Critical).
    pub fn severity_id(self) -> u8 {
        self as u8 + 1
    }

    /// OCSF `severity` caption.
    pub fn caption(self) -> &'static str {
        match self {
            Level::Informational => "Informational",
            Level::Low => "Low",
            Level::Medium => "Medium",
            Level::High => "High",
            Level::Critical => "Critical",
        }
    }
}

/// One alert: a detection (or a system condition) with the context an analyst needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// Store row id, assigned when the alert is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// OCSF class: 2004 (Detection Finding).
    pub class_uid: u32,
    /// OCSF class name.
    pub class_name: String,
    /// OCSF category: 2 (Findings).
    pub category_uid: u32,
    /// OCSF category name.
    pub category_name: String,
    /// OCSF activity: 1 (Create).
    pub activity_id: u32,
    /// OCSF activity name.
    pub activity_name: String,
    /// OCSF `type_uid` = class_uid * 100 + activity_id.
    pub type_uid: u32,
    /// OCSF type name.
    pub type_name: String,
    /// OCSF severity id (1 Informational … 5 Critical).
    pub severity_id: u8,
    /// OCSF severity caption.
    pub severity: String,
    /// OCSF status id: 1 New, 2 In Progress (acknowledged).
    pub status_id: u8,
    /// `New` or `Acknowledged`.
    pub status: String,
    /// Time of the first triggering event, milliseconds since the Unix epoch (OCSF `time`).
    pub time: u64,
    /// The same time, RFC 3339 UTC with nanoseconds.
    pub time_dt: String,
    /// Time of the first triggering event, nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// One line for humans: the rule title.
    pub message: String,
    /// Occurrences folded into this alert by fingerprint deduplication.
    pub count: u64,
    /// What was found: fingerprint, title, rule, ATT&CK, first and last seen.
    pub finding_info: FindingInfo,
    /// Producer and record identity.
    pub metadata: Metadata,
    /// The host the finding is about.
    pub device: Device,
    /// The triggering events, oldest first, with their process.
    pub evidences: Vec<Evidence>,
    /// The rule that fired.
    pub rule: AlertRule,
    /// Host identity from the agent's certificate (the collector for collector alerts).
    pub host: String,
    /// The process of the triggering event.
    pub process: AlertProcess,
    /// Its ancestors, nearest first: at most [`MAX_ANCESTORS`], a flat list (never nested).
    pub ancestors: Vec<AlertAncestor>,
    /// Ancestors further up the chain than [`MAX_ANCESTORS`], left out of `ancestors`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ancestors_omitted: u64,
    /// The container of the process, when it runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<AlertContainer>,
    /// Which event triggered the alert (absent for system alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AlertEvent>,
    /// The correlation group key (`Field=value, …`), for correlation and system alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why the alert was stored but not sent to the sinks (its rule's rate limit on its host);
    /// absent when it was queued for delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_held: Option<String>,
}

/// OCSF `finding_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindingInfo {
    /// The fingerprint: stable for the same rule, host and subject (see [`fingerprint`]).
    pub uid: String,
    /// Rule title.
    pub title: String,
    /// Rule description.
    pub desc: String,
    /// `detection`, `correlation` or `system`.
    pub types: Vec<String>,
    /// First occurrence, ms since the Unix epoch.
    pub first_seen_time: u64,
    /// Last occurrence, ms since the Unix epoch.
    pub last_seen_time: u64,
    /// First occurrence, RFC 3339.
    pub first_seen_time_dt: String,
    /// Last occurrence, RFC 3339.
    pub last_seen_time_dt: String,
    /// The rule as an OCSF analytic.
    pub analytic: Analytic,
    /// ATT&CK tactics and techniques from the rule's tags.
    pub attacks: Vec<Attack>,
}

/// OCSF `analytic` (the rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Analytic {
    /// Rule id.
    pub uid: String,
    /// Rule title.
    pub name: String,
    /// 1 (Rule).
    pub type_id: u8,
    /// `Rule`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// OCSF `attack`: one ATT&CK technique (or tactic) the rule claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attack {
    /// The tactic (first tactic tag of the rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tactic: Option<AttackRef>,
    /// The technique (`T1003`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<AttackRef>,
    /// The sub-technique (`T1003.008`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_technique: Option<AttackRef>,
}

/// An ATT&CK tactic or technique reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttackRef {
    /// `TA0006`, `T1003`, `T1003.008`.
    pub uid: String,
    /// Tactic name (`Credential Access`); technique ids stand for their name.
    pub name: String,
}

/// OCSF `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metadata {
    /// OCSF version.
    pub version: String,
    /// Unique id of this alert record: the idempotency key of its deliveries.
    pub uid: String,
    /// The producer.
    pub product: Product,
}

/// OCSF `product`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    /// `Kestrel`.
    pub name: String,
    /// `Kestrel`.
    pub vendor_name: String,
    /// Collector version.
    pub version: String,
}

/// OCSF `device`: the host identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    /// Host identity (certificate SAN).
    pub uid: String,
    /// Host identity, as a name.
    pub hostname: String,
    /// 0 (Unknown).
    pub type_id: u8,
}

/// OCSF evidence: one triggering event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// The event's process with its parent (`parent_process`, one level: the whole chain is
    /// the alert's flat `ancestors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<OcsfProcess>,
    /// The event's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<AlertContainer>,
    /// The event as the agent sent it (`{"event": …}`, its exec ancestry cut to
    /// [`MAX_ANCESTORS`]), or the details of a system alert.
    pub data: Value,
}

/// OCSF `process`. Only the process itself nests a `parent_process`, and that parent has
/// none: a nested chain as deep as the agent claims would overflow the stack of whoever
/// builds, serializes or drops it, and could not be read back (serde_json's recursion limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OcsfProcess {
    /// Process id.
    pub pid: u32,
    /// Unique id of the execution (`exec_id`).
    pub uid: String,
    /// Executable base name.
    pub name: String,
    /// Command line.
    pub cmd_line: String,
    /// The executable file.
    pub file: OcsfFile,
    /// The user.
    pub user: OcsfUser,
    /// Start time, ms since the Unix epoch (0 when unknown).
    pub created_time: u64,
    /// The parent (itself without a parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_process: Option<Box<OcsfProcess>>,
}

/// OCSF `file` (name and path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OcsfFile {
    /// Base name.
    pub name: String,
    /// Full path.
    pub path: String,
}

/// OCSF `user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OcsfUser {
    /// User name.
    pub name: String,
    /// User id, as text.
    pub uid: String,
}

/// The rule, as shown in an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRule {
    /// Rule id.
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Sigma level (`informational` … `critical`).
    pub level: String,
    /// Rule description.
    pub description: String,
    /// Sigma tags (ATT&CK techniques and tactics).
    pub tags: Vec<String>,
}

/// The process of the triggering event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertProcess {
    /// Process id (thread-group id as seen from the host).
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Executable path.
    pub exe: String,
    /// argv joined by spaces.
    pub command_line: String,
    /// User name for `uid`, when the agent knew it.
    pub user: String,
    /// Real user id.
    pub uid: u32,
    /// Working directory.
    pub cwd: String,
    /// Unique id of this process execution on its host.
    pub exec_id: String,
    /// `exec_id` of the parent.
    pub parent_exec_id: String,
    /// Container id, empty on the host.
    pub container_id: String,
    /// Process start time, RFC 3339 (empty when unknown).
    #[serde(default)]
    pub start_time: String,
    /// Controlling terminal (`pts/3`): the process ran in an interactive session. Absent when
    /// it had none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tty: String,
    /// Audit login uid: who logged in, whatever `su` or `sudo` changed since. Absent outside a
    /// login (daemons) and without kernel audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    /// User name of `login_uid`, when the host knows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub login_user: String,
    /// Audit session id of that login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_session_id: Option<u32>,
}

/// One ancestor of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertAncestor {
    /// Process id.
    pub pid: u32,
    /// Executable path.
    pub exe: String,
    /// argv joined by spaces.
    pub command_line: String,
    /// User name.
    pub user: String,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Unique id of that process execution.
    pub exec_id: String,
    /// Start time, RFC 3339 (empty when unknown).
    #[serde(default)]
    pub start_time: String,
}

/// Container and Kubernetes context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertContainer {
    /// Container id.
    pub id: String,
    /// Runtime (docker, containerd, cri-o, podman).
    pub runtime: String,
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Pod name (Kubernetes).
    pub pod_name: String,
    /// Pod namespace (Kubernetes).
    pub pod_namespace: String,
    /// Pod labels (Kubernetes API), by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Kind of the workload that owns the pod: Deployment, DaemonSet, StatefulSet, Job, … (empty
    /// for a bare pod or outside Kubernetes).
    #[serde(default)]
    pub workload_kind: String,
    /// Name of that workload.
    #[serde(default)]
    pub workload_name: String,
    /// The pod's service account.
    #[serde(default)]
    pub service_account: String,
    /// The node the pod runs on.
    #[serde(default)]
    pub node_name: String,
}

/// The triggering event's key and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertEvent {
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Event kind (`exec`, `file`, …).
    pub kind: String,
}

/// An alert Kestrel raises about itself or its agents (agent silent, sink failing, …).
///
/// Raise it with [`AlertPipeline::raise`](crate::alerting::AlertPipeline::raise): it is stored,
/// deduplicated by (`rule_id`, `host`, `group`) like any alert, and delivered to the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemAlert {
    /// Rule id; [`SYSTEM_RULE_PREFIX`] is added when missing (`agent-silent` becomes
    /// `kestrel.system.agent-silent`).
    pub rule_id: String,
    /// Title, e.g. `Agent stopped sending heartbeats`.
    pub title: String,
    /// What happened and what to check, for the responder.
    pub description: String,
    /// Severity.
    pub level: Level,
    /// The host (agent identity) the alert is about; the collector's own alerts use `collector`.
    pub host: String,
    /// Distinguishes subjects on one host (e.g. the sink name); part of the fingerprint.
    pub group: Option<String>,
    /// Details shown as the evidence's `data`.
    pub details: Value,
    /// When it happened, ns since the Unix epoch.
    pub time_unix_ns: u64,
}

impl Alert {
    /// Builds the alert for `rule` matching `event` (whose `host` and `seq` the collector set).
    pub fn new(rule: &Rule, event: &Event, epoch: u64) -> Alert {
        let detection = Detection {
            rule: Arc::new(rule.info(RuleKind::Detection)),
            events: vec![Arc::new(event.clone())],
            group: None,
            session: None,
        };
        Alert::from_detection(&detection, epoch)
    }

    /// Builds the alert for a detection; the last event is the trigger and gives the process.
    pub fn from_detection(detection: &Detection, epoch: u64) -> Alert {
        let rule = &detection.rule;
        let trigger = detection.trigger().cloned().unwrap_or_default();
        let process = alert_process(&trigger);
        let (ancestors, ancestors_omitted) = bounded(ancestors_of(&trigger));
        let container = alert_container(&trigger);
        let first_ns = detection
            .events
            .iter()
            .map(|e| e.time_unix_ns)
            .min()
            .unwrap_or(trigger.time_unix_ns);
        let last_ns = trigger.time_unix_ns.max(first_ns);
        let evidences = detection.events.iter().map(|e| evidence(e)).collect();
        let level = Level::parse(&rule.level).unwrap_or(Level::Medium);
        let fingerprint = fingerprint::of_detection(
            &rule.id,
            &trigger.host,
            detection.group.as_deref(),
            &fingerprint::Subject {
                session: detection
                    .session
                    .as_deref()
                    .unwrap_or(&process.parent_exec_id),
                exe: &process.exe,
                command_line: &process.command_line,
                user: &process.user,
                container_id: container.as_ref().map_or("", |c| c.id.as_str()),
            },
        );
        let mut alert = Alert::skeleton(
            AlertRule {
                id: rule.id.clone(),
                title: rule.title.clone(),
                level: rule.level.clone(),
                description: rule.description.clone(),
                tags: rule.tags.clone(),
            },
            level,
            rule.kind.as_str(),
            &trigger.host,
            fingerprint,
            first_ns,
            last_ns,
        );
        alert.evidences = evidences;
        alert.process = process;
        alert.ancestors = ancestors;
        alert.ancestors_omitted = ancestors_omitted;
        alert.container = container;
        alert.group.clone_from(&detection.group);
        alert.event = Some(AlertEvent {
            epoch,
            seq: trigger.seq,
            kind: event::kind(&trigger).to_owned(),
        });
        alert
    }

    /// Builds the alert record of a system alert.
    pub fn from_system(system: &SystemAlert) -> Alert {
        let rule_id = if system.rule_id.starts_with(SYSTEM_RULE_PREFIX) {
            system.rule_id.clone()
        } else {
            format!("{SYSTEM_RULE_PREFIX}{}", system.rule_id)
        };
        let fingerprint = fingerprint::of_system(&rule_id, &system.host, system.group.as_deref());
        let mut alert = Alert::skeleton(
            AlertRule {
                id: rule_id,
                title: system.title.clone(),
                level: system.level.as_str().to_owned(),
                description: system.description.clone(),
                tags: vec!["kestrel.system".to_owned()],
            },
            system.level,
            "system",
            &system.host,
            fingerprint,
            system.time_unix_ns,
            system.time_unix_ns,
        );
        alert.group.clone_from(&system.group);
        alert.evidences = vec![Evidence {
            process: None,
            container: None,
            data: system.details.clone(),
        }];
        alert
    }

    fn skeleton(
        rule: AlertRule,
        level: Level,
        finding_type: &str,
        host: &str,
        fingerprint: String,
        first_ns: u64,
        last_ns: u64,
    ) -> Alert {
        Alert {
            id: None,
            class_uid: CLASS_UID,
            class_name: "Detection Finding".into(),
            category_uid: 2,
            category_name: "Findings".into(),
            activity_id: 1,
            activity_name: "Create".into(),
            type_uid: CLASS_UID * 100 + 1,
            type_name: "Detection Finding: Create".into(),
            severity_id: level.severity_id(),
            severity: level.caption().into(),
            status_id: 1,
            status: "New".into(),
            time: first_ns / 1_000_000,
            time_dt: rfc3339(first_ns),
            time_unix_ns: first_ns,
            message: rule.title.clone(),
            count: 1,
            finding_info: FindingInfo {
                uid: fingerprint,
                title: rule.title.clone(),
                desc: rule.description.clone(),
                types: vec![finding_type.to_owned()],
                first_seen_time: first_ns / 1_000_000,
                last_seen_time: last_ns / 1_000_000,
                first_seen_time_dt: rfc3339(first_ns),
                last_seen_time_dt: rfc3339(last_ns),
                analytic: Analytic {
                    uid: rule.id.clone(),
                    name: rule.title.clone(),
                    type_id: 1,
                    kind: "Rule".into(),
                },
                attacks: attacks(&rule.tags),
            },
            metadata: Metadata {
                version: OCSF_VERSION.into(),
                uid: new_uid(),
                product: Product {
                    name: "Kestrel".into(),
                    vendor_name: "Kestrel".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
            },
            device: Device {
                uid: host.to_owned(),
                hostname: host.to_owned(),
                type_id: 0,
            },
            evidences: Vec::new(),
            rule,
            host: host.to_owned(),
            process: AlertProcess::default(),
            ancestors: Vec::new(),
            ancestors_omitted: 0,
            container: None,
            event: None,
            group: None,
            delivery_held: None,
        }
    }

    /// The fingerprint (`finding_info.uid`).
    pub fn fingerprint(&self) -> &str {
        &self.finding_info.uid
    }

    /// The unique id of this alert record (`metadata.uid`): the idempotency key of deliveries.
    pub fn uid(&self) -> &str {
        &self.metadata.uid
    }

    /// The severity, from `rule.level` (`medium` when unreadable).
    pub fn level(&self) -> Level {
        Level::parse(&self.rule.level).unwrap_or(Level::Medium)
    }

    /// True for alerts Kestrel raised about itself or its agents.
    pub fn is_system(&self) -> bool {
        self.rule.id.starts_with(SYSTEM_RULE_PREFIX)
    }

    /// Last occurrence, ns since the Unix epoch (ms precision once read back from the store).
    pub fn last_seen_unix_ns(&self) -> u64 {
        self.finding_info.last_seen_time.saturating_mul(1_000_000)
    }

    /// Folds the dedup state the store keeps (count, last seen, acknowledgement) into the record.
    pub fn apply_state(&mut self, count: u64, last_seen_unix_ns: u64, acknowledged: bool) {
        self.count = count;
        self.finding_info.last_seen_time = last_seen_unix_ns / 1_000_000;
        self.finding_info.last_seen_time_dt = rfc3339(last_seen_unix_ns);
        if acknowledged {
            self.status_id = 2;
            self.status = "Acknowledged".into();
        }
    }
}

/// A fresh random 128-bit id, hex.
fn new_uid() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn alert_process(event: &Event) -> AlertProcess {
    let p = event.process.clone().unwrap_or_default();
    AlertProcess {
        pid: p.pid,
        ppid: p.ppid,
        command_line: event::command_line(&p.argv),
        exe: p.exe,
        user: p.user,
        uid: p.uid,
        cwd: p.cwd,
        exec_id: p.exec_id,
        parent_exec_id: p.parent_exec_id,
        container_id: p.container_id,
        start_time: rfc3339_or_empty(p.start_time_unix_ns),
        tty: p.tty,
        login_uid: p.login_uid,
        login_user: p.login_user,
        login_session_id: p.audit_session_id,
    }
}

/// The ancestors an event carries (exec events carry the chain the agent knew), nearest first,
/// every one of them (see [`bounded`]).
pub fn ancestors_of(event: &Event) -> Vec<AlertAncestor> {
    match &event.payload {
        Some(Payload::Exec(exec)) => exec.ancestors.iter().map(alert_ancestor).collect(),
        _ => Vec::new(),
    }
}

/// The first [`MAX_ANCESTORS`] of `ancestors` and how many were left out.
pub fn bounded(mut ancestors: Vec<AlertAncestor>) -> (Vec<AlertAncestor>, u64) {
    let omitted = ancestors.len().saturating_sub(MAX_ANCESTORS);
    ancestors.truncate(MAX_ANCESTORS);
    (ancestors, omitted as u64)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn alert_ancestor(a: &Ancestor) -> AlertAncestor {
    AlertAncestor {
        pid: a.pid,
        exe: a.exe.clone(),
        command_line: event::command_line(&a.argv),
        user: a.user.clone(),
        uid: a.uid,
        exec_id: a.exec_id.clone(),
        start_time: rfc3339_or_empty(a.start_time_unix_ns),
    }
}

fn alert_container(event: &Event) -> Option<AlertContainer> {
    let c = event.container.as_ref()?;
    if c.id.is_empty() {
        return None;
    }
    Some(AlertContainer {
        id: c.id.clone(),
        runtime: c.runtime.clone(),
        name: c.name.clone(),
        image: c.image.clone(),
        pod_name: c.pod_name.clone(),
        pod_namespace: c.pod_namespace.clone(),
        pod_labels: c.pod_labels.clone(),
        workload_kind: c.workload_kind.clone(),
        workload_name: c.workload_name.clone(),
        service_account: c.service_account.clone(),
        node_name: c.node_name.clone(),
    })
}

fn evidence(event: &Event) -> Evidence {
    let process = event.process.as_ref().map(|p| {
        let mut process = ocsf_process(
            p.pid,
            &p.exec_id,
            &p.exe,
            &p.argv,
            &p.user,
            p.uid,
            p.start_time_unix_ns,
        );
        if let Some(Payload::Exec(exec)) = &event.payload {
            process.parent_process = exec.ancestors.first().map(|a| {
                Box::new(ocsf_process(
                    a.pid,
                    &a.exec_id,
                    &a.exe,
                    &a.argv,
                    &a.user,
                    a.uid,
                    a.start_time_unix_ns,
                ))
            });
        }
        process
    });
    let data = match &event.payload {
        Some(Payload::Exec(exec)) if exec.ancestors.len() > MAX_ANCESTORS => {
            let mut cut = event.clone();
            if let Some(Payload::Exec(exec)) = &mut cut.payload {
                exec.ancestors.truncate(MAX_ANCESTORS);
            }
            serde_json::json!({ "event": cut })
        }
        _ => serde_json::json!({ "event": event }),
    };
    Evidence {
        process,
        container: alert_container(event),
        data,
    }
}

fn ocsf_process(
    pid: u32,
    exec_id: &str,
    exe: &str,
    argv: &[String],
    user: &str,
    uid: u32,
    start_ns: u64,
) -> OcsfProcess {
    let name = exe.rsplit('/').next().unwrap_or(exe).to_owned();
    OcsfProcess {
        pid,
        uid: exec_id.to_owned(),
        name: name.clone(),
        cmd_line: event::command_line(argv),
        file: OcsfFile {
            name,
            path: exe.to_owned(),
        },
        user: OcsfUser {
            name: user.to_owned(),
            uid: uid.to_string(),
        },
        created_time: start_ns / 1_000_000,
        parent_process: None,
    }
}

/// ATT&CK tactics by their Sigma tag name (`attack.credential-access`).
const TACTICS: &[(&str, &str, &str)] = &[
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource-development", "TA0042", "Resource Development"),
    ("initial-access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege-escalation", "TA0004", "Privilege Escalation"),
    ("defense-evasion", "TA0005", "Defense Evasion"),
    ("credential-access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral-movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command-and-control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

/// ATT&CK references from Sigma tags: one entry per technique (with the first tactic), or one
/// per tactic when the rule names no technique.
pub fn attacks(tags: &[String]) -> Vec<Attack> {
    let mut tactics = Vec::new();
    let mut techniques = Vec::new();
    for tag in tags {
        let Some(name) = tag
            .to_ascii_lowercase()
            .strip_prefix("attack.")
            .map(str::to_owned)
        else {
            continue;
        };
        if let Some((_, uid, caption)) = TACTICS
            .iter()
            .find(|(n, _, _)| *n == name.replace('_', "-"))
        {
            tactics.push(AttackRef {
                uid: (*uid).to_owned(),
                name: (*caption).to_owned(),
            });
        } else if name.starts_with('t') && name[1..].starts_with(|c: char| c.is_ascii_digit()) {
            techniques.push(name.to_ascii_uppercase());
        }
    }
    let tactic = tactics.first().cloned();
    if techniques.is_empty() {
        return tactics
            .into_iter()
            .map(|t| Attack {
                tactic: Some(t),
                technique: None,
                sub_technique: None,
            })
            .collect();
    }
    techniques
        .into_iter()
        .map(|id| {
            let (technique, sub) = match id.split_once('.') {
                Some((base, _)) => (base.to_owned(), Some(id.clone())),
                None => (id.clone(), None),
            };
            Attack {
                tactic: tactic.clone(),
                technique: Some(AttackRef {
                    uid: technique.clone(),
                    name: technique,
                }),
                sub_technique: sub.map(|s| AttackRef {
                    uid: s.clone(),
                    name: s,
                }),
            }
        })
        .collect()
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_nanos(time).to_string()
}

fn rfc3339_or_empty(unix_ns: u64) -> String {
    if unix_ns == 0 {
        String::new()
    } else {
        rfc3339(unix_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detection of rule `r` on host `h` whose trigger is `cat /etc/shadow` run as pid `pid`.
    fn shadow_read(pid: u32) -> Detection {
        let event = Event {
            host: "h".into(),
            process: Some(kestrel_proto::Process {
                pid,
                exe: "/usr/bin/cat".into(),
                argv: vec!["cat".into(), "/etc/shadow".into()],
                user: "alice".into(),
                parent_exec_id: "exec-of-the-shell".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Detection {
            rule: Arc::new(kestrel_detect::RuleInfo {
                id: "r".into(),
                title: "shadow read".into(),
                description: String::new(),
                level: "high".into(),
                tags: Vec::new(),
                path: "r.yml".into(),
                kind: RuleKind::Detection,
            }),
            events: vec![Arc::new(event)],
            group: None,
            session: Some(Arc::from("exec-of-the-login-shell")),
        }
    }

    #[test]
    fn who_logged_in_is_kept_and_shown_when_it_is_not_the_user() {
        let mut detection = shadow_read(1);
        let process = Arc::make_mut(&mut detection.events[0])
            .process
            .as_mut()
            .unwrap();
        (process.user, process.uid) = ("root".into(), 0);
        (process.login_uid, process.login_user) = (Some(1000), "alice".into());
        process.audit_session_id = Some(12);
        let alert = Alert::from_detection(&detection, 1);
        let record = serde_json::to_value(&alert).unwrap();
        assert_eq!(record["process"]["login_uid"], 1000);
        assert_eq!(record["process"]["login_user"], "alice");
        assert_eq!(record["process"]["login_session_id"], 12);
        assert!(
            render::process_tree(&alert).contains("logged in as alice"),
            "{}",
            render::process_tree(&alert)
        );

        // Outside a login the keys are absent, and the tree says nothing of it.
        let alert = Alert::from_detection(&shadow_read(1), 1);
        let record = serde_json::to_value(&alert).unwrap();
        assert!(record["process"].get("login_uid").is_none(), "{record}");
        assert!(!render::process_tree(&alert).contains("logged in"));
    }

    #[test]
    fn the_same_command_from_another_shell_of_the_same_session_has_the_same_fingerprint() {
        let a = Alert::from_detection(&shadow_read(1), 1);
        let b = Alert::from_detection(&shadow_read(2), 1);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 32);
        let mut other_shell = shadow_read(1);
        Arc::make_mut(&mut other_shell.events[0])
            .process
            .as_mut()
            .unwrap()
            .parent_exec_id = "exec-of-another-short-lived-shell".into();
        assert_eq!(
            a.fingerprint(),
            Alert::from_detection(&other_shell, 1).fingerprint()
        );
        let mut other_session = shadow_read(1);
        other_session.session = Some(Arc::from("exec-of-another-login-shell"));
        assert_ne!(
            a.fingerprint(),
            Alert::from_detection(&other_session, 1).fingerprint()
        );
    }

    #[test]
    fn the_alert_carries_the_pods_kubernetes_metadata_and_renders_it() {
        let mut detection = shadow_read(1);
        Arc::make_mut(&mut detection.events[0]).container = Some(kestrel_proto::Container {
            id: "c".repeat(64),
            runtime: "containerd".into(),
            name: "web".into(),
            image: "registry.example/shop/web:1.4.2".into(),
            pod_name: "web-7d4b9c8f5-x2x9q".into(),
            pod_namespace: "shop".into(),
            pod_uid: "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60".into(),
            pod_labels: [("app".to_owned(), "web".to_owned())].into(),
            workload_kind: "Deployment".into(),
            workload_name: "web".into(),
            service_account: "web-sa".into(),
            node_name: "node-1".into(),
        });
        let alert = Alert::from_detection(&detection, 1);
        let json = serde_json::to_value(&alert).unwrap();
        let container = &json["container"];
        assert_eq!(container["pod_labels"]["app"], "web");
        assert_eq!(container["workload_kind"], "Deployment");
        assert_eq!(container["workload_name"], "web");
        assert_eq!(container["service_account"], "web-sa");
        assert_eq!(container["node_name"], "node-1");
        let text = render::description(&alert);
        assert!(
            text.contains("pod shop/web-7d4b9c8f5-x2x9q of Deployment web, service account web-sa"),
            "{text}"
        );
        // An alert stored before these fields existed still reads.
        let mut old = json.clone();
        for field in [
            "pod_labels",
            "workload_kind",
            "workload_name",
            "service_account",
            "node_name",
        ] {
            old["container"].as_object_mut().unwrap().remove(field);
        }
        let read: Alert = serde_json::from_value(old).unwrap();
        assert_eq!(read.container.unwrap().workload_kind, "");
    }

    #[test]
    fn without_a_known_session_the_parent_execution_tells_findings_apart() {
        let mut a = shadow_read(1);
        a.session = None;
        let mut b = a.clone();
        Arc::make_mut(&mut b.events[0])
            .process
            .as_mut()
            .unwrap()
            .parent_exec_id = "exec-of-another-shell".into();
        assert_ne!(
            Alert::from_detection(&a, 1).fingerprint(),
            Alert::from_detection(&b, 1).fingerprint()
        );
    }

    #[test]
    fn rfc3339_keeps_nanoseconds_in_utc() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn sigma_tags_become_attack_tactic_technique_and_sub_technique() {
        let tags = ["attack.credential-access", "attack.t1003.008", "cve.2021"]
            .map(String::from)
            .to_vec();
        let attacks = attacks(&tags);
        assert_eq!(attacks.len(), 1);
        let a = &attacks[0];
        assert_eq!(a.tactic.as_ref().unwrap().uid, "TA0006");
        assert_eq!(a.technique.as_ref().unwrap().uid, "T1003");
        assert_eq!(a.sub_technique.as_ref().unwrap().uid, "T1003.008");
    }

    #[test]
    fn tactic_only_tags_give_one_attack_per_tactic() {
        let tags = ["attack.persistence", "attack.execution"]
            .map(String::from)
            .to_vec();
        let uids: Vec<_> = attacks(&tags)
            .into_iter()
            .map(|a| a.tactic.unwrap().uid)
            .collect();
        assert_eq!(uids, ["TA0003", "TA0002"]);
    }

    #[test]
    fn levels_order_and_map_to_ocsf_severity() {
        assert!(Level::High > Level::Medium);
        assert_eq!(Level::parse("Critical"), Some(Level::Critical));
        assert_eq!(Level::Informational.severity_id(), 1);
        assert_eq!(Level::Critical.severity_id(), 5);
        assert_eq!(Level::parse("severe"), None);
    }
}
