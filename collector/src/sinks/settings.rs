//! One `[[sinks]]` table of the configuration file as written ([`SinkConfig`]) and as
//! validated ([`SinkSettings`]). The keys every kind shares are here; a kind's own keys are its
//! [`Options`] type, in the kind's file, read from the rest of the table.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::redact::Secrets;
use super::{Sink, SinkError};
use crate::alert::Level;

/// One `[[sinks]]` table: the keys every kind takes, and the kind's own keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// `jsonl`, `gitlab`, `pagerduty`, `slack`, `webhook` or `splunk_hec` (see [`super::KINDS`]).
    /// Required.
    pub kind: String,
    /// Name in logs, the outbox and the CLI. Default: the kind. Must be unique.
    pub name: Option<String>,
    /// Least severe level delivered. Default `informational` (everything).
    pub min_level: Option<String>,
    /// Deliver only rule alerts carrying at least one of these tags (case-insensitive).
    /// Default: empty, every alert. Kestrel's own alerts (agent silent, sink failing) ignore it.
    pub tags: Vec<String>,
    /// Every other key of the table: the kind's own, read by its [`Options`] type.
    #[serde(flatten)]
    pub options: toml::Table,
}

impl SinkConfig {
    /// The sink's name: `name`, else the kind.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.kind)
    }
}

/// A validated sink: the shared settings and the kind's checked options, secrets resolved.
#[derive(Clone)]
pub struct SinkSettings {
    /// Unique name.
    pub name: String,
    /// Kind (one of [`super::KINDS`]).
    pub kind: &'static str,
    /// Least severe level delivered.
    pub min_level: Level,
    /// Tags filter (lower-case; empty = all).
    pub tags: Vec<String>,
    /// `[delivery] timeout`: the request timeout of a sink that sets none of its own.
    pub default_timeout: Duration,
    /// The kind's own keys, checked.
    pub options: Arc<dyn Build>,
    /// The resolved secrets among them, which the sink's messages must not show.
    pub secrets: Secrets,
}

impl fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("min_level", &self.min_level)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl SinkSettings {
    /// Builds the sink these settings describe.
    pub fn build(&self) -> Result<Arc<dyn Sink>, SinkError> {
        self.options.build(self)
    }

    /// A [`SinkError`] for this sink.
    pub fn error(&self, message: impl Into<String>) -> SinkError {
        SinkError {
            name: self.name.clone(),
            message: message.into(),
        }
    }
}

/// A kind's own keys of a `[[sinks]]` table, as one type per kind (in the kind's file).
///
/// Deserialized from the table without the shared keys; a key the type has no field for is
/// reported as not used by the kind.
pub trait Options: DeserializeOwned + Build + 'static {
    /// The keys the kind takes. Default: the type's fields.
    fn keys() -> Vec<&'static str> {
        serde_aux::serde_introspection::serde_introspect::<Self>().to_vec()
    }

    /// Checks the keys as written and resolves secrets; one message per problem. `check`
    /// reports required keys that are missing ([`Check::required`]).
    fn check(&mut self, check: &mut Check);
}

/// Builds a sink from its checked options (the object-safe half of [`Options`]).
pub trait Build: Send + Sync {
    /// Builds the sink; `settings` are the shared settings these options belong to.
    fn build(&self, settings: &SinkSettings) -> Result<Arc<dyn Sink>, SinkError>;
}

/// The problems found in one kind's keys, and the helpers that find the common ones.
pub struct Check {
    kind: &'static str,
    problems: Vec<String>,
    secrets: Vec<String>,
}

impl Check {
    /// Records a problem.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Records that `key` is missing when it is.
    pub fn required<T>(&mut self, key: &str, value: &Option<T>) {
        if value.is_none() {
            self.problem(format!("`{key}` is required for kind {}", self.kind));
        }
    }

    /// Records that the secret `key` is missing, or resolves it in place.
    pub fn required_secret(&mut self, key: &str, value: &mut Option<String>) {
        self.required(key, value);
        self.secret(key, value);
    }

