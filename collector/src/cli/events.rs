//! `kestrel-collector events …`: investigate what the agents reported, straight from the store
//! of a data directory (a running collector may share it; SQLite WAL lets both work at once).
//!
//! - `events search` lists stored events, filtered by host, image, command line, kind and time.
//! - `events gaps` lists what agents reported lost (shed from a full spool, damaged spool
//!   records, kernel ring buffer drops), for loss accounting.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::text::escape;

use crate::alert::rfc3339;
use crate::cli::terminal_safe;
use crate::store::{Access, EventFilter, GapRow, Store, StoreError, DB_FILE};

/// `kestrel-collector events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// `events` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Stored events, oldest first.
    Search(SearchArgs),
    /// Events agents reported lost (Gap records), oldest first.
    Gaps(GapsArgs),
}

/// Filters of `events search`; every given filter must match.
#[derive(Debug, Clone, Default, Args)]
pub struct SearchArgs {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Agent identity, or a glob over it (`spiffe://kestrel.local/node/web-*`).
    #[arg(long, value_name = "ID")]
    pub host: Option<String>,
    /// Executable path glob (`*/curl`, `/tmp/*`); `*`, `?` and `[...]`, case-sensitive.
    #[arg(long, value_name = "GLOB")]
    pub image: Option<String>,
    /// Command line glob (argv joined by spaces), e.g. `*--marker-42*`.
    #[arg(long, value_name = "GLOB")]
    pub command_line: Option<String>,
    /// Event kind: exec, fork, exit, file, network, credential, …
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only events at or after T: an RFC 3339 time (`2026-01-01T10:00:00Z`) or a duration
    /// ago (`15m`, `2h`).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only events before T (same forms as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Most events to list; 0 for all.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Print only the number of matching events.
    #[arg(long, conflicts_with = "json")]
    pub count: bool,
    /// One JSON object per line: the stored event with its `epoch`.
    #[arg(long)]
    pub json: bool,
}

