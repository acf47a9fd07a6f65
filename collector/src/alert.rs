//! Alert records (one rule match on one event) and the JSON-lines alert output.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use kestrel_proto::event::Payload;
use kestrel_proto::Event;
use serde::{Deserialize, Serialize};

use crate::detect::Rule;
use crate::event;

/// One alert: a rule that matched one event, with the process context an analyst needs.
///
/// Serialized as one JSON object per line in the alerts JSONL output and in the `alerts.json`
/// column of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Store row id, assigned when the alert is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Event time, RFC 3339 (UTC, nanoseconds).
    pub time: String,
    /// Event time, nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// The rule that matched.
    pub rule: AlertRule,
    /// Host identity from the agent's certificate.
    pub host: String,
    /// The process the event belongs to.
    pub process: AlertProcess,
    /// Its ancestors, nearest first (from the exec payload; empty for other kinds).
    pub ancestors: Vec<AlertAncestor>,
    /// Which event triggered the alert.
    pub event: AlertEvent,
}

/// The matching rule, as shown in an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// One ancestor of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAncestor {
    /// Process id.
    pub pid: u32,
    /// Executable path.
    pub exe: String,
    /// argv joined by spaces.
    pub command_line: String,
    /// User name.
    pub user: String,
    /// Unique id of that process execution.
    pub exec_id: String,
}

/// The triggering event's key and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Event kind (`exec`, `fork`, `exit`).
    pub kind: String,
}

impl Alert {
    /// Builds the alert for `rule` matching `event` (whose `host` and `seq` the collector set).
    pub fn new(rule: &Rule, event: &Event, epoch: u64) -> Alert {
        let process = event.process.clone().unwrap_or_default();
        let ancestors = match &event.payload {
            Some(Payload::Exec(exec)) => exec
                .ancestors
                .iter()
                .map(|a| AlertAncestor {
                    pid: a.pid,
                    exe: a.exe.clone(),
                    command_line: event::command_line(&a.argv),
                    user: a.user.clone(),
                    exec_id: a.exec_id.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Alert {
            id: None,
            time: rfc3339(event.time_unix_ns),
            time_unix_ns: event.time_unix_ns,
            rule: AlertRule {
                id: rule.id.clone(),
                title: rule.title.clone(),
                level: rule.level.clone(),
                description: rule.description.clone(),
                tags: rule.tags.clone(),
            },
            host: event.host.clone(),
            process: AlertProcess {
                pid: process.pid,
                ppid: process.ppid,
                command_line: event::command_line(&process.argv),
                exe: process.exe,
                user: process.user,
                uid: process.uid,
                cwd: process.cwd,
                exec_id: process.exec_id,
                parent_exec_id: process.parent_exec_id,
                container_id: process.container_id,
            },
            ancestors,
            event: AlertEvent {
                epoch,
                seq: event.seq,
                kind: event::kind(event).to_owned(),
            },
        }
    }
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// The alerts JSONL file could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("alerts JSONL {}: {source}", path.display())]
pub struct AlertLogError {
    /// The output path (`-` for stdout).
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// Appends alerts as JSON lines (one object per line) to a file, or stdout for `-`.
pub struct AlertLog {
    path: PathBuf,
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
}

impl AlertLog {
    /// Opens `path` for appending (created when missing; `-` is stdout).
    pub fn open(path: &Path) -> Result<AlertLog, AlertLogError> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            let file: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| AlertLogError {
                    path: path.to_path_buf(),
                    source,
                })?;
            Box::new(file)
        };
        Ok(AlertLog {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(out)),
        })
    }

    /// Writes each alert as one line and flushes (blocking I/O: call from a blocking context).
    pub fn append(&self, alerts: &[Alert]) -> Result<(), AlertLogError> {
        let err = |source| AlertLogError {
            path: self.path.clone(),
            source,
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for alert in alerts {
            serde_json::to_writer(&mut *out, alert).map_err(|e| err(e.into()))?;
            out.write_all(b"\n").map_err(err)?;
        }
        out.flush().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_nanoseconds_in_utc() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