    /// Resolves the secret `key` in place (see [`resolve_secret`]), if it is set, and
    /// remembers it so that the sink's messages never show it ([`SinkSettings::secrets`]).
    pub fn secret(&mut self, key: &str, value: &mut Option<String>) {
        if let Some(text) = value.as_deref() {
            match resolve_secret(text) {
                Ok(resolved) => {
                    self.secrets.push(resolved.clone());
                    *value = Some(resolved);
                }
                Err(problem) => self.problem(format!("`{key}`: {problem}")),
            }
        }
    }
}

/// A kind's options as read: ready to build with the secrets among them, or every problem found.
pub type ReadOptions = Result<(Arc<dyn Build>, Secrets), Vec<String>>;

/// Reads a kind's options `T` from the table's own keys: every key `T` has no field for and
/// every problem `T::check` finds are returned, one message each.
pub fn read_options<T: Options>(kind: &'static str, table: &toml::Table) -> ReadOptions {
    let fields = T::keys();
    let mut check = Check {
        kind,
        problems: Vec::new(),
        secrets: Vec::new(),
    };
    for key in table.keys() {
        if !fields.contains(&key.as_str()) {
            check.problem(format!(
                "`{key}` is not used by kind {kind} (it takes {})",
                fields
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // Keys reported above are ignored by the deserializer (options types take unknown keys).
    match T::deserialize(toml::Value::Table(table.clone())) {
        Ok(mut options) => {
            options.check(&mut check);
            if check.problems.is_empty() {
                return Ok((Arc::new(options), Secrets::new(check.secrets)));
            }
        }
        Err(e) => check.problem(e.to_string()),
    }
    Err(check.problems)
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
    let before = problems.len();
    if sink.name.as_deref().is_some_and(str::is_empty) {
        problems.push(format!("{at}: `name` must not be empty"));
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
    let (options, secrets) = (kind.read)(kind.name, &sink.options)
        .map_err(|found| problems.extend(found.into_iter().map(|p| format!("{at}: {p}"))))
        .ok()?;
    (problems.len() == before).then(|| SinkSettings {
        name: sink.name().to_owned(),
        kind: kind.name,
        min_level,
        tags: sink.tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
        default_timeout,
        options,
        secrets,
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

    fn problems_of(table: &str) -> Vec<String> {
        let sink: SinkConfig = toml::from_str(table).unwrap();
        let mut problems = Vec::new();
        let settings = validate("sinks[0]", &sink, Duration::from_secs(5), &mut problems);
        assert_eq!(settings.is_none(), !problems.is_empty(), "{problems:?}");
        problems
    }

    #[test]
    fn a_key_the_kind_does_not_take_is_named_with_the_keys_it_takes() {
        let problems =
            problems_of("kind = \"jsonl\"\npath = \"-\"\ntimeout = \"5s\"\nnmae = \"x\"\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        for key in ["timeout", "nmae"] {
            assert!(
                problems.iter().any(|p| p.contains(&format!(
                    "`{key}` is not used by kind jsonl (it takes `path`, `max_bytes`, `max_files`)"
                ))),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn a_kind_reads_its_own_typed_keys_and_reports_bad_values() {
        assert!(problems_of("kind = \"jsonl\"\npath = \"-\"\n").is_empty());
        let problems = problems_of("kind = \"jsonl\"\npath = \"-\"\nmax_files = \"many\"\n");
        assert!(
            problems.iter().any(|p| p.contains("max_files")),
            "{problems:?}"
        );
        let problems = problems_of("kind = \"gitlab\"\ntimeout = \"0s\"\n");
        assert!(problems
            .iter()
            .any(|p| p.contains("`url` is required for kind gitlab")));
        assert!(problems
            .iter()
            .any(|p| p.contains("`token` is required for kind gitlab")));
        assert!(problems
            .iter()
            .any(|p| p.contains("timeout \"0s\" is not a positive duration")));
    }
}
