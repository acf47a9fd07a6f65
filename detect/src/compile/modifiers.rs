//! Parsing of a detection key `Field|mod1|mod2` into the field name and its value modifiers.

use crate::compile::pattern::{Anchor, Compare, TimePart};
use crate::compile::regex_flags::RegexFlags;
use crate::error::RuleErrorKind;

/// How values are encoded before matching (`base64`, `base64offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base64 {
    /// The whole value, base64-encoded.
    Plain,
    /// The three encodings of the value at byte offsets 0, 1 and 2 inside a longer encoded text.
    Offset,
}

/// A UTF-16 re-encoding of the value before base64 (`utf16le`/`wide`, `utf16be`, `utf16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Utf16 {
    /// Little endian (`utf16le`, `wide`).
    Le,
    /// Big endian (`utf16be`).
    Be,
    /// Little endian after a byte order mark (`utf16`).
    Bom,
}

/// The value modifiers of one detection key, validated for conflicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Modifiers {
    /// `contains` / `startswith` / `endswith`.
    pub(crate) anchor: Anchor,
    /// `all`: every value of the list must match.
    pub(crate) all: bool,
    /// `cased`: case-sensitive matching.
    pub(crate) cased: bool,
    /// `windash`: flag dashes match any dash-like character.
    pub(crate) windash: bool,
    /// `base64` / `base64offset`.
    pub(crate) base64: Option<Base64>,
    /// `utf16le` / `utf16be` / `utf16` / `wide` (only before base64).
    pub(crate) utf16: Option<Utf16>,
    /// `re` with its `i`/`m`/`s` flags.
    pub(crate) regex: Option<RegexFlags>,
    /// `exists`: the value is a boolean saying whether the field must be present.
    pub(crate) exists: bool,
    /// `lt` / `lte` / `gt` / `gte`.
    pub(crate) compare: Option<Compare>,
    /// `minute` / `hour` / `day` / `week` / `month` / `year`.
    pub(crate) time: Option<TimePart>,
    /// `cidr`: values are IP networks.
    pub(crate) cidr: bool,
    /// `fieldref`: values name another field whose value is compared.
    pub(crate) fieldref: bool,
    /// `neq`: the test holds when no value matches.
    pub(crate) neq: bool,
}

impl Modifiers {
    /// True when the modifiers transform string values (anchors, encodings, windash).
    fn transforms_strings(&self) -> bool {
        self.anchor != Anchor::Whole || self.windash || self.base64.is_some()
    }
}

/// A modifier Sigma defines that Kestrel does not evaluate, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "expand",
    "placeholders are not configured, so the rule cannot be evaluated as written",
)];

/// Splits `key` into the field name and its parsed, validated modifiers.
pub(crate) fn parse_key(key: &str) -> Result<(&str, Modifiers), RuleErrorKind> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut mods = Modifiers::default();
    let conflict = |reason: String| RuleErrorKind::InvalidValue {
        field: key.to_string(),
        reason,
    };
    for name in parts {
        let needs_regex = || conflict(format!("modifier '{name}' is only valid after 're'"));
        match name {
            "contains" | "startswith" | "endswith" => {
                if mods.anchor != Anchor::Whole {
                    return Err(conflict(format!(
                        "modifier '{name}' conflicts with an earlier contains/startswith/endswith"
                    )));
                }
                mods.anchor = match name {
                    "contains" => Anchor::Contains,
                    "startswith" => Anchor::Start,
                    _ => Anchor::End,
                };
            }
            "all" => mods.all = true,
            "cased" => mods.cased = true,
            "windash" => mods.windash = true,
            "base64" => mods.base64 = Some(Base64::Plain),
            "base64offset" => mods.base64 = Some(Base64::Offset),
            "utf16le" | "wide" => mods.utf16 = Some(Utf16::Le),
            "utf16be" => mods.utf16 = Some(Utf16::Be),
            "utf16" => mods.utf16 = Some(Utf16::Bom),
            "re" => mods.regex = Some(RegexFlags::default()),
            "i" | "ignorecase" => {
                mods.regex
                    .as_mut()
                    .ok_or_else(needs_regex)?
                    .case_insensitive = true
            }
            "m" | "multiline" => mods.regex.as_mut().ok_or_else(needs_regex)?.multi_line = true,
            "s" | "dotall" => mods.regex.as_mut().ok_or_else(needs_regex)?.dot_all = true,
            "exists" => mods.exists = true,
            "lt" => mods.compare = Some(Compare::Lt),
            "lte" => mods.compare = Some(Compare::Lte),
            "gt" => mods.compare = Some(Compare::Gt),
            "gte" => mods.compare = Some(Compare::Gte),
            "minute" => mods.time = Some(TimePart::Minute),
            "hour" => mods.time = Some(TimePart::Hour),
            "day" => mods.time = Some(TimePart::Day),
            "week" => mods.time = Some(TimePart::Week),
            "month" => mods.time = Some(TimePart::Month),
            "year" => mods.time = Some(TimePart::Year),
            "cidr" => mods.cidr = true,
            "fieldref" => mods.fieldref = true,
            "neq" => mods.neq = true,
            other => {
                return Err(match UNSUPPORTED.iter().find(|(n, _)| *n == other) {
                    Some((_, why)) => RuleErrorKind::UnsupportedModifier {
                        modifier: other.to_string(),
                        field: field.to_string(),
                        why,
                    },
                    None => RuleErrorKind::UnknownModifier {
                        modifier: other.to_string(),
                        field: field.to_string(),
                    },
                });
            }
        }
    }
    check_combination(&mods).map_err(|reason| conflict(reason.to_string()))?;
    Ok((field, mods))
}

