//! `kestrel-collector alerts …`: read and manage the alerts of a data directory (a running
//! collector may share it: SQLite WAL lets the CLI read and write next to it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::alert::render;
use crate::alert::rfc3339;
use crate::alerting::suppress::Matcher;
use crate::cli::terminal_safe;
use crate::clock::now_unix_ns;
use crate::store::{AlertAck, SinkBacklog, Store, StoreError};
use crate::text::{escape, escape_lines};

/// `kestrel-collector alerts`.
#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AlertsCommand,
}

/// The data directory option every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

/// `alerts` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AlertsCommand {
    /// Newest alerts first, with count, status and delivery backlog.
    List {
        #[command(flatten)]
        data: DataDir,
        /// How many alerts.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only alerts not acknowledged yet.
        #[arg(long)]
        open: bool,
        /// One JSON alert record per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One alert: rule, host, ATT&CK, the process tree and the state of each delivery.
    Show {
        /// Alert id (from `alerts list`).
        id: i64,
        #[command(flatten)]
        data: DataDir,
        /// The alert record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Marks an alert acknowledged; later occurrences raise a new alert.
    Ack {
        /// Alert id.
        id: i64,
        #[command(flatten)]
        data: DataDir,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Moves dead-lettered deliveries back into the outbox; the running collector sends them.
    Replay {
        #[command(flatten)]
        data: DataDir,
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// Only this alert's.
        #[arg(long)]
        alert: Option<i64>,
    },
    /// Prints the JSON Schema of the alert record (what sinks receive; the fields a
    /// suppression's `--match` may name).
    Schema,
    /// Manage suppressions (rule id plus field matchers plus expiry).
    Suppress {
        /// What to do.
        #[command(subcommand)]
        command: SuppressCommand,
    },
}

/// `alerts suppress` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SuppressCommand {
    /// Adds a suppression: alerts of RULE whose fields match every --match are held back.
    Add {
        #[command(flatten)]
        data: DataDir,
        /// Rule id, or `*` for every rule. It must be a rule of `--rules DIR` (or a
        /// `kestrel.system.*` rule); without `--rules`, one that has raised an alert here.
        #[arg(long)]
        rule: String,
        /// The collector's rules directory, to check `--rule` against.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// `FIELD=GLOB` on the alert record (`process.exe=/usr/bin/backup-*`,
        /// `host=spiffe://kestrel.local/node/build-*`, `ancestors.exe=/usr/sbin/cron`).
        #[arg(long = "match", value_name = "FIELD=GLOB")]
        matchers: Vec<String>,
        /// How long it lasts (`8h`, `14d`); default: until removed.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why (ticket, who asked); shown by `suppress list`.
        #[arg(long)]
        reason: String,
    },
    /// Every suppression with its hits and expiry.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Removes a suppression.
    Remove {
        /// Suppression id.
        id: i64,
        #[command(flatten)]
        data: DataDir,
    },
}

/// An `alerts` command failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsCliError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No alert with that id.
    #[error("no alert with id {0} in {1}")]
    NoAlert(i64, PathBuf),
    /// No suppression with that id.
    #[error("no suppression with id {0} in {1}")]
    NoSuppression(i64, PathBuf),
    /// An argument is invalid.
    #[error("{0}")]
    Usage(String),
}

/// Runs an `alerts` command, printing to stdout.
pub fn run(args: AlertsArgs) -> Result<(), AlertsCliError> {
    let out = execute(&args.command)?;
    let json = matches!(
        args.command,
        AlertsCommand::List { json: true, .. }
            | AlertsCommand::Show { json: true, .. }
            | AlertsCommand::Schema
    );
    print!("{}", terminal_safe(&out, json));
    Ok(())
}

