//! Sigma correlation rules: the definition as written, and the compiled form with its
//! references resolved against the rule set.
//!
//! Types: `event_count`, `value_count`, `temporal`, `temporal_ordered`, with `group-by`
//! (and `aliases`), `timespan`, `condition` and `generate`. The metric types `value_sum`,
//! `value_avg` and `value_percentile` are rejected with a reason.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::detection::{RuleInfo, RuleKind};
use crate::error::RuleErrorKind;
use crate::fields::Field;
use crate::parse::chunk::{Chunk, DocumentError};
use crate::parse::rule::RawMeta;

/// Longest timespan accepted (state for longer windows would be unbounded in practice).
pub(crate) const MAX_TIMESPAN_NS: u64 = 30 * 24 * 3600 * 1_000_000_000;

/// The correlation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    /// `event_count`: how many events in the window.
    EventCount,
    /// `value_count`: how many distinct values of a field in the window.
    ValueCount,
    /// `temporal`: all (or `condition` many) referenced rules matched in the window.
    Temporal,
    /// `temporal_ordered`: the referenced rules matched in the order given, within the window.
    TemporalOrdered,
}

impl CorrelationType {
    /// The Sigma name.
    pub fn name(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// A comparison in a correlation condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CountOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CountOp {
    fn holds(self, count: u64, bound: u64) -> bool {
        match self {
            CountOp::Gt => count > bound,
            CountOp::Gte => count >= bound,
            CountOp::Lt => count < bound,
            CountOp::Lte => count <= bound,
            CountOp::Eq => count == bound,
            CountOp::Neq => count != bound,
        }
    }
}

/// The AND of the comparisons of a `condition` map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CountCondition(pub(crate) Vec<(CountOp, u64)>);

impl CountCondition {
    /// True when `count` satisfies every comparison.
    pub(crate) fn holds(&self, count: u64) -> bool {
        self.0.iter().all(|(op, n)| op.holds(count, *n))
    }

    /// The largest count worth remembering: past it no comparison changes its answer.
    pub(crate) fn saturation(&self) -> u64 {
        self.0
            .iter()
            .map(|(_, n)| n.saturating_add(1))
            .max()
            .unwrap_or(1)
    }

