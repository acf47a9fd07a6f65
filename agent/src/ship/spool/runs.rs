//! The agent's runs, as the spool remembers them (`DIR/run`): when the current run started and,
//! once it ends cleanly, when it stopped. While no agent runs nothing is observed, and after a
//! crash (`kill -9`, out of memory, power loss) the events the agent held in memory, read from
//! the kernel but not yet spooled, are gone. How many is not known; when is. So the next run
//! reports the window as a Gap of kind `all` with count 0 (unknown): reason `agent_stopped`
//! from a clean stop to the new start, `agent_crashed` from the last event spooled (or the
//! crashed run's start) to the new start.

use std::path::Path;

use kestrel_proto::Gap;
use serde::{Deserialize, Serialize};

use super::{state, SpoolError};

/// File name of the run record inside the spool directory.
pub const RUN_FILE: &str = "run";

/// Gap reason of the window between a clean stop and the next start.
pub const AGENT_STOPPED: &str = "agent_stopped";
/// Gap reason of the window between the last event a crashed run spooled and the next start.
pub const AGENT_CRASHED: &str = "agent_crashed";

/// One run of the agent on this spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    started_unix_ns: u64,
    stopped_unix_ns: Option<u64>,
}

/// Records that a run starts at `now_unix_ns` and returns the Gap for the time since the
/// previous run (none on a spool's first run). `last_spooled_unix_ns` is the time of the last
/// record the previous run wrote, when the spool still holds it. An unreadable run record is
/// logged and treated as a crash of unknown time.
pub fn begin(
    dir: &Path,
    last_spooled_unix_ns: Option<u64>,
    now_unix_ns: u64,
) -> Result<Option<Gap>, SpoolError> {
    let path = dir.join(RUN_FILE);
    let previous = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Run>(&bytes) {
            Ok(run) => Some(run),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "run record unreadable: the previous run is taken to have crashed");
                Some(Run {
                    started_unix_ns: 0,
                    stopped_unix_ns: None,
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(SpoolError::Io { path, source }),
    };
    let gap = previous.map(|run| {
        let (reason, from) = match run.stopped_unix_ns {
            Some(stopped) => (AGENT_STOPPED, stopped),
            None => (
                AGENT_CRASHED,
                last_spooled_unix_ns.unwrap_or(0).max(run.started_unix_ns),
            ),
        };
        Gap {
            kind: "all".to_owned(),
            count: 0,
            first_time_unix_ns: from,
            last_time_unix_ns: now_unix_ns.max(from),
            reason: reason.to_owned(),
            ..Gap::default()
        }
    });
    write(
        dir,
        &Run {
            started_unix_ns: now_unix_ns,
            stopped_unix_ns: None,
        },
    )?;
    Ok(gap)
}

/// Records that the current run, started at `started_unix_ns`, stopped cleanly at
/// `now_unix_ns` (after its last record was made durable).
pub fn end(dir: &Path, started_unix_ns: u64, now_unix_ns: u64) -> Result<(), SpoolError> {
    write(
        dir,
        &Run {
            started_unix_ns,
            stopped_unix_ns: Some(now_unix_ns),
        },
    )
}

fn write(dir: &Path, run: &Run) -> Result<(), SpoolError> {
    let text = serde_json::to_string(run).expect("run record serializes");
    state::replace_file(dir, RUN_FILE, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_reports_nothing_then_a_clean_stop_reports_the_time_stopped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(begin(dir.path(), None, 100).unwrap(), None);
        end(dir.path(), 100, 200).unwrap();
        let gap = begin(dir.path(), Some(190), 300).unwrap().unwrap();
        assert_eq!(
            (gap.reason.as_str(), gap.kind.as_str(), gap.count),
            (AGENT_STOPPED, "all", 0)
        );
        assert_eq!((gap.first_time_unix_ns, gap.last_time_unix_ns), (200, 300));
    }

    #[test]
    fn a_run_that_never_stopped_crashed_after_its_last_spooled_event() {
        let dir = tempfile::tempdir().unwrap();
        begin(dir.path(), None, 100).unwrap();
        let gap = begin(dir.path(), Some(150), 400).unwrap().unwrap();
        assert_eq!(gap.reason, AGENT_CRASHED);
        assert_eq!((gap.first_time_unix_ns, gap.last_time_unix_ns), (150, 400));
        // Nothing spooled by the crashed run: the window starts at its start.
        let gap = begin(dir.path(), Some(50), 500).unwrap().unwrap();
        assert_eq!((gap.first_time_unix_ns, gap.last_time_unix_ns), (400, 500));
    }

    #[test]
    fn an_unreadable_run_record_is_taken_as_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RUN_FILE), "{torn").unwrap();
        let gap = begin(dir.path(), Some(70), 90).unwrap().unwrap();
        assert_eq!(gap.reason, AGENT_CRASHED);
        assert_eq!((gap.first_time_unix_ns, gap.last_time_unix_ns), (70, 90));
    }
}
