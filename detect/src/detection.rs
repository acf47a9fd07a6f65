//! What the detector reports: a rule (detection or correlation) that fired, with its evidence.

use std::path::PathBuf;
use std::sync::Arc;

use kestrel_proto::Event;
use serde::{Deserialize, Serialize};

/// Whether a rule matches single events or correlates earlier matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A Sigma detection rule: fires on one event.
    Detection,
    /// A Sigma correlation rule (event_count, value_count, temporal, temporal_ordered): fires on
    /// a group of events inside its timespan.
    Correlation,
}

impl RuleKind {
    /// `detection` or `correlation`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Detection => "detection",
            RuleKind::Correlation => "correlation",
        }
    }
}

/// The identity and metadata of a rule, as alerts show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Rule id (the Sigma `id`, or the file stem when absent).
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Rule description (empty when absent).
    pub description: String,
    /// Sigma level (`informational`, `low`, `medium`, `high`, `critical`); `medium` when absent.
    pub level: String,
    /// Sigma tags, e.g. `attack.t1003.008`.
    pub tags: Vec<String>,
    /// The file the rule was loaded from.
    pub path: PathBuf,
    /// Detection or correlation rule.
    pub kind: RuleKind,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The rule that fired (shared by all its detections).
    pub rule: Arc<RuleInfo>,
    /// Evidence: the triggering event for a detection rule; for a correlation rule the events
    /// that made it fire, oldest first (bounded, the last one is the event that completed it).
    /// Shared with the caller and with correlation state, never copied.
    pub events: Vec<Arc<Event>>,
    /// For a correlation rule, its group key (`Field=value` pairs of its `group-by`, joined by
    /// `, `); `None` for detection rules.
    pub group: Option<String>,
    /// The session of the triggering event's process (its `SessionExecId`: the exec id of the
    /// process just below the nearest session boundary), when the detector knows it.
    pub session: Option<Arc<str>>,
}

impl Detection {
    /// The event that made the rule fire (the last piece of evidence).
    pub fn trigger(&self) -> Option<&Event> {
        self.events.last().map(|e| &**e)
    }
}
