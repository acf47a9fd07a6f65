//! Compilation of one search identifier (a map of field tests, or a list of such maps) and its
//! evaluation on an event.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_yaml::Value as Yaml;

use super::error::RuleErrorKind;
use super::fields::{EventView, Field};
use super::modifiers::{parse_key, Base64, Modifiers};
use super::pattern::{self, Matcher};

/// A compilation error with the YAML key it concerns, so the caller can report a line.
#[derive(Debug)]
pub(crate) struct SelectionError {
    /// What is wrong.
    pub(crate) kind: RuleErrorKind,
    /// The detection key (`Field|mods` or the identifier name) to locate in the file.
    pub(crate) key: String,
}

/// A compiled search identifier: an OR of alternatives, each an AND of field tests.
#[derive(Debug)]
pub(crate) struct Selection {
    alternatives: Vec<Vec<FieldTest>>,
}

/// One `Field|mods: values` entry.
#[derive(Debug)]
struct FieldTest {
    field: Field,
    test: Test,
}

#[derive(Debug)]
enum Test {
    /// `null`: the field is absent or empty.
    Null,
    /// `exists: true|false`.
    Exists(bool),
    /// Values: each value is a set of alternative matchers (encodings expand to several); the
    /// values are OR-ed, or AND-ed with `all`.
    Values {
        all: bool,
        values: Vec<Vec<Matcher>>,
    },
}

impl Selection {
    /// Compiles the search identifier `name` with its YAML definition.
    pub(crate) fn compile(name: &str, def: &Yaml) -> Result<Selection, SelectionError> {
        let at_name = |kind| SelectionError {
            kind,
            key: name.to_string(),
        };
        let alternatives = match def {
            Yaml::Mapping(map) => vec![compile_map(name, map)?],
            Yaml::Sequence(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Yaml::Mapping(map) => compile_map(name, map),
                    _ => Err(at_name(RuleErrorKind::KeywordSearch(name.to_string()))),
                })
                .collect::<Result<_, _>>()?,
            Yaml::Sequence(_) => {
                return Err(at_name(RuleErrorKind::Detection(format!(
                    "selection '{name}' is an empty list"
                ))))
            }
            Yaml::String(_) | Yaml::Number(_) | Yaml::Bool(_) => {
                return Err(at_name(RuleErrorKind::KeywordSearch(name.to_string())))
            }
            _ => {
                return Err(at_name(RuleErrorKind::Detection(format!(
                    "selection '{name}' must be a map of fields or a list of maps"
                ))))
            }
        };
        Ok(Selection { alternatives })
    }

    /// True when the event satisfies one of the alternatives.
    pub(crate) fn matches(&self, view: &EventView<'_>) -> bool {
        self.alternatives
            .iter()
            .any(|tests| tests.iter().all(|t| t.matches(view)))
    }
}

impl FieldTest {
    fn matches(&self, view: &EventView<'_>) -> bool {
        let value = view.get(self.field);
        match &self.test {
            Test::Null => value.is_none_or(|v| v.raw.is_empty()),
            Test::Exists(expected) => value.is_some() == *expected,
            Test::Values { all, values } => {
                let Some(value) = value else { return false };
                let one = |alts: &Vec<Matcher>| alts.iter().any(|m| m.matches(value));
                if *all {
                    values.iter().all(one)
                } else {
                    values.iter().any(one)
                }
            }
        }
    }
}

fn compile_map(
    selection: &str,
    map: &serde_yaml::Mapping,
) -> Result<Vec<FieldTest>, SelectionError> {
    if map.is_empty() {
        return Err(SelectionError {
            kind: RuleErrorKind::Detection(format!("selection '{selection}' is an empty map")),
            key: selection.to_string(),
        });
    }
    map.iter()
        .map(|(key, value)| {
            let key = match key {
                Yaml::String(s) => s.as_str(),
                other => {
                    return Err(SelectionError {
                        kind: RuleErrorKind::Detection(format!(
                            "selection '{selection}' has a non-string key {other:?}"
                        )),
                        key: selection.to_string(),
                    })
                }
            };
            compile_field(selection, key, value).map_err(|kind| SelectionError {
                kind,
                key: key.to_string(),
            })
        })
        .collect()
}

