//! One Sigma detection rule: metadata, logsource check, compiled detection section.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::compile::prefilter::{self, Requirement};
use crate::compile::selection::Selection;
use crate::detection::{RuleInfo, RuleKind};
use crate::error::{RuleError, RuleErrorKind};
use crate::fields::{EventContext, Field, FieldValues};
use crate::logsource::{categories_of, Category};
use crate::parse::chunk::{Chunk, DocumentError, DocumentErrors};
use crate::parse::condition::{self, Expr};

/// Sigma levels, least severe first.
pub(crate) const LEVELS: &[&str] = &["informational", "low", "medium", "high", "critical"];

/// One compiled Sigma detection rule.
#[derive(Debug)]
pub struct Rule {
    /// Rule id (the Sigma `id`, or the file stem when absent).
    pub id: String,
    /// The Sigma `name`, by which correlation rules and filters may refer to it.
    pub name: Option<String>,
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
    /// The logsource category the rule applies to.
    pub category: Category,
    logic: Logic,
    /// Sigma filters applied to this rule (the rule matches only when none of them does).
    filters: Vec<Arc<Logic>>,
}

/// A compiled detection section: search identifiers and the condition over them.
#[derive(Debug)]
pub(crate) struct Logic {
    selections: Vec<Selection>,
    condition: Expr,
}

/// The Sigma attributes shared by every document kind; the others (author, references, ...)
/// are ignored.
#[derive(Deserialize)]
pub(crate) struct RawMeta {
    pub(crate) title: String,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) level: Option<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

#[derive(Deserialize)]
struct RawRule {
    #[serde(flatten)]
    meta: RawMeta,
    logsource: RawLogsource,
    detection: serde_yaml::Mapping,
}

/// A Sigma `logsource`.
#[derive(Deserialize)]
pub(crate) struct RawLogsource {
    category: Option<String>,
    product: Option<String>,
    service: Option<String>,
}

impl RawMeta {
    /// The id (trimmed); when absent or blank the name, else `default_id`.
    pub(crate) fn id_or(&self, default_id: &str) -> String {
        [&self.id, &self.name]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
            .unwrap_or(default_id)
            .to_string()
    }

    /// The validated, lowercase level (`medium` when absent).
    pub(crate) fn level(&self, chunk: &Chunk<'_>) -> Result<String, DocumentError> {
        let level = self
            .level
            .as_deref()
            .unwrap_or("medium")
            .to_ascii_lowercase();
        if LEVELS.contains(&level.as_str()) {
            return Ok(level);
        }
        let reason = format!(
            "unknown level '{level}' (expected one of {})",
            LEVELS.join(", ")
        );
        Err((RuleErrorKind::Detection(reason), chunk.line_of("level", 0)))
    }
}

impl Rule {
    /// Parses and compiles one single-document rule from its YAML `text`; `path` names it in
    /// errors and gives the default id (the file stem). Files with several documents (a
    /// correlation with its rules) load through [`RuleSet::load_dir`](crate::RuleSet::load_dir).
    pub fn from_yaml(path: &Path, text: &str) -> Result<Rule, RuleError> {
        let chunk = Chunk::whole(text);
        let fail = |(kind, line)| RuleError::new(path, line, kind);
        let doc = chunk.parse_value().map_err(fail)?;
        if let Some(kind) = crate::parse::chunk::kind_of(&doc) {
            return Err(fail((
                RuleErrorKind::UnsupportedDocument(match kind {
                    crate::parse::chunk::Kind::Correlation => {
                        "correlation rules outside a rule set"
                    }
                    crate::parse::chunk::Kind::Filter => "filters outside a rule set",
                }),
                None,
            )));
        }
        Rule::compile(path, &chunk, &crate::parse::chunk::default_id(path, 0, 1))
            .map_err(|errors| fail(errors.0.into_iter().next().expect("at least one problem")))
    }

    /// Compiles the detection rule in `chunk` of the file at `path`; `default_id` is its id when
    /// it has neither `id` nor `name`. Every problem is reported (the detection section is
    /// checked only against a logsource that is valid: its fields depend on the category).
    pub(crate) fn compile(
        path: &Path,
        chunk: &Chunk<'_>,
        default_id: &str,
    ) -> Result<Rule, DocumentErrors> {
        let raw: RawRule = chunk.parse()?;
        let mut problems = DocumentErrors::default();
        let category = problems.take(
            check_logsource(&raw.logsource).map_err(|kind| (kind, chunk.line_of("logsource", 0))),
        );
        let level = problems.take(raw.meta.level(chunk));
        let logic = category.and_then(|category| {
            problems.take(Logic::compile(&raw.detection, chunk, "detection", category))
        });
        let (category, level, logic) = problems.or(category
            .zip(level)
            .zip(logic)
            .map(|((category, level), logic)| (category, level, logic)))?;
        Ok(Rule {
            id: raw.meta.id_or(default_id),
            name: raw.meta.name.clone(),
            title: raw.meta.title,
            description: raw.meta.description.unwrap_or_default(),
            level,
            tags: raw.meta.tags,
            path: path.to_path_buf(),
            category,
            logic,
            filters: Vec::new(),
        })
    }

    /// The rule's identity and metadata as detections report it.
    pub fn info(&self, kind: RuleKind) -> RuleInfo {
        RuleInfo {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            level: self.level.clone(),
            tags: self.tags.clone(),
            path: self.path.clone(),
            kind,
        }
    }