    /// A count below which the condition cannot hold (at least 1).
    pub(crate) fn min_count(&self) -> u64 {
        self.0
            .iter()
            .map(|&(op, n)| match op {
                CountOp::Gt => n.saturating_add(1),
                CountOp::Gte | CountOp::Eq => n,
                CountOp::Lt | CountOp::Lte | CountOp::Neq => 1,
            })
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

/// A correlation rule as written, before its references are resolved.
#[derive(Debug)]
pub(crate) struct CorrelationDef {
    pub(crate) meta: RuleInfo,
    pub(crate) name: Option<String>,
    pub(crate) kind: CorrelationType,
    pub(crate) rules: Vec<String>,
    pub(crate) group_by: Vec<String>,
    /// alias -> (rule name -> field name).
    pub(crate) aliases: HashMap<String, HashMap<String, String>>,
    pub(crate) timespan_ns: u64,
    pub(crate) condition: CountCondition,
    /// `value_count`: the field(s) whose distinct values are counted.
    pub(crate) value_fields: Vec<String>,
    pub(crate) generate: bool,
    /// Identity of the definition, to keep state across reloads only when it is unchanged.
    pub(crate) fingerprint: u64,
    /// Line of the `correlation` key, for link errors.
    pub(crate) line: Option<usize>,
}

#[derive(Deserialize)]
struct RawCorrelationDoc {
    #[serde(flatten)]
    meta: RawMeta,
    correlation: RawCorrelation,
    #[serde(default)]
    generate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelation {
    #[serde(rename = "type")]
    kind: String,
    rules: StringOrList,
    #[serde(rename = "group-by", default)]
    group_by: Option<StringOrList>,
    timespan: Option<String>,
    condition: Option<serde_yaml::Mapping>,
    #[serde(default)]
    aliases: HashMap<String, HashMap<String, String>>,
    #[serde(default)]
    generate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

impl CorrelationDef {
    /// Parses the correlation rule in `chunk` of the file at `path`.
    pub(crate) fn compile(
        path: &Path,
        chunk: &Chunk<'_>,
        default_id: &str,
    ) -> Result<CorrelationDef, DocumentError> {
        let raw: RawCorrelationDoc = chunk.parse()?;
        let line = chunk.line_of("correlation", 0);
        let bad = |key: &str, reason: String| {
            let at = chunk.line_of(key, line.unwrap_or(0)).or(line);
            (RuleErrorKind::Correlation(reason), at)
        };
        let c = raw.correlation;
        let kind = match c.kind.as_str() {
            "event_count" => CorrelationType::EventCount,
            "value_count" => CorrelationType::ValueCount,
            "temporal" => CorrelationType::Temporal,
            "temporal_ordered" => CorrelationType::TemporalOrdered,
            "value_sum" | "value_avg" | "value_percentile" | "value_median" => {
                return Err(bad(
                    "type",
                    format!(
                        "type '{}' is not supported (supported: event_count, value_count, \
                         temporal, temporal_ordered)",
                        c.kind
                    ),
                ))
            }
            other => return Err(bad("type", format!("unknown type '{other}'"))),
        };
        let rules = c.rules.into_vec();
        if rules.is_empty() {
            return Err(bad("rules", "'rules' is empty".into()));
        }
        let mut unique = rules.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != rules.len() {
            return Err(bad("rules", "'rules' names a rule twice".into()));
        }
        let group_by = c.group_by.map(StringOrList::into_vec).unwrap_or_default();
        let timespan = c
            .timespan
            .ok_or_else(|| bad("correlation", "missing 'timespan'".into()))?;
        let timespan_ns = parse_timespan(&timespan).map_err(|r| bad("timespan", r))?;
        let (condition, value_fields) =
            parse_condition(kind, c.condition, rules.len()).map_err(|r| bad("condition", r))?;
        if kind == CorrelationType::TemporalOrdered && rules.len() < 2 {
            return Err(bad(
                "rules",
                "temporal_ordered needs at least two rules".into(),
            ));
        }
        let level = raw.meta.level(chunk)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        chunk.text.hash(&mut hasher);
        Ok(CorrelationDef {
            meta: RuleInfo {
                id: raw.meta.id_or(default_id),
                title: raw.meta.title,
                description: raw.meta.description.unwrap_or_default(),
                level,
                tags: raw.meta.tags,
                path: PathBuf::from(path),
                kind: RuleKind::Correlation,
            },
            name: raw.meta.name,
            kind,
            rules,
            group_by,
            aliases: c.aliases,
            timespan_ns,
            condition,
            value_fields,
            generate: raw.generate || c.generate.unwrap_or(false),
            fingerprint: hasher.finish(),
            line,
        })
    }
}

/// `Ns`, `Nm`, `Nh`, `Nd` (Sigma's `number + lowercase letter`).
pub(crate) fn parse_timespan(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let unit_ns: u64 = match text.chars().last() {
        Some('s') => 1_000_000_000,
        Some('m') => 60 * 1_000_000_000,
        Some('h') => 3600 * 1_000_000_000,
        Some('d') => 24 * 3600 * 1_000_000_000,
        _ => {
            return Err(format!(
                "timespan '{text}' must be a number followed by s, m, h or d"
            ))
        }
    };
    let n: u64 = text[..text.len() - 1]
        .parse()
        .map_err(|_| format!("timespan '{text}' must be a number followed by s, m, h or d"))?;
    let ns = n
        .checked_mul(unit_ns)
        .filter(|ns| *ns > 0 && *ns <= MAX_TIMESPAN_NS);
    ns.ok_or_else(|| format!("timespan '{text}' must be more than 0 and at most 30d"))
}

fn parse_condition(
    kind: CorrelationType,
    map: Option<serde_yaml::Mapping>,
    rule_count: usize,
) -> Result<(CountCondition, Vec<String>), String> {
    let mut ops = Vec::new();
    let mut fields = Vec::new();
    for (key, value) in map.iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        if key == "field" {
            fields = match value {
                Yaml::String(s) => vec![s.clone()],
                Yaml::Sequence(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("condition field must be a field name or a list of them")?,
                _ => return Err("condition field must be a field name or a list of them".into()),
            };
            continue;
        }
        let op = match key {
            "gt" => CountOp::Gt,
            "gte" => CountOp::Gte,
            "lt" => CountOp::Lt,
            "lte" => CountOp::Lte,
            "eq" => CountOp::Eq,
            "neq" => CountOp::Neq,
            other => {
                return Err(format!(
                    "unknown condition '{other}' (expected gt, gte, lt, lte, eq, neq, field)"
                ))
            }
        };
        let n = value
            .as_u64()
            .ok_or_else(|| format!("condition {key} needs a non-negative integer"))?;
        ops.push((op, n));
    }
    match kind {
        CorrelationType::Temporal | CorrelationType::TemporalOrdered if ops.is_empty() => {
            ops.push((CountOp::Gte, rule_count as u64));
        }
        CorrelationType::EventCount | CorrelationType::ValueCount if ops.is_empty() => {
            return Err(format!("{} needs a condition (gte, gt, …)", kind.name()));
        }
        _ => {}
    }
    if kind == CorrelationType::ValueCount && fields.is_empty() {
        return Err("value_count needs 'field' in its condition".into());
    }
    if kind != CorrelationType::ValueCount && !fields.is_empty() {
        return Err(format!("'field' does not apply to {}", kind.name()));
    }
    Ok((CountCondition(ops), fields))
}

/// What a correlation input refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A detection rule (index in the rule set).
    Rule(usize),
    /// Another correlation (index in the rule set).
    Correlation(usize),
}

/// One referenced rule with the fields its events are grouped and counted by.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) source: Source,
    /// The `group-by` fields resolved for this input (aliases applied), in `group-by` order.
    pub(crate) group_fields: Vec<Field>,
    /// `value_count`: the counted fields resolved for this input.
    pub(crate) value_fields: Vec<Field>,
}

/// A compiled correlation rule.
#[derive(Debug)]
pub struct Correlation {
    /// Identity and metadata (kind `correlation`).
    pub info: RuleInfo,
    /// The Sigma `name`.
    pub name: Option<String>,
    /// The correlation type.
    pub kind: CorrelationType,
    /// The window, in nanoseconds of event time.
    pub timespan_ns: u64,
    /// The `group-by` names as written (aliases unresolved), for the group key shown in alerts.
    pub group_by: Vec<String>,
    pub(crate) condition: CountCondition,
    pub(crate) inputs: Vec<Input>,
    /// Group keys include the host: a group-by field is an exec id, unique only per host.
    pub(crate) host_scoped: bool,
    pub(crate) fingerprint: u64,
}

/// Resolves a (possibly aliased) field name for one input rule.
pub(crate) fn resolve_field(
    def: &CorrelationDef,
    name: &str,
    input_names: &[&str],
) -> Result<Field, String> {
    if let Some(per_rule) = def.aliases.get(name) {
        let field = input_names
            .iter()
            .find_map(|n| per_rule.get(*n))
            .ok_or_else(|| {
                format!(
                    "alias '{name}' has no field for rule '{}'",
                    input_names.first().copied().unwrap_or_default()
                )
            })?;
        return Field::from_name(field)
            .ok_or_else(|| format!("unknown field '{field}' in alias '{name}'"));
    }
    Field::from_name(name).ok_or_else(|| format!("unknown field '{name}' in group-by or condition"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_in_seconds_minutes_hours_days() {
        assert_eq!(parse_timespan("60s"), Ok(60_000_000_000));
        assert_eq!(parse_timespan("5m"), Ok(300_000_000_000));
        assert_eq!(parse_timespan("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_timespan("2d"), Ok(172_800_000_000_000));
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "0s",
            "-1m",
            "31d",
            "99999999999999999999d",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn count_conditions_and_saturation() {
        let range = CountCondition(vec![(CountOp::Gt, 100), (CountOp::Lte, 200)]);
        assert!(!range.holds(100));
        assert!(range.holds(101) && range.holds(200));
        assert!(!range.holds(201));
        assert_eq!(range.saturation(), 201);
        assert_eq!(range.min_count(), 101);
        assert_eq!(CountCondition(vec![(CountOp::Lt, 3)]).min_count(), 1);
        assert!(CountCondition(vec![(CountOp::Neq, 3)]).holds(2));
    }

    #[test]
    fn temporal_defaults_to_all_rules() {
        let (cond, _) = parse_condition(CorrelationType::Temporal, None, 3).unwrap();
        assert!(cond.holds(3) && !cond.holds(2));
        assert!(parse_condition(CorrelationType::EventCount, None, 1).is_err());
        assert!(parse_condition(CorrelationType::ValueCount, None, 1).is_err());
    }
}
