//! The collector's configuration file (`serve --config F`, TOML).
//!
//! Every key is optional and has a default; unknown keys are errors. [`load`] reads, parses and
//! validates in one go and reports every problem it finds at once, each naming the key:
//!
//! ```toml
//! [alerts]
//! dedup_window = "10m"        # repeats of a fingerprint within this fold into one alert
//! rate_limit_per_rule = 100   # new alerts per rule per window; the rest are counted
//! rate_limit_window = "1m"
//!
//! [delivery]
//! initial_backoff = "1s"      # first retry delay; doubles per attempt, with jitter
//! max_backoff = "5m"
//! max_age = "24h"             # undelivered for longer: dead letter
//! timeout = "10s"             # per HTTP request
//! poll_interval = "1s"        # how often the outbox is checked for replayed/due rows
//! meta_alert_after = 5        # consecutive failures of a sink before a meta-alert
//!
//! [[sinks]]
//! kind = "webhook"            # jsonl | gitlab | pagerduty | slack | webhook | splunk_hec
//! name = "sirt-webhook"       # default: the kind; unique
//! url = "https://hooks.example/kestrel"
//! secret = "env:KESTREL_WEBHOOK_SECRET"   # literal, env:NAME or file:PATH
//! min_level = "medium"        # informational | low | medium | high | critical
//! tags = ["attack.credential-access"]     # any of these (empty: every alert)
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alert::Level;
use crate::sinks;

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values are invalid; every problem is listed.
    #[error("config {}: {} problem(s):\n  - {}", path.display(), problems.len(), problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each naming the key.
        problems: Vec<String>,
    },
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Deduplication and rate limiting of alerts.
    pub alerts: AlertsConfig,
    /// Outbox delivery: retries, backoff, dead letters.
    pub delivery: DeliveryConfig,
    /// Where alerts go (`[[sinks]]` tables). Default: none.
    pub sinks: Vec<SinkConfig>,
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Repeats of the same fingerprint within this window (from its first occurrence) are
    /// counted on one alert instead of raising new ones. Default `10m`; `0s` disables.
    pub dedup_window: String,
    /// New alerts one rule may raise per `rate_limit_window`; beyond it alerts are counted as
    /// suppressed and not stored. Default 100; 0 means no limit.
    pub rate_limit_per_rule: u32,
    /// The rate-limit window. Default `1m`.
    pub rate_limit_window: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dedup_window: "10m".into(),
            rate_limit_per_rule: 100,
            rate_limit_window: "1m".into(),
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Delay before the first retry; doubles per attempt (with ±50% jitter). Default `1s`.
    pub initial_backoff: String,
    /// Longest delay between retries. Default `5m`.
    pub max_backoff: String,
    /// An alert undelivered for this long goes to the dead-letter table. Default `24h`.
    pub max_age: String,
    /// Timeout of one HTTP request. Default `10s`.
    pub timeout: String,
    /// How often each sink looks at the outbox when nothing woke it. Default `1s`.
    pub poll_interval: String,
    /// Consecutive failed attempts of one sink before a meta-alert goes to the other sinks.
    /// Default 5; 0 disables.
    pub meta_alert_after: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            initial_backoff: "1s".into(),
            max_backoff: "5m".into(),
            max_age: "24h".into(),
            timeout: "10s".into(),
            poll_interval: "1s".into(),
            meta_alert_after: 5,
        }
    }
}