    /// True when `event` belongs to the rule's category and satisfies its detection (and none
    /// of its filters). Session fields are absent here; the [`Detector`](crate::Detector) has
    /// them.
    pub fn matches(&self, event: &kestrel_proto::Event) -> bool {
        if !categories_of(event).contains(self.category) {
            return false;
        }
        let mut values = FieldValues::default();
        values.load();
        let mut fields = Vec::new();
        self.fields(&mut fields);
        values.fill(event, &EventContext::default(), &fields);
        self.matches_values(&values)
    }

    /// Evaluates the rule on values filled with (at least) [`Rule::fields`].
    pub(crate) fn matches_values(&self, values: &FieldValues) -> bool {
        self.logic.matches(values) && !self.filters.iter().any(|f| f.matches(values))
    }

    /// Every field the rule (with its filters) reads.
    pub(crate) fn fields(&self, out: &mut Vec<Field>) {
        self.logic.fields(out);
        for filter in &self.filters {
            filter.fields(out);
        }
    }

    /// Texts the rule cannot match without (filters only remove matches, so they add none).
    pub(crate) fn requirement(&self) -> Requirement {
        self.logic.requirement()
    }

    /// Applies a Sigma filter: the rule then matches only events the filter does not.
    pub(crate) fn add_filter(&mut self, filter: Arc<Logic>) {
        self.filters.push(filter);
    }
}

impl Logic {
    /// Compiles a detection section (`map`, found under `section` in `chunk`) for `category`.
    /// In a `filter` section, `rules` is the filter's rule list, not a search identifier.
    pub(crate) fn compile(
        map: &serde_yaml::Mapping,
        chunk: &Chunk<'_>,
        section: &str,
        category: Category,
    ) -> Result<Logic, DocumentErrors> {
        let section_line = chunk.line_of(section, 0).unwrap_or(chunk.first_line);
        let at = |key: &str| chunk.line_of(key, section_line);
        let mut problems = DocumentErrors::default();
        let mut names = Vec::new();
        let mut selections = Vec::new();
        let mut conditions = None;
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                let reason = format!("search identifier {key:?} is not a string");
                problems
                    .0
                    .push((RuleErrorKind::Detection(reason), Some(section_line)));
                continue;
            };
            match key {
                "condition" => {
                    conditions =
                        problems.take(condition_texts(value).map_err(|k| (k, at("condition"))))
                }
                // Only meaningful with aggregations, which the condition parser rejects.
                "timeframe" => {}
                // A filter's list of the rules it applies to.
                "rules" if section == "filter" => {}
                name => {
                    // The name counts even when the selection is broken, so the condition is
                    // judged on its own.
                    names.push(name.to_string());
                    match Selection::compile(name, value, category) {
                        Ok(selection) => selections.push(selection),
                        Err(errors) => problems
                            .0
                            .extend(errors.into_iter().map(|e| (e.kind, at(&e.key)))),
                    }
                }
            }
        }
        if !map.contains_key("condition") {
            problems.0.push((
                RuleErrorKind::Detection("missing condition".into()),
                Some(section_line),
            ));
        }
        let mut parsed = Vec::new();
        for text in conditions.iter().flatten() {
            let condition = condition::parse(text, &names).map_err(|reason| {
                let kind = RuleErrorKind::Condition {
                    condition: text.clone(),
                    reason,
                };
                (kind, at("condition"))
            });
            parsed.extend(problems.take(condition));
        }
        let condition = if parsed.len() == 1 {
            parsed.pop()
        } else {
            Some(Expr::Or(parsed))
        };
        problems.or(condition).map(|condition| Logic {
            selections,
            condition,
        })
    }

    /// True when the condition holds on the current event's values.
    pub(crate) fn matches(&self, values: &FieldValues) -> bool {
        let selections = &self.selections;
        self.condition.eval(&|i| selections[i].matches(values))
    }

    /// Every field the section reads.
    pub(crate) fn fields(&self, out: &mut Vec<Field>) {
        for s in &self.selections {
            s.fields(out);
        }
    }

    /// Texts the condition cannot hold without.
    pub(crate) fn requirement(&self) -> Requirement {
        requirement(&self.condition, &self.selections)
    }
}

fn requirement(expr: &Expr, selections: &[Selection]) -> Requirement {
    match expr {
        Expr::Sel(i) => selections[*i].requirement(),
        Expr::Not(_) => None,
        Expr::And(es) => prefilter::all_of(es.iter().map(|e| requirement(e, selections))),
        Expr::Or(es) => prefilter::any_of(es.iter().map(|e| requirement(e, selections))),
    }
}

/// The category of a logsource Kestrel evaluates, or why it does not.
pub(crate) fn check_logsource(ls: &RawLogsource) -> Result<Category, RuleErrorKind> {
    let product_ok = ls
        .product
        .as_deref()
        .is_none_or(|p| p.eq_ignore_ascii_case("linux"));
    if let (Some(category), true, None) = (ls.category.as_deref(), product_ok, &ls.service) {
        if let Some(category) = Category::from_name(category) {
            return Ok(category);
        }
    }
    let parts: Vec<String> = [
        ("category", &ls.category),
        ("product", &ls.product),
        ("service", &ls.service),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
    .collect();
    let described = if parts.is_empty() {
        "(empty)".to_string()
    } else {
        format!("({})", parts.join(", "))
    };
    Err(RuleErrorKind::UnsupportedLogsource(described))
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
