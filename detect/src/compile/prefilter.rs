//! Literal prefilter: the texts a rule cannot match without.
//!
//! For each rule the compiler derives a *requirement*: a set of `(field, text)` pairs such that
//! whenever the rule matches, at least one text occurs in the lowercase value of its field. At
//! evaluation one Aho-Corasick automaton per field finds every text in one pass, and only rules
//! whose requirement was hit (plus the rules without one) are evaluated in full.

use std::collections::HashMap;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};

use crate::fields::{Field, FieldValues};

/// Texts shorter than this are not prefilter entries. One character is enough: the automaton
/// costs the same per byte whatever its texts, a common text only costs a few more candidate
/// marks, and a rule with a rare one (`^\[` of a kernel thread name) is no longer evaluated on
/// every event.
const MIN_TEXT_LEN: usize = 1;

/// At least one of these `(field, lowercase text)` pairs occurs in every event a rule matches;
/// `None`: no such set is known, the rule is always evaluated.
pub(crate) type Requirement = Option<Vec<(Field, String)>>;

/// A requirement of one of `texts` in one field (`None` when there is none or one is empty).
pub(crate) fn texts(field: Field, texts: Option<Vec<String>>) -> Requirement {
    let texts = texts.filter(|t| !t.is_empty() && t.iter().all(|t| t.len() >= MIN_TEXT_LEN))?;
    Some(texts.into_iter().map(|t| (field, t)).collect())
}

/// A requirement of one text in one field (`None` when it is absent or empty).
#[cfg(test)]
pub(crate) fn text(field: Field, text: Option<String>) -> Requirement {
    texts(field, text.map(|t| vec![t]))
}

/// Requirement of "any of these holds": the union, known only when every part is known.
pub(crate) fn any_of(parts: impl IntoIterator<Item = Requirement>) -> Requirement {
    let mut union = Vec::new();
    for part in parts {
        union.extend(part?);
    }
    union.sort();
    union.dedup();
    (!union.is_empty()).then_some(union)
}

/// Requirement of "all of these hold": the most selective known part.
pub(crate) fn all_of(parts: impl IntoIterator<Item = Requirement>) -> Requirement {
    parts.into_iter().flatten().max_by_key(|r| score(r))
}

/// Higher is more selective: the shortest text counts most, then fewer alternatives.
fn score(req: &[(Field, String)]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = req.iter().map(|(_, t)| t.len()).min().unwrap_or(0);
    (shortest.min(16), std::cmp::Reverse(req.len()))
}

/// The compiled prefilter of a group of rules.
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    /// Rules without a requirement, as a bit set over the group's rules.
    always: Vec<u64>,
    /// One automaton per field that has texts.
    fields: Vec<FieldAutomaton>,
}

#[derive(Debug)]
struct FieldAutomaton {
    field: Field,
    automaton: DFA,
    /// The unanchored start state of `automaton`.
    start: StateID,
    /// Pattern id -> rules (indices in the group) that the text makes candidates.
    rules: Vec<Vec<u32>>,
}

impl Prefilter {
    /// Builds the prefilter for rules `0..requirements.len()` of a group.
    pub(crate) fn build(requirements: &[Requirement]) -> Prefilter {
        let words = requirements.len().div_ceil(64);
        let mut always = vec![0u64; words];
        let mut per_field: HashMap<Field, HashMap<String, Vec<u32>>> = HashMap::new();
        for (i, req) in requirements.iter().enumerate() {
            match req {
                None => always[i / 64] |= 1 << (i % 64),
                Some(pairs) => {
                    for (field, text) in pairs {
                        per_field
                            .entry(*field)
                            .or_default()
                            .entry(text.clone())
                            .or_default()
                            .push(i as u32);
                    }
                }
            }
        }
        let mut fields: Vec<FieldAutomaton> = per_field
            .into_iter()
            .map(|(field, texts)| {
                let mut texts: Vec<(String, Vec<u32>)> = texts.into_iter().collect();
                texts.sort();
                // Values are short and searched once each: a full DFA, stepped by hand (see
                // `candidates`), without the skip-ahead prefilter that costs more than it saves.
                let automaton = DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(texts.iter().map(|(t, _)| t.as_bytes()))
                    .expect("prefilter automaton within default limits");
                let start = automaton
                    .start_state(Anchored::No)
                    .expect("unanchored start state");
                FieldAutomaton {
                    field,
                    automaton,
                    start,
                    rules: texts.into_iter().map(|(_, r)| r).collect(),
                }
            })
            .collect();
        fields.sort_by_key(|f| f.field);
        Prefilter { always, fields }
    }

    /// The fields the prefilter reads.
    pub(crate) fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.fields.iter().map(|f| f.field)
    }

    /// Writes into `candidates` the bit set of rules worth evaluating on the current event.
    pub(crate) fn candidates(&self, values: &FieldValues, candidates: &mut Vec<u64>) {
        candidates.clear();
        candidates.extend_from_slice(&self.always);
        for f in &self.fields {
            let Some(value) = values.get(f.field) else {
                continue;
            };
            // Every occurrence of every text (overlapping search); only the pattern ids are
            // needed, not positions, so the DFA is stepped directly rather than through an
            // iterator that reports each match as a search of its own.
            let dfa = &f.automaton;
            let mut sid = f.start;
            let mut mark = |sid: StateID| {
                for i in 0..dfa.match_len(sid) {
                    for &rule in &f.rules[dfa.match_pattern(sid, i).as_usize()] {
                        candidates[rule as usize / 64] |= 1 << (rule % 64);
                    }
                }
            };
            if dfa.is_match(sid) {
                mark(sid);
            }
            for &b in value.lower.as_bytes() {
                sid = dfa.next_state(Anchored::No, sid, b);
                if dfa.is_special(sid) {
                    if dfa.is_dead(sid) {
                        break;
                    }
                    if dfa.is_match(sid) {
                        mark(sid);
                    }
                }
            }
        }
    }
}

/// The indices of the set bits, in increasing order.
pub(crate) fn bits(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            Some(w * 64 + bit)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_of_needs_every_part_known() {
        let a = text(Field::Image, Some("/bin/nc".into()));
        let b = text(Field::CommandLine, Some("socat".into()));
        assert_eq!(any_of([a.clone(), b.clone()]).unwrap().len(), 2);
        assert_eq!(any_of([a.clone(), None]), None);
        assert_eq!(all_of([a.clone(), None]), a);
        assert_eq!(text(Field::Image, Some(String::new())), None, "too short");
        assert!(text(Field::Image, Some("[".into())).is_some());
    }

    #[test]
    fn all_of_prefers_the_longest_shortest_text() {
        let short = any_of([
            text(Field::Image, Some("/nc".into())),
            text(Field::Image, Some("/ncat".into())),
        ]);
        let long = text(Field::CommandLine, Some("/dev/tcp/".into()));
        assert_eq!(all_of([short, long.clone()]), long);
    }

    #[test]
    fn bits_iterates_set_bits_in_order() {
        let set = [0b1010u64, 1 << 63];
        assert_eq!(bits(&set).collect::<Vec<_>>(), vec![1, 3, 127]);
    }
}