/// Runs an `alerts` command and returns what it prints.
pub fn execute(command: &AlertsCommand) -> Result<String, AlertsCliError> {
    match command {
        AlertsCommand::List {
            data,
            limit,
            open,
            json,
        } => list(&data.data, *limit, *open, *json),
        AlertsCommand::Show { id, data, json } => show(&data.data, *id, *json),
        AlertsCommand::Ack { id, data, by } => ack(&data.data, *id, by.clone()),
        AlertsCommand::Replay { data, sink, alert } => {
            let moved =
                open(&data.data)?.replay_dead_letters(sink.as_deref(), *alert, now_unix_ns())?;
            Ok(format!(
                "{moved} dead-lettered deliveries queued again; the running collector delivers them\n"
            ))
        }
        AlertsCommand::Schema => Ok(format!("{:#}\n", crate::alert::schema::alert_schema())),
        AlertsCommand::Suppress { command } => suppress_command(command),
    }
}

fn open(dir: &Path) -> Result<Store, AlertsCliError> {
    if !dir.join(crate::store::DB_FILE).exists() {
        return Err(AlertsCliError::Store(StoreError::DataDir {
            dir: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {} here", crate::store::DB_FILE),
            ),
        }));
    }
    Ok(Store::open(dir)?)
}

fn list(dir: &Path, limit: usize, only_open: bool, json: bool) -> Result<String, AlertsCliError> {
    let store = open(dir)?;
    let ids = store.alert_ids(only_open, limit)?;
    let mut out = String::new();
    if !json {
        out.push_str(&format!(
            "{:>5}  {:<20}  {:<13}  {:>5}  {:<12}  {:<28}  {}\n",
            "ID", "FIRST SEEN", "LEVEL", "COUNT", "STATUS", "HOST", "RULE / PROCESS"
        ));
    }
    for id in ids {
        let Some(alert) = store.alert(id)? else {
            continue;
        };
        if json {
            out.push_str(&serde_json::to_string(&alert).map_err(StoreError::from)?);
            out.push('\n');
            continue;
        }
        let seen = alert
            .finding_info
            .first_seen_time_dt
            .get(..19)
            .unwrap_or("");
        let subject = if alert.process.command_line.is_empty() {
            alert.group.clone().unwrap_or_default()
        } else {
            alert.process.command_line.clone()
        };
        // A held alert was stored but not sent: the list must not pass it off as delivered.
        let status = match &alert.delivery_held {
            Some(_) => format!("{} (held)", alert.status),
            None => alert.status.clone(),
        };
        out.push_str(&format!(
            "{:>5}  {:<20}  {:<13}  {:>5}  {:<12}  {:<28}  {} — {}\n",
            id,
            escape(seen),
            escape(&alert.rule.level),
            alert.count,
            escape(&status),
            truncate_start(&escape(&alert.host), 28),
            escape(&alert.rule.title),
            render::truncate(&escape(&subject), 80)
        ));
    }
    if json {
        return Ok(out);
    }
    for SinkBacklog {
        sink,
        pending,
        dead,
    } in store.backlog()?
    {
        let sink = escape(&sink);
        out.push_str(&format!(
            "sink {sink}: {pending} pending, {dead} dead-lettered{}\n",
            if dead > 0 {
                " (alerts replay resends them)"
            } else {
                ""
            }
        ));
    }
    for (rule, count) in store.rate_limited_totals()? {
        out.push_str(&format!(
            "rule {}: {count} alerts held back by the rate limit\n",
            escape(&rule)
        ));
    }
    Ok(out)
}

/// Keeps the end of `text` (a host identity's node name is at its end), marking the cut.
fn truncate_start(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - max + 1).collect();
    format!("…{tail}")
}