/// Options of `events gaps`.
#[derive(Debug, Clone, Default, Args)]
pub struct GapsArgs {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Agent identity, or a glob over it.
    #[arg(long, value_name = "ID")]
    pub host: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// An `events` command failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsCliError {
    /// There is no store in the data directory.
    #[error("no Kestrel store in {}: {} does not exist", dir.display(), dir.join(DB_FILE).display())]
    NoStore {
        /// The data directory.
        dir: PathBuf,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A time given to --since or --until is neither an RFC 3339 time nor a duration.
    #[error("--{flag} {value}: not an RFC 3339 time (2026-01-01T10:00:00Z) or a duration (15m)")]
    Time {
        /// Which option.
        flag: &'static str,
        /// What was given.
        value: String,
    },
}

/// Runs an `events` command, printing to stdout.
pub fn run(args: EventsArgs) -> Result<(), EventsCliError> {
    let (out, json) = match &args.command {
        EventsCommand::Search(search) => (self::search(search)?, search.json),
        EventsCommand::Gaps(gaps) => (self::gaps(gaps)?, gaps.json),
    };
    print!("{}", terminal_safe(&out, json));
    Ok(())
}

/// A time filter as nanoseconds since the Unix epoch.
pub fn parse_time(flag: &'static str, value: &str, now: SystemTime) -> Result<u64, EventsCliError> {
    let err = || EventsCliError::Time {
        flag,
        value: value.to_owned(),
    };
    let time = match humantime::parse_rfc3339_weak(value) {
        Ok(time) => time,
        Err(_) => {
            let ago: Duration = humantime::parse_duration(value).map_err(|_| err())?;
            now.checked_sub(ago).ok_or_else(err)?
        }
    };
    Ok(crate::clock::unix_ns(time))
}

/// Opens the store of data directory `dir` for a command-line tool (a running collector may
/// share it).
pub(crate) fn open(dir: &Path) -> Result<Store, EventsCliError> {
    if !dir.join(DB_FILE).exists() {
        return Err(EventsCliError::NoStore {
            dir: dir.to_owned(),
        });
    }
    Ok(Store::open_existing(dir, Access::ReadWrite)?)
}

/// The store filter for `args`.
fn filter(args: &SearchArgs, now: SystemTime) -> Result<EventFilter, EventsCliError> {
    let time = |flag, value: &Option<String>| {
        value
            .as_deref()
            .map(|value| parse_time(flag, value, now))
            .transpose()
    };
    Ok(EventFilter {
        host: args.host.clone(),
        image: args.image.clone(),
        command_line: args.command_line.clone(),
        kind: args.kind.clone(),
        since_unix_ns: time("since", &args.since)?,
        until_unix_ns: time("until", &args.until)?,
    })
}

/// Runs `events search` and returns what it prints.
pub fn search(args: &SearchArgs) -> Result<String, EventsCliError> {
    let store = open(&args.data)?;
    let filter = filter(args, SystemTime::now())?;
    if args.count {
        let count = store.count_matching_events(&filter)?;
        return Ok(format!("{count}\n"));
    }
    let mut out = String::new();
    if !args.json {
        out.push_str("TIME                            HOST  KIND  PID  IMAGE  COMMAND LINE\n");
    }
    store.for_each_matching_event(&filter, args.limit, |epoch, json| {
        let mut event: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        if args.json {
            if let Value::Object(map) = &mut event {
                map.insert("epoch".into(), epoch.into());
            }
            let _ = writeln!(out, "{event}");
        } else {
            let _ = writeln!(out, "{}", line(&event));
        }
    })?;
    Ok(out)
}

/// One event as a table line.
fn line(event: &Value) -> String {
    let process = &event["process"];
    let kind = event["payload"]
        .as_object()
        .and_then(|p| p.keys().next().cloned())
        .unwrap_or_else(|| "unknown".into());
    let argv: Vec<&str> = process["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{}  {}  {}  {}  {}  {}",
        rfc3339(event["time_unix_ns"].as_u64().unwrap_or(0)),
        escape(event["host"].as_str().unwrap_or("")),
        escape(&kind),
        process["pid"].as_u64().unwrap_or(0),
        escape(process["exe"].as_str().unwrap_or("")),
        escape(&argv.join(" "))
    )
}

/// Runs `events gaps` and returns what it prints.
pub fn gaps(args: &GapsArgs) -> Result<String, EventsCliError> {
    let host = args.host.clone().unwrap_or_else(|| "*".into());
    let rows = open(&args.data)?.gaps(&host)?.into_iter().map(gap_json);
    let mut out = String::new();
    if !args.json {
        out.push_str("HOST  REASON  KIND  COUNT  SEQ  FROM  TO\n");
    }
    for gap in rows {
        if args.json {
            let _ = writeln!(out, "{gap}");
        } else {
            let _ = writeln!(
                out,
                "{}  {}  {}  {}  {}-{}  {}  {}",
                escape(gap["host"].as_str().unwrap_or("")),
                escape(gap["reason"].as_str().unwrap_or("")),
                escape(gap["kind"].as_str().unwrap_or("")),
                gap["count"],
                gap["first_seq"],
                gap["last_seq"],
                rfc3339(gap["first_time_unix_ns"].as_u64().unwrap_or(0)),
                rfc3339(gap["last_time_unix_ns"].as_u64().unwrap_or(0)),
            );
        }
    }
    Ok(out)
}

/// A gap as `events gaps --json` prints it.
fn gap_json(gap: GapRow) -> Value {
    serde_json::json!({
        "host": gap.identity,
        "epoch": gap.epoch,
        "reason": gap.reason,
        "kind": gap.kind,
        "cpu": gap.cpu,
        "count": gap.count,
        "first_seq": gap.first_seq,
        "last_seq": gap.last_seq,
        "first_time_unix_ns": gap.first_time_unix_ns,
        "last_time_unix_ns": gap.last_time_unix_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("since", "15m", now).unwrap(),
            (1_000_000 - 900) * 1_000_000_000
        );
        assert_eq!(
            parse_time("since", "2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000 * 1_000_000_000
        );
        let err = parse_time("since", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--since yesterday"), "{err}");
    }

    #[test]
    fn missing_store_is_an_error_naming_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let args = SearchArgs {
            data: dir.path().to_owned(),
            ..SearchArgs::default()
        };
        let err = search(&args).unwrap_err().to_string();
        assert!(err.contains("kestrel.db"), "{err}");
    }
}
