//! One Sigma rule file: YAML -> metadata, logsource check, compiled detection.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::condition::{self, Expr};
use super::error::{RuleError, RuleErrorKind};
use super::fields::EventView;
use super::selection::Selection;

/// Sigma levels, least severe first.
const LEVELS: &[&str] = &["informational", "low", "medium", "high", "critical"];

/// One compiled Sigma rule.
#[derive(Debug)]
pub struct Rule {
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
    detection: Detection,
}

/// The compiled detection: search identifiers and the condition over them.
#[derive(Debug)]
struct Detection {
    selections: Vec<Selection>,
    condition: Expr,
}

/// The Sigma attributes Kestrel reads; the others (author, references, ...) are ignored.
#[derive(Deserialize)]
struct RawRule {
    title: String,
    id: Option<String>,
    description: Option<String>,
    level: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    logsource: RawLogsource,
    detection: serde_yaml::Mapping,
}

#[derive(Deserialize)]
struct RawLogsource {
    category: Option<String>,
    product: Option<String>,
    service: Option<String>,
}

impl Rule {
    /// Parses and compiles one rule from its YAML `text`; `path` names it in errors and gives the
    /// default id (the file stem).
    pub fn from_yaml(path: &Path, text: &str) -> Result<Rule, RuleError> {
        let fail = |kind, line| RuleError {
            path: path.to_path_buf(),
            line,
            kind,
        };
        let doc: Yaml =
            serde_yaml::from_str(text).map_err(|e| fail(RuleErrorKind::Yaml(e), None))?;
        if let Some(kind) = unsupported_document(&doc) {
            return Err(fail(RuleErrorKind::UnsupportedDocument(kind), None));
        }
        let raw: RawRule =
            serde_yaml::from_str(text).map_err(|e| fail(RuleErrorKind::Yaml(e), None))?;
        check_logsource(&raw.logsource)
            .map_err(|kind| fail(kind, line_of(text, "logsource", 0)))?;
        let level = raw
            .level
            .as_deref()
            .unwrap_or("medium")
            .to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            let reason = format!(
                "unknown level '{level}' (expected one of {})",
                LEVELS.join(", ")
            );
            return Err(fail(
                RuleErrorKind::Detection(reason),
                line_of(text, "level", 0),
            ));
        }
        let detection =
            Detection::compile(&raw.detection, text).map_err(|(kind, line)| fail(kind, line))?;
        let id = match raw.id {
            Some(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Ok(Rule {
            id,
            title: raw.title,
            description: raw.description.unwrap_or_default(),
            level,
            tags: raw.tags,
            path: path.to_path_buf(),
            detection,
        })
    }

    /// True when `event` is a process creation event that satisfies this rule's detection.
    pub fn matches(&self, event: &kestrel_proto::Event) -> bool {
        EventView::process_creation(event).is_some_and(|view| self.matches_view(&view))
    }

    pub(crate) fn matches_view(&self, view: &EventView<'_>) -> bool {
        let selections = &self.detection.selections;
        self.detection
            .condition
            .eval(&|i| selections[i].matches(view))
    }
}

/// The kind of a Sigma document that is not a detection rule, if it is one.
fn unsupported_document(doc: &Yaml) -> Option<&'static str> {
    let map = doc.as_mapping()?;
    if map.contains_key("correlation") {
        Some("correlation rules")
    } else if map.contains_key("filter") && !map.contains_key("detection") {
        Some("filter rules")
    } else if map.contains_key("action") {
        Some("rule collections (action: global/reset/repeat)")
    } else {
        None
    }
}

fn check_logsource(ls: &RawLogsource) -> Result<(), RuleErrorKind> {
    let product_ok = ls
        .product
        .as_deref()
        .is_none_or(|p| p.eq_ignore_ascii_case("linux"));
    if ls.category.as_deref() == Some("process_creation") && product_ok && ls.service.is_none() {
        return Ok(());
    }
    let parts: Vec<String> = [
        ("category", &ls.category),
        ("product", &ls.product),
        ("service", &ls.service),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
    .collect();
    Err(RuleErrorKind::UnsupportedLogsource(if parts.is_empty() {
        "(empty)".to_string()
    } else {
        format!("({})", parts.join(", "))
    }))
}

impl Detection {
    fn compile(
        map: &serde_yaml::Mapping,
        text: &str,
    ) -> Result<Detection, (RuleErrorKind, Option<usize>)> {
        let detection_line = line_of(text, "detection", 0).unwrap_or(1);
        let at = |key: &str| line_of(text, key, detection_line);
        let mut names = Vec::new();
        let mut selections = Vec::new();
        let mut conditions = Vec::new();
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                let reason = format!("search identifier {key:?} is not a string");
                return Err((RuleErrorKind::Detection(reason), Some(detection_line)));
            };
            match key {
                "condition" => {
                    conditions = condition_texts(value).map_err(|k| (k, at("condition")))?
                }
                // Only meaningful with aggregations, which the condition parser rejects.
                "timeframe" => {}
                name => {
                    let selection =
                        Selection::compile(name, value).map_err(|e| (e.kind, at(&e.key)))?;
                    names.push(name.to_string());
                    selections.push(selection);
                }
            }
        }
        if conditions.is_empty() {
            return Err((
                RuleErrorKind::Detection("missing condition".into()),
                Some(detection_line),
            ));
        }
        let parsed = conditions
            .iter()
            .map(|c| {
                condition::parse(c, &names).map_err(|reason| {
                    let kind = RuleErrorKind::Condition {
                        condition: c.clone(),
                        reason,
                    };
                    (kind, at("condition"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let condition = if parsed.len() == 1 {
            parsed.into_iter().next().expect("one condition")
        } else {
            Expr::Or(parsed)
        };
        Ok(Detection {
            selections,
            condition,
        })
    }
}

/// The condition texts: one string, or a list of strings that are OR-ed.
fn condition_texts(value: &Yaml) -> Result<Vec<String>, RuleErrorKind> {
    let bad = || RuleErrorKind::Detection("condition must be a string or a list of strings".into());
    match value {
        Yaml::String(s) => Ok(vec![s.clone()]),
        Yaml::Sequence(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// Best-effort 1-based line of the first YAML key `key` at or after line `from` (1-based; 0 means
/// from the start), for error messages. Matches `key:`, `- key:` and quoted keys.
fn line_of(text: &str, key: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let line = line.trim_start();
            let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
            let unquoted = line
                .strip_prefix(['\'', '"'])
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(['\'', '"']));
            let rest = unquoted.or_else(|| line.strip_prefix(key));
            rest.is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_finds_plain_list_and_quoted_keys() {
        let text = "title: x\ndetection:\n  sel:\n    - 'Image|endswith': a\n    CommandLine: b\n";
        assert_eq!(line_of(text, "detection", 0), Some(2));
        assert_eq!(line_of(text, "Image|endswith", 2), Some(4));
        assert_eq!(line_of(text, "CommandLine", 2), Some(5));
        assert_eq!(line_of(text, "Command", 2), None);
    }
}