fn show(dir: &Path, id: i64, json: bool) -> Result<String, AlertsCliError> {
    let store = open(dir)?;
    let alert = store.alert(id)?;
    let deliveries = store.deliveries(id)?;
    let acked = store.alert_ack(id)?;
    let alert = alert.ok_or_else(|| AlertsCliError::NoAlert(id, dir.to_path_buf()))?;
    if json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&alert).map_err(StoreError::from)?
        ));
    }
    let mut out = format!(
        "Alert {id}: {} [{}]\n",
        escape(&alert.rule.title),
        escape(&alert.rule.level)
    );
    let mut line = |k: &str, v: String| {
        if !v.is_empty() {
            out.push_str(&format!("  {k:<12} {}\n", escape(&v)));
        }
    };
    line("rule", alert.rule.id.clone());
    line("host", alert.host.clone());
    if let Some(c) = &alert.container {
        line(
            "container",
            format!(
                "{} ({}) image {} pod {}/{}",
                c.name, c.id, c.image, c.pod_namespace, c.pod_name
            ),
        );
        if !c.workload_kind.is_empty() {
            line(
                "workload",
                format!("{} {}", c.workload_kind, c.workload_name),
            );
        }
        line("svc account", c.service_account.clone());
        line("node", c.node_name.clone());
        if !c.pod_labels.is_empty() {
            let labels: Vec<String> = c
                .pod_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line("pod labels", labels.join(" "));
        }
    }
    line("first seen", alert.finding_info.first_seen_time_dt.clone());
    line("last seen", alert.finding_info.last_seen_time_dt.clone());
    line("count", alert.count.to_string());
    let status = match acked {
        Some(AlertAck {
            acked_unix_ns: Some(at),
            acked_by,
        }) => format!(
            "acknowledged {} by {}",
            rfc3339(at),
            acked_by.unwrap_or_default()
        ),
        _ => alert.status.clone(),
    };
    line("status", status);
    if let Some(held) = &alert.delivery_held {
        line("not sent", held.clone());
    }
    line("att&ck", render::attack_summary(&alert));
    line("fingerprint", alert.fingerprint().to_owned());
    line("alert uid", alert.uid().to_owned());
    if let Some(group) = &alert.group {
        line("group", group.clone());
    }
    if !alert.rule.description.trim().is_empty() {
        out.push_str(&format!(
            "\n  {}\n",
            escape_lines(alert.rule.description.trim())
        ));
    }
    let tree = render::process_tree(&alert);
    if !tree.is_empty() {
        out.push_str("\nProcess tree:\n");
        for l in tree.lines() {
            out.push_str(&format!("  {}\n", escape(l)));
        }
    }
    if alert.evidences.len() > 1 {
        out.push_str(&format!("\nEvidence: {} events\n", alert.evidences.len()));
    }
    out.push_str("\nDeliveries:\n");
    if deliveries.is_empty() {
        out.push_str("  none (no sink takes this alert)\n");
    }
    for d in deliveries {
        let when = rfc3339(d.at_unix_ns);
        let what = match d.state.as_str() {
            "delivered" => format!("delivered {when}"),
            "pending" => format!("pending, next attempt {when}"),
            _ => format!("dead-lettered {when}"),
        };
        out.push_str(&format!(
            "  {:<16} {what} after {} attempt(s){}\n",
            escape(&d.sink),
            d.attempts,
            d.last_error
                .map(|e| format!("; last error: {}", escape(&e)))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

fn ack(dir: &Path, id: i64, by: Option<String>) -> Result<String, AlertsCliError> {
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    if !open(dir)?.acknowledge(id, now_unix_ns(), &by)? {
        return Err(AlertsCliError::NoAlert(id, dir.to_path_buf()));
    }
    Ok(format!("alert {id} acknowledged by {by}\n"))
}

/// Why `rule` cannot be the rule of a suppression (None when it can): a typo in a rule id
/// would make a suppression that holds back nothing.
fn unknown_rule(
    store: &Store,
    rule: &str,
    rules_dir: Option<&Path>,
) -> Result<Option<String>, AlertsCliError> {
    if rule.is_empty() || rule == "*" || crate::alert::SYSTEM_RULES.contains(&rule) {
        return Ok(None);
    }
    match rules_dir {
        Some(dir) => {
            let (set, _) = kestrel_detect::RuleSet::load_dir(dir)
                .map_err(|e| AlertsCliError::Usage(format!("--rules: {e}")))?;
            let mut known = set
                .rules()
                .iter()
                .map(|r| r.id.as_str())
                .chain(set.correlations().iter().map(|c| c.info.id.as_str()));
            Ok((!known.any(|id| id == rule))
                .then(|| format!("--rule {rule:?}: no rule of {} has that id", dir.display())))
        }
        None => Ok((!store.has_alerts_of_rule(rule)?).then(|| {
            format!(
                "--rule {rule:?}: no alert of that rule is stored here; pass --rules DIR \
                 (the collector's rules) to suppress a rule that has not fired yet"
            )
        })),
    }
}

fn suppress_command(command: &SuppressCommand) -> Result<String, AlertsCliError> {
    match command {
        SuppressCommand::Add {
            data,
            rule,
            rules,
            matchers,
            duration,
            reason,
        } => {
            let mut problems = Vec::new();
            let parsed: Vec<Matcher> = matchers
                .iter()
                .filter_map(|m| Matcher::parse(m).map_err(|e| problems.push(e)).ok())
                .collect();
            for matcher in &parsed {
                if !crate::alert::schema::has_field(&matcher.field) {
                    problems.push(format!(
                        "--match {}=…: the alert record has no field {:?} (`alerts schema` \
                         lists them; e.g. process.exe, process.command_line, host)",
                        matcher.field, matcher.field
                    ));
                }
            }
            let store = open(&data.data)?;
            if let Some(problem) = unknown_rule(&store, rule, rules.as_deref())? {
                problems.push(problem);
            }
            let expires = match duration {
                None => None,
                Some(text) => match humantime::parse_duration(text) {
                    Ok(d) if d > Duration::ZERO => {
                        Some(now_unix_ns().saturating_add(d.as_nanos() as u64))
                    }
                    _ => {
                        problems.push(format!(
                            "--for {text:?}: not a positive duration (e.g. 8h, 14d)"
                        ));
                        None
                    }
                },
            };
            if rule.is_empty() {
                problems.push("--rule must not be empty (use * for every rule)".into());
            }
            if reason.trim().is_empty() {
                problems.push("--reason must say why".into());
            }
            if !problems.is_empty() {
                return Err(AlertsCliError::Usage(problems.join("; ")));
            }
            let id = store.add_suppression(rule, &parsed, reason, now_unix_ns(), expires)?;
            Ok(format!(
                "suppression {id} added{}\n",
                expires
                    .map(|e| format!(", until {}", rfc3339(e)))
                    .unwrap_or_default()
            ))
        }
        SuppressCommand::List { data } => {
            let all = open(&data.data)?.suppressions()?;
            let now = now_unix_ns();
            let mut out = String::new();
            for s in all {
                let matchers = s
                    .matchers
                    .iter()
                    .map(|m| format!("{}={}", m.field, m.pattern))
                    .collect::<Vec<_>>()
                    .join(" ");
                let expiry = match s.expires_unix_ns {
                    None => "never expires".to_owned(),
                    Some(e) if e <= now => format!("expired {}", rfc3339(e)),
                    Some(e) => format!("until {}", rfc3339(e)),
                };
                out.push_str(&format!(
                    "{:>4}  rule {}  {}  {expiry}  hits {}  — {}\n",
                    s.id,
                    escape(&s.rule_id),
                    if matchers.is_empty() {
                        "(all alerts)".into()
                    } else {
                        escape(&matchers).into_owned()
                    },
                    s.hits,
                    escape(&s.reason)
                ));
            }
            if out.is_empty() {
                out.push_str("no suppressions\n");
            }
            Ok(out)
        }
        SuppressCommand::Remove { id, data } => {
            if open(&data.data)?.remove_suppression(*id)? {
                Ok(format!("suppression {id} removed\n"))
            } else {
                Err(AlertsCliError::NoSuppression(*id, data.data.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_start;

    #[test]
    fn long_host_identities_keep_their_node_name() {
        assert_eq!(
            truncate_start("spiffe://kestrel.local/node/web-1", 12),
            "…/node/web-1"
        );
        assert_eq!(truncate_start("node-1", 12), "node-1");
    }
}