/// One `[[sinks]]` table. Which keys a kind needs or accepts is in [`sinks::KINDS`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `jsonl`, `gitlab`, `pagerduty`, `slack`, `webhook` or `splunk_hec`. Required.
    pub kind: String,
    /// Name in logs, the outbox and the CLI. Default: the kind. Must be unique.
    pub name: Option<String>,
    /// Endpoint URL (http sinks): literal, `env:NAME` or `file:PATH` (a Slack webhook URL is a
    /// secret). PagerDuty defaults to the Events API v2 endpoint.
    pub url: Option<String>,
    /// Bearer token (`gitlab`) or HEC token (`splunk_hec`): literal, `env:NAME` or `file:PATH`.
    pub token: Option<String>,
    /// PagerDuty integration (routing) key: literal, `env:NAME` or `file:PATH`.
    pub routing_key: Option<String>,
    /// Standard Webhooks signing secret (`whsec_` + base64): literal, `env:NAME` or `file:PATH`.
    pub secret: Option<String>,
    /// `jsonl`: the file to append to, or `-` for stdout.
    pub path: Option<PathBuf>,
    /// `jsonl`: rotate the file when it would grow past this many bytes. Default: never.
    pub max_bytes: Option<u64>,
    /// `jsonl`: rotated files kept (`F.1` newest … `F.N`). Default 5.
    pub max_files: Option<u32>,
    /// `splunk_hec`: target index. Default: the token's default index.
    pub index: Option<String>,
    /// `splunk_hec`: sourcetype. Default `kestrel:alert`.
    pub sourcetype: Option<String>,
    /// Extra CA certificates (PEM) to trust for an https `url` (private GitLab, proxies).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout for this sink. Default: `[delivery] timeout`.
    pub timeout: Option<String>,
    /// Least severe level delivered. Default `informational` (everything).
    pub min_level: Option<String>,
    /// Deliver only rule alerts carrying at least one of these tags (case-insensitive).
    /// Default: empty, every alert. Kestrel's own alerts (agent silent, sink failing) ignore it.
    pub tags: Vec<String>,
}

impl SinkConfig {
    /// The sink's name: `name`, else the kind.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.kind)
    }

    /// The optional keys that are set, by name (to check them against the kind).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |set: bool, key| {
            if set {
                keys.push(key);
            }
        };
        note(self.url.is_some(), "url");
        note(self.token.is_some(), "token");
        note(self.routing_key.is_some(), "routing_key");
        note(self.secret.is_some(), "secret");
        note(self.path.is_some(), "path");
        note(self.max_bytes.is_some(), "max_bytes");
        note(self.max_files.is_some(), "max_files");
        note(self.index.is_some(), "index");
        note(self.sourcetype.is_some(), "sourcetype");
        note(self.ca_file.is_some(), "ca_file");
        note(self.timeout.is_some(), "timeout");
        keys
    }
}

/// Validated alerting settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Dedup window; zero disables deduplication.
    pub dedup_window: Duration,
    /// New alerts per rule per window; 0 = unlimited.
    pub rate_limit_per_rule: u32,
    /// Rate-limit window.
    pub rate_limit_window: Duration,
}

/// Validated delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Age after which an undelivered alert is dead-lettered.
    pub max_age: Duration,
    /// HTTP request timeout.
    pub timeout: Duration,
    /// Outbox poll interval.
    pub poll_interval: Duration,
    /// Consecutive failures before a meta-alert (0: never).
    pub meta_alert_after: u32,
}