fn compile_field(selection: &str, key: &str, value: &Yaml) -> Result<FieldTest, RuleErrorKind> {
    let (name, mods) = parse_key(key)?;
    if name.is_empty() {
        return Err(RuleErrorKind::KeywordSearch(selection.to_string()));
    }
    let field = Field::from_name(name).ok_or_else(|| RuleErrorKind::UnknownField {
        field: name.to_string(),
        selection: selection.to_string(),
    })?;
    let invalid = |reason: &str| RuleErrorKind::InvalidValue {
        field: key.to_string(),
        reason: reason.to_string(),
    };
    if mods.exists {
        return match value {
            Yaml::Bool(b) => Ok(FieldTest {
                field,
                test: Test::Exists(*b),
            }),
            _ => Err(invalid("'exists' needs a boolean value")),
        };
    }
    if mods.compare.is_some() && !field.is_numeric() {
        return Err(invalid(&format!("{} is not a numeric field", field.name())));
    }
    let scalars: Vec<&Yaml> = match value {
        Yaml::Null if mods == Modifiers::default() => {
            return Ok(FieldTest {
                field,
                test: Test::Null,
            })
        }
        Yaml::Null => return Err(invalid("null cannot take modifiers")),
        Yaml::Sequence(items) if items.is_empty() => return Err(invalid("empty value list")),
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let values = scalars
        .into_iter()
        .map(|v| compile_value(key, v, &mods))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FieldTest {
        field,
        test: Test::Values {
            all: mods.all,
            values,
        },
    })
}

/// The text of a scalar YAML value (`None` for null, lists and maps).
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compiles one value of field key `key` into its alternative matchers.
fn compile_value(key: &str, value: &Yaml, mods: &Modifiers) -> Result<Vec<Matcher>, RuleErrorKind> {
    let invalid = |reason: &str| RuleErrorKind::InvalidValue {
        field: key.to_string(),
        reason: reason.to_string(),
    };
    if let Some(op) = mods.compare {
        return match value.as_f64() {
            Some(n) => Ok(vec![Matcher::Compare(op, n)]),
            None => Err(invalid("numeric comparison needs a number")),
        };
    }
    let text = match value {
        Yaml::Null => return Err(invalid("null cannot be part of a value list")),
        scalar => scalar_text(scalar)
            .ok_or_else(|| invalid("values must be strings, numbers or booleans"))?,
    };
    if let Some(flags) = mods.regex {
        return Matcher::regex(&text, flags)
            .map(|m| vec![m])
            .map_err(|error| RuleErrorKind::Regex {
                field: key.to_string(),
                error,
            });
    }
    let toks = pattern::parse(&text);
    let Some(kind) = mods.base64 else {
        return Ok(vec![string_matcher(key, toks, mods)?]);
    };
    let plain: String = toks
        .iter()
        .map(|t| match t {
            pattern::Tok::Char(c) => Some(*c),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("wildcards cannot be base64-encoded"))?;
    let encoded = match kind {
        Base64::Plain => vec![BASE64.encode(plain.as_bytes())],
        Base64::Offset => base64_offsets(plain.as_bytes()),
    };
    encoded
        .iter()
        .map(|lit| string_matcher(key, lit.chars().map(pattern::Tok::Char).collect(), mods))
        .collect()
}

fn string_matcher(
    key: &str,
    mut toks: Vec<pattern::Tok>,
    mods: &Modifiers,
) -> Result<Matcher, RuleErrorKind> {
    if mods.windash {
        pattern::windash(&mut toks);
    }
    let toks = pattern::anchor(toks, mods.anchor);
    Matcher::from_tokens(&toks, mods.cased).map_err(|error| RuleErrorKind::Regex {
        field: key.to_string(),
        error,
    })
}

/// The stable middle part of `value`'s base64 encoding at each of the three byte alignments
/// (the pySigma `base64offset` algorithm).
fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut shifted = vec![b' '; i];
            shifted.extend_from_slice(value);
            let encoded = BASE64.encode(&shifted);
            let end = encoded
                .len()
                .saturating_sub(END_TRIM[(value.len() + i) % 3]);
            encoded.get(START[i]..end).unwrap_or_default().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64offset_matches_pysigma_output() {
        // pySigma: `/dev/tcp` |base64offset -> L2Rldi90Y3, 9kZXYvdGNw, vZGV2L3Rjc
        assert_eq!(
            base64_offsets(b"/dev/tcp"),
            vec!["L2Rldi90Y3", "9kZXYvdGNw", "vZGV2L3Rjc"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        );
    }
}
