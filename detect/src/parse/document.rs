//! Rule files: the YAML documents (separated by `---`) of a file, each a detection rule, a
//! correlation rule or a filter, compiled on its own.

use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::error::{RuleError, RuleErrorKind};
use crate::logsource::Category;
use crate::parse::chunk::{default_id, kind_of, split, Chunk, DocumentErrors, Kind};
use crate::parse::correlation::CorrelationDef;
use crate::parse::rule::{check_logsource, Logic, RawLogsource, RawMeta, Rule};

/// Files with more documents than this are rejected (bounds hostile input).
pub(crate) const MAX_DOCUMENTS: usize = 256;

/// A Sigma filter: a detection section AND-NOT-ed into the rules it names.
#[derive(Debug)]
pub(crate) struct FilterDef {
    /// The file it was loaded from.
    pub(crate) path: std::path::PathBuf,
    /// Ids or names of the rules it applies to.
    pub(crate) rules: Vec<String>,
    /// The compiled filter condition.
    pub(crate) logic: Logic,
    /// The filter's category (it applies only to rules of the same category).
    pub(crate) category: Category,
    /// Line of the `rules` key, for errors.
    pub(crate) line: Option<usize>,
}

#[derive(Deserialize)]
struct RawFilter {
    #[serde(flatten)]
    meta: RawMeta,
    logsource: RawLogsource,
    filter: serde_yaml::Mapping,
}

impl FilterDef {
    fn compile(path: &Path, chunk: &Chunk<'_>) -> Result<FilterDef, DocumentErrors> {
        let raw: RawFilter = chunk.parse()?;
        let mut problems = DocumentErrors::default();
        let category = problems.take(
            check_logsource(&raw.logsource).map_err(|kind| (kind, chunk.line_of("logsource", 0))),
        );
        let line = chunk.line_of("rules", 0);
        let rules = problems.take(match raw.filter.get("rules") {
            Some(Yaml::String(s)) => Ok(vec![s.clone()]),
            Some(Yaml::Sequence(items)) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    (
                        RuleErrorKind::Filter("rules must be a list of rule ids or names".into()),
                        line,
                    )
                }),
            _ => Err((
                RuleErrorKind::Filter("missing 'rules': the rules the filter applies to".into()),
                chunk.line_of("filter", 0),
            )),
        });
        let logic = category.and_then(|category| {
            problems.take(Logic::compile(&raw.filter, chunk, "filter", category))
        });
        let ((category, rules), logic) = problems.or(category.zip(rules).zip(logic))?;
        // `meta` (the mandatory title) is only validated: filters raise no alerts of their own.
        drop(raw.meta);
        Ok(FilterDef {
            path: path.to_path_buf(),
            rules,
            logic,
            category,
            line,
        })
    }
}

/// One document of a rule file, compiled on its own (references are resolved by the rule set).
#[derive(Debug)]
pub(crate) enum Document {
    /// A detection rule.
    Detection(Rule),
    /// A correlation rule.
    Correlation(CorrelationDef),
    /// A filter.
    Filter(FilterDef),
}

/// Parses every document of the file at `path`. A broken document is one error; the other
/// documents still load.
pub(crate) fn parse_file(path: &Path, text: &str) -> (Vec<Document>, Vec<RuleError>) {
    let chunks = split(text);
    if chunks.len() > MAX_DOCUMENTS {
        let kind = RuleErrorKind::Detection(format!(
            "{} YAML documents, more than the {MAX_DOCUMENTS} a rule file may have",
            chunks.len()
        ));
        return (Vec::new(), vec![RuleError::new(path, None, kind)]);
    }
    if chunks.is_empty() {
        let kind = RuleErrorKind::Detection("the file holds no YAML document".into());
        return (Vec::new(), vec![RuleError::new(path, None, kind)]);
    }
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        match parse_document(path, &chunk, &default_id(path, i, count)) {
            Ok(doc) => documents.push(doc),
            Err(problems) => errors.extend(
                problems
                    .0
                    .into_iter()
                    .map(|(kind, line)| RuleError::new(path, line, kind)),
            ),
        }
    }
    (documents, errors)
}

fn parse_document(
    path: &Path,
    chunk: &Chunk<'_>,
    default_id: &str,
) -> Result<Document, DocumentErrors> {
    let value = chunk.parse_value()?;
    if value.as_mapping().is_some_and(|m| m.contains_key("action")) {
        return Err(DocumentErrors::from((
            RuleErrorKind::UnsupportedDocument("rule collections (action: global/reset/repeat)"),
            chunk.line_of("action", 0),
        )));
    }
    match kind_of(&value) {
        None => Rule::compile(path, chunk, default_id).map(Document::Detection),
        Some(Kind::Correlation) => {
            Ok(CorrelationDef::compile(path, chunk, default_id).map(Document::Correlation)?)
        }
        Some(Kind::Filter) => FilterDef::compile(path, chunk).map(Document::Filter),
    }
}
