//! Compilation of one search identifier (a map of field tests, or a list of such maps) and its
//! evaluation on an event.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_yaml::Value as Yaml;

use crate::compile::modifiers::{parse_key, Base64, Modifiers, Utf16};
use crate::compile::pattern::{self, Anchor, Cidr, Compare, Matcher};
use crate::compile::prefilter::{self, Requirement};
use crate::error::RuleErrorKind;
use crate::fields::{Field, FieldKind, FieldValues, Value, NOT_PRODUCED};
use crate::logsource::Category;

/// Values longer than this are rejected (rules are small; this bounds hostile input).
pub(crate) const MAX_VALUE_BYTES: usize = 64 * 1024;

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
    /// values are OR-ed, or AND-ed with `all`; `neq` negates the result.
    Values {
        all: bool,
        neq: bool,
        values: Vec<Vec<Matcher>>,
    },
    /// `fieldref`: the value compared with other fields' values.
    FieldRef {
        others: Vec<Field>,
        anchor: Anchor,
        cased: bool,
        neq: bool,
    },
}

impl Selection {
    /// Compiles the search identifier `name` with its YAML definition, for rules of `category`.
    pub(crate) fn compile(
        name: &str,
        def: &Yaml,
        category: Category,
    ) -> Result<Selection, Vec<SelectionError>> {
        let at_name = |kind| {
            vec![SelectionError {
                kind,
                key: name.to_string(),
            }]
        };
        let alternatives = match def {
            Yaml::Mapping(map) => vec![compile_map(name, map, category)?],
            Yaml::Sequence(items) if !items.is_empty() => {
                let mut alternatives = Vec::new();
                let mut problems = Vec::new();
                for item in items {
                    match item {
                        Yaml::Mapping(map) => match compile_map(name, map, category) {
                            Ok(tests) => alternatives.push(tests),
                            Err(errors) => problems.extend(errors),
                        },
                        _ => {
                            problems.extend(at_name(RuleErrorKind::KeywordSearch(name.to_string())))
                        }
                    }
                }
                if !problems.is_empty() {
                    return Err(problems);
                }
                alternatives
            }
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
    pub(crate) fn matches(&self, values: &FieldValues) -> bool {
        self.alternatives
            .iter()
            .any(|tests| tests.iter().all(|t| t.matches(values)))
    }

    /// Every field the selection reads.
    pub(crate) fn fields(&self, out: &mut Vec<Field>) {
        for test in self.alternatives.iter().flatten() {
            out.push(test.field);
            if let Test::FieldRef { others, .. } = &test.test {
                out.extend(others.iter().copied());
            }
        }
    }

    /// Texts the selection cannot match without (see [`prefilter`]).
    pub(crate) fn requirement(&self) -> Requirement {
        prefilter::any_of(
            self.alternatives
                .iter()
                .map(|tests| prefilter::all_of(tests.iter().map(FieldTest::requirement))),
        )
    }
}

impl FieldTest {
    fn matches(&self, values: &FieldValues) -> bool {
        let value = values.get(self.field);
        match &self.test {
            Test::Null => value.is_none_or(|v| v.raw.is_empty()),
            Test::Exists(expected) => value.is_some() == *expected,
            Test::Values { all, neq, values } => {
                let hit = value.is_some_and(|value| {
                    let one = |alts: &Vec<Matcher>| alts.iter().any(|m| m.matches(value));
                    if *all {
                        values.iter().all(one)
                    } else {
                        values.iter().any(one)
                    }
                });
                hit != *neq
            }
            Test::FieldRef {
                others,
                anchor,
                cased,
                neq,
            } => {
                let hit = value.is_some_and(|value| {
                    others.iter().any(|other| {
                        values
                            .get(*other)
                            .is_some_and(|o| field_ref_matches(value, o, *anchor, *cased))
                    })
                });
                hit != *neq
            }
        }
    }

    fn requirement(&self) -> Requirement {
        match &self.test {
            Test::Values {
                all,
                neq: false,
                values,
            } => {
                let value_req = |alts: &Vec<Matcher>| {
                    prefilter::any_of(
                        alts.iter()
                            .map(|m| prefilter::texts(self.field, m.required_texts())),
                    )
                };
                if *all {
                    prefilter::all_of(values.iter().map(value_req))
                } else {
                    prefilter::any_of(values.iter().map(value_req))
                }
            }
            _ => None,
        }
    }
}

fn field_ref_matches(value: Value<'_>, other: Value<'_>, anchor: Anchor, cased: bool) -> bool {
    let (hay, needle) = if cased {
        (value.raw, other.raw)
    } else {
        (value.lower, other.lower)
    };
    match anchor {
        Anchor::Whole => hay == needle,
        Anchor::Contains => hay.contains(needle),
        Anchor::Start => hay.starts_with(needle),
        Anchor::End => hay.ends_with(needle),
    }
}

fn compile_map(
    selection: &str,
    map: &serde_yaml::Mapping,
    category: Category,
) -> Result<Vec<FieldTest>, Vec<SelectionError>> {
    if map.is_empty() {
        return Err(vec![SelectionError {
            kind: RuleErrorKind::Detection(format!("selection '{selection}' is an empty map")),
            key: selection.to_string(),
        }]);
    }
    let mut tests = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in map {
        let compiled = match key {
            Yaml::String(key) => {
                compile_field(selection, key, value, category).map_err(|kind| SelectionError {
                    kind,
                    key: key.clone(),
                })
            }
            other => Err(SelectionError {
                kind: RuleErrorKind::Detection(format!(
                    "selection '{selection}' has a non-string key {other:?}"
                )),
                key: selection.to_string(),
            }),
        };
        match compiled {
            Ok(test) => tests.push(test),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(tests)
    } else {
        Err(problems)
    }
}

/// Looks `name` up and checks that events of `category` carry it.
fn resolve_field(selection: &str, name: &str, category: Category) -> Result<Field, RuleErrorKind> {
    let Some(field) = Field::from_name(name) else {
        return Err(match NOT_PRODUCED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => RuleErrorKind::FieldNotAvailable {
                field: name.to_string(),
                why,
            },
            None => RuleErrorKind::UnknownField {
                field: name.to_string(),
                selection: selection.to_string(),
            },
        });
    };
    if !field.def().categories.contains(category) {
        return Err(RuleErrorKind::FieldNotProduced {
            field: name.to_string(),
            category: category.name(),
        });
    }
    Ok(field)
}

fn compile_field(
    selection: &str,
    key: &str,
    value: &Yaml,
    category: Category,
) -> Result<FieldTest, RuleErrorKind> {
    let (name, mods) = parse_key(key)?;
    if name.is_empty() {
        return Err(RuleErrorKind::KeywordSearch(selection.to_string()));
    }
    let field = resolve_field(selection, name, category)?;
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
    let kind = field.kind();
    if mods.time.is_some() && kind != FieldKind::Time {
        return Err(invalid(&format!(
            "time modifiers need a time field ({} is not one; UtcTime is)",
            field.name()
        )));
    }
    if mods.compare.is_some() && mods.time.is_none() && kind != FieldKind::Number {
        return Err(invalid(&format!("{} is not a numeric field", field.name())));
    }
    if mods.cidr && kind != FieldKind::Ip {
        return Err(invalid(&format!(
            "{} is not an IP address field",
            field.name()
        )));
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
    if mods.fieldref {
        let others = scalars
            .into_iter()
            .map(|v| {
                let name = v
                    .as_str()
                    .ok_or_else(|| invalid("'fieldref' values must be field names"))?;
                resolve_field(selection, name, category)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(FieldTest {
            field,
            test: Test::FieldRef {
                others,
                anchor: mods.anchor,
                cased: mods.cased,
                neq: mods.neq,
            },
        });
    }
    let values = scalars
        .into_iter()
        .map(|v| compile_value(key, v, &mods))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FieldTest {
        field,
        test: Test::Values {
            all: mods.all,
            neq: mods.neq,
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
    if let Some(part) = mods.time {
        return match value.as_f64() {
            Some(n) => Ok(vec![Matcher::Time(
                part,
                mods.compare.unwrap_or(Compare::Eq),
                n,
            )]),
            None => Err(invalid("time modifiers need a number")),
        };
    }
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
    if text.len() > MAX_VALUE_BYTES {
        return Err(invalid(&format!(
            "value is {} bytes, more than the {MAX_VALUE_BYTES} a value may have",
            text.len()
        )));
    }
    if mods.cidr {
        return Cidr::parse(&text)
            .map(|c| vec![Matcher::Cidr(c)])
            .map_err(|reason| invalid(&reason));
    }
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
    let bytes = encode_utf16(&plain, mods.utf16);
    let encoded = match kind {
        Base64::Plain => vec![BASE64.encode(&bytes)],
        Base64::Offset => base64_offsets(&bytes),
    };
    encoded
        .iter()
        .map(|lit| string_matcher(key, lit.chars().map(pattern::Tok::Char).collect(), mods))
        .collect()
}

/// The bytes to base64-encode: UTF-8, or UTF-16 per the utf16 modifiers.
fn encode_utf16(text: &str, utf16: Option<Utf16>) -> Vec<u8> {
    let units = text.encode_utf16();
    match utf16 {
        None => text.as_bytes().to_vec(),
        Some(Utf16::Le) => units.flat_map(u16::to_le_bytes).collect(),
        Some(Utf16::Be) => units.flat_map(u16::to_be_bytes).collect(),
        Some(Utf16::Bom) => [0xFF, 0xFE]
            .into_iter()
            .chain(units.flat_map(u16::to_le_bytes))
            .collect(),
    }
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
    Matcher::from_tokens(&toks, mods.cased || mods.base64.is_some()).map_err(|error| {
        RuleErrorKind::Regex {
            field: key.to_string(),
            error,
        }
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

    #[test]
    fn utf16_values_are_encoded_before_base64() {
        // pySigma: `IEX` |wide|base64 -> SQBFAFgA
        assert_eq!(
            BASE64.encode(encode_utf16("IEX", Some(Utf16::Le))),
            "SQBFAFgA"
        );
        assert_eq!(encode_utf16("A", Some(Utf16::Be)), vec![0, 0x41]);
        assert_eq!(
            encode_utf16("A", Some(Utf16::Bom)),
            vec![0xFF, 0xFE, 0x41, 0]
        );
    }
}
