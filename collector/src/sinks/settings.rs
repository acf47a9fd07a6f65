//! One `[[sinks]]` table of the configuration file as written ([`SinkConfig`]) and as
//! validated ([`SinkSettings`]): which keys a kind takes is in [`super::KINDS`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::alert::Level;

/// One `[[sinks]]` table. Which keys a kind needs or accepts is in [`super::KINDS`].
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

/// A validated sink: its settings with secrets resolved.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Unique name.
    pub name: String,
    /// Kind (one of [`super::KINDS`]).
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

/// Checks one `[[sinks]]` table (`at` names it in problems) and resolves its secrets; pushes
/// every problem found onto `problems` and returns the settings when there was none.
/// `default_timeout` is `[delivery] timeout`.
pub fn validate(
    at: &str,
    sink: &SinkConfig,
    default_timeout: Duration,
    problems: &mut Vec<String>,
) -> Option<SinkSettings> {
    let before = problems.len();
    if sink.kind.is_empty() {
        problems.push(format!(
            "{at}: `kind` is required (one of {})",
            super::kind_names()
        ));
        return None;
    }
    let Some(kind) = super::kind(&sink.kind) else {
        problems.push(format!(
            "{at}: unknown kind {:?} (one of {})",
            sink.kind,
            super::kind_names()
        ));
        return None;
    };
    if sink.name.as_deref().is_some_and(str::is_empty) {
        problems.push(format!("{at}: `name` must not be empty"));
    }
    let keys_set = sink.keys_set();
    for key in kind.required {
        if !keys_set.contains(key) {
            problems.push(format!("{at}: `{key}` is required for kind {}", kind.name));
        }
    }
    for &key in &keys_set {
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
        None => default_timeout,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                problems.push(format!("{at}: timeout {text:?} is not a positive duration"));
                default_timeout
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