/// Rejects modifier sets whose meaning is undefined.
fn check_combination(m: &Modifiers) -> Result<(), &'static str> {
    let strings = m.transforms_strings();
    if m.regex.is_some() && strings {
        return Err("'re' cannot be combined with contains/startswith/endswith/windash/base64");
    }
    if m.exists
        && (strings
            || m.regex.is_some()
            || m.compare.is_some()
            || m.all
            || m.cidr
            || m.fieldref
            || m.neq
            || m.time.is_some())
    {
        return Err("'exists' cannot be combined with other modifiers");
    }
    if m.compare.is_some() && (strings || m.regex.is_some() || m.cased || m.cidr || m.fieldref) {
        return Err("numeric comparisons cannot be combined with string modifiers");
    }
    if m.time.is_some() && (strings || m.regex.is_some() || m.cidr || m.fieldref) {
        return Err("time modifiers combine only with lt/lte/gt/gte and neq");
    }
    if m.windash && m.base64.is_some() {
        return Err("'windash' cannot be combined with base64");
    }
    if m.utf16.is_some() && m.base64.is_none() {
        return Err(
            "utf16/utf16le/utf16be/wide only apply before base64 or base64offset: event text is UTF-8",
        );
    }
    if m.cidr && (strings || m.regex.is_some() || m.fieldref || m.all) {
        return Err("'cidr' cannot be combined with string modifiers or 'all'");
    }
    if m.fieldref && (m.windash || m.base64.is_some() || m.regex.is_some()) {
        return Err("'fieldref' combines only with contains/startswith/endswith, cased and neq");
    }
    if m.neq && m.all {
        return Err("'neq' cannot be combined with 'all'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_without_modifiers_is_the_field() {
        let (field, mods) = parse_key("Image").unwrap();
        assert_eq!(field, "Image");
        assert_eq!(mods, Modifiers::default());
    }

    #[test]
    fn modifiers_chain_in_any_order() {
        let (field, mods) = parse_key("CommandLine|contains|all|windash|cased").unwrap();
        assert_eq!(field, "CommandLine");
        assert_eq!(mods.anchor, Anchor::Contains);
        assert!(mods.all && mods.windash && mods.cased);
        let (_, mods) = parse_key("CommandLine|base64offset|contains").unwrap();
        assert_eq!(mods.base64, Some(Base64::Offset));
        assert_eq!(mods.anchor, Anchor::Contains);
        let (_, mods) = parse_key("CommandLine|wide|base64offset|contains").unwrap();
        assert_eq!(mods.utf16, Some(Utf16::Le));
    }

    #[test]
    fn regex_sub_modifiers_set_flags() {
        let (_, mods) = parse_key("CommandLine|re|i|m|s").unwrap();
        assert_eq!(
            mods.regex,
            Some(RegexFlags {
                case_insensitive: true,
                multi_line: true,
                dot_all: true
            })
        );
        let err = parse_key("CommandLine|i").unwrap_err();
        assert!(err.to_string().contains("only valid after 're'"), "{err}");
    }

    #[test]
    fn every_appendix_modifier_but_expand_parses() {
        for key in [
            "F|contains",
            "F|startswith",
            "F|endswith",
            "F|all|contains",
            "F|exists",
            "F|cased",
            "F|neq",
            "F|windash",
            "F|re",
            "F|re|i",
            "F|re|m",
            "F|re|s",
            "F|base64",
            "F|base64offset|contains",
            "F|utf16le|base64",
            "F|utf16be|base64",
            "F|utf16|base64",
            "F|wide|base64offset",
            "F|lt",
            "F|lte",
            "F|gt",
            "F|gte",
            "F|minute",
            "F|hour",
            "F|day",
            "F|week",
            "F|month",
            "F|year",
            "F|hour|gte",
            "F|cidr",
            "F|fieldref",
            "F|fieldref|endswith",
        ] {
            assert!(parse_key(key).is_ok(), "{key}: {:?}", parse_key(key));
        }
    }

    #[test]
    fn unknown_modifier_names_modifier_and_field() {
        let err = parse_key("Image|endswithh").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown modifier 'endswithh' on field Image"
        );
    }

    #[test]
    fn unsupported_modifier_is_distinct_from_unknown() {
        let err = parse_key("CommandLine|expand").unwrap_err();
        assert!(matches!(err, RuleErrorKind::UnsupportedModifier { .. }));
        assert!(err
            .to_string()
            .starts_with("unsupported modifier 'expand' on field CommandLine"));
    }

    #[test]
    fn conflicting_modifiers_are_rejected() {
        for key in [
            "CommandLine|contains|endswith",
            "CommandLine|re|contains",
            "Image|exists|contains",
            "ProcessId|gt|contains",
            "CommandLine|windash|base64",
            "CommandLine|utf16le",
            "DestinationIp|cidr|contains",
            "Image|fieldref|re",
            "Image|neq|all",
            "UtcTime|hour|contains",
        ] {
            let err = parse_key(key).unwrap_err();
            assert!(
                matches!(err, RuleErrorKind::InvalidValue { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