/// A validated sink: its settings with secrets resolved.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Unique name.
    pub name: String,
    /// Kind (one of [`sinks::KINDS`]).
    pub kind: String,
    /// Least severe level delivered.
    pub min_level: Level,
    /// Tags filter (lower-case; empty = all).
    pub tags: Vec<String>,
    /// Request timeout.
    pub timeout: Duration,
    /// The table as written, with `url`, `token`, `routing_key` and `secret` resolved.
    pub raw: SinkConfig,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[alerts]`.
    pub alerts: AlertSettings,
    /// `[delivery]`.
    pub delivery: DeliverySettings,
    /// `[[sinks]]`, in file order.
    pub sinks: Vec<SinkSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        CollectorConfig::default()
            .validate()
            .expect("the defaults are valid")
    }
}

/// Reads, parses and validates the configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
        ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        },
        other => other,
    })
}

/// Parses and validates configuration text (errors name the path `<config>`).
pub fn parse(text: &str) -> Result<Settings, ConfigError> {
    let path = PathBuf::from("<config>");
    let config: CollectorConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    config
        .validate()
        .map_err(|problems| ConfigError::Invalid { path, problems })
}

impl CollectorConfig {
    /// Checks every value; returns all problems, each naming its key.
    pub fn validate(&self) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let mut duration = |key: &str, text: &str, allow_zero: bool| -> Duration {
            match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() && !allow_zero => {
                    problems.push(format!("{key}: must be greater than zero"));
                    Duration::from_secs(1)
                }
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!(
                        "{key}: {text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"24h\""
                    ));
                    Duration::from_secs(1)
                }
            }
        };
        let a = &self.alerts;
        let alerts = AlertSettings {
            dedup_window: duration("alerts.dedup_window", &a.dedup_window, true),
            rate_limit_per_rule: a.rate_limit_per_rule,
            rate_limit_window: duration("alerts.rate_limit_window", &a.rate_limit_window, false),
        };
        let d = &self.delivery;
        let delivery = DeliverySettings {
            initial_backoff: duration("delivery.initial_backoff", &d.initial_backoff, false),
            max_backoff: duration("delivery.max_backoff", &d.max_backoff, false),
            max_age: duration("delivery.max_age", &d.max_age, false),
            timeout: duration("delivery.timeout", &d.timeout, false),
            poll_interval: duration("delivery.poll_interval", &d.poll_interval, false),
            meta_alert_after: d.meta_alert_after,
        };
        if delivery.max_backoff < delivery.initial_backoff {
            problems.push(format!(
                "delivery.max_backoff: {} is shorter than delivery.initial_backoff {}",
                d.max_backoff, d.initial_backoff
            ));
        }
        let mut names = HashSet::new();
        let mut sinks = Vec::new();
        for (index, sink) in self.sinks.iter().enumerate() {
            let at = format!("sinks[{index}] ({})", sink.name());
            if let Some(settings) = validate_sink(&at, sink, &delivery, &mut problems) {
                if !names.insert(settings.name.clone()) {
                    problems.push(format!(
                        "{at}: name {:?} is used by an earlier sink; give each sink a unique `name`",
                        settings.name
                    ));
                }
                sinks.push(settings);
            }
        }
        if problems.is_empty() {
            Ok(Settings {
                alerts,
                delivery,
                sinks,
            })
        } else {
            Err(problems)
        }
    }
}

fn validate_sink(
    at: &str,
    sink: &SinkConfig,
    delivery: &DeliverySettings,
    problems: &mut Vec<String>,
) -> Option<SinkSettings> {
    let before = problems.len();
    if sink.kind.is_empty() {
        problems.push(format!(
            "{at}: `kind` is required (one of {})",
            sinks::kind_names()
        ));
        return None;
    }
    let Some(kind) = sinks::kind(&sink.kind) else {
        problems.push(format!(
            "{at}: unknown kind {:?} (one of {})",
            sink.kind,
            sinks::kind_names()
        ));
        return None;
    };
    if sink.name.as_deref().is_some_and(str::is_empty) {
        problems.push(format!("{at}: `name` must not be empty"));
    }
    for key in kind.required {
        if !sink.keys_set().contains(key) {
            problems.push(format!("{at}: `{key}` is required for kind {}", kind.name));
        }
    }
    for key in sink.keys_set() {
        if !kind.required.contains(&key) && !kind.optional.contains(&key) {
            problems.push(format!(
                "{at}: `{key}` is not used by kind {} (it takes {})",
                kind.name,
                kind.required
                    .iter()
                    .chain(kind.optional)
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let min_level = match &sink.min_level {
        None => Level::Informational,
        Some(text) => Level::parse(text).unwrap_or_else(|| {
            problems.push(format!(
                "{at}: min_level {text:?} is not a level (informational, low, medium, high, critical)"
            ));
            Level::Informational
        }),
    };
    let timeout = match &sink.timeout {
        None => delivery.timeout,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                problems.push(format!("{at}: timeout {text:?} is not a positive duration"));
                delivery.timeout
            }
        },
    };
    let mut raw = sink.clone();
    for (key, slot) in [
        ("url", &mut raw.url),
        ("token", &mut raw.token),
        ("routing_key", &mut raw.routing_key),
        ("secret", &mut raw.secret),
    ] {
        if let Some(value) = slot.as_deref() {
            match resolve_secret(value) {
                Ok(resolved) => *slot = Some(resolved),
                Err(problem) => problems.push(format!("{at}: `{key}`: {problem}")),
            }
        }
    }
    if let Some(url) = &raw.url {
        if let Err(problem) = check_url(url) {
            problems.push(format!("{at}: url {url:?}: {problem}"));
        }
    }
    if let Some(ca) = &raw.ca_file {
        if let Err(e) = std::fs::metadata(ca) {
            problems.push(format!("{at}: ca_file {}: {e}", ca.display()));
        }
    }
    for problem in (kind.check)(&raw) {
        problems.push(format!("{at}: {problem}"));
    }
    (problems.len() == before).then(|| SinkSettings {
        name: sink.name().to_owned(),
        kind: kind.name.to_owned(),
        min_level,
        tags: sink.tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
        timeout,
        raw,
    })
}

/// Resolves a secret given literally, as `env:NAME` or as `file:PATH` (trailing newline removed).
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("{path}: {e}"))
    } else if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_owned())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings.alerts.dedup_window, Duration::from_secs(600));
        assert_eq!(settings.alerts.rate_limit_per_rule, 100);
        assert_eq!(settings.delivery.initial_backoff, Duration::from_secs(1));
        assert_eq!(settings.delivery.max_age, Duration::from_secs(86_400));
        assert_eq!(settings.delivery.meta_alert_after, 5);
        assert!(settings.sinks.is_empty());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = parse("[alerts]\ndedup_windw = \"1m\"\n").unwrap_err();
        assert!(err.to_string().contains("dedup_windw"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_key() {
        let text = r#"
            [alerts]
            dedup_window = "soon"
            [[sinks]]
            kind = "slack"
            [[sinks]]
            kind = "carrier-pigeon"
            [[sinks]]
            kind = "webhook"
            url = "ftp://x"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            routing_key = "k"
            min_level = "severe"
        "#;
        let ConfigError::Invalid { problems, .. } = parse(text).unwrap_err() else {
            panic!("not a validation error");
        };
        let all = problems.join("\n");
        assert!(all.contains("alerts.dedup_window"), "{all}");
        assert!(all.contains("sinks[0] (slack): `url` is required"), "{all}");
        assert!(all.contains("unknown kind \"carrier-pigeon\""), "{all}");
        assert!(
            all.contains("sinks[2] (webhook): `routing_key` is not used"),
            "{all}"
        );
        assert!(all.contains("min_level \"severe\""), "{all}");
        assert!(all.contains("scheme \"ftp\""), "{all}");
        assert_eq!(problems.len(), 6, "{all}");
    }

    #[test]
    fn duplicate_sink_names_are_refused() {
        let text = r#"
            [[sinks]]
            kind = "jsonl"
            path = "-"
            [[sinks]]
            kind = "jsonl"
            path = "/tmp/x"
        "#;
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("name \"jsonl\" is used by an earlier sink"),
            "{err}"
        );
    }

    #[test]
    fn secrets_resolve_from_the_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            resolve_secret(&format!("file:{}", file.display())).unwrap(),
            "s3cret"
        );
        assert!(resolve_secret("env:KESTREL_TEST_SURELY_UNSET_VAR")
            .unwrap_err()
            .contains("KESTREL_TEST_SURELY_UNSET_VAR"));
        assert_eq!(resolve_secret("plain").unwrap(), "plain");
    }
}
