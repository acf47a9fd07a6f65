//! Correlation state on the live stream: per correlation rule and group, the window of recent
//! matches, with expiry by event time and caps that bound memory.
//!
//! A correlation fires when its condition holds after a match; its group then starts over (so
//! `gte: 5` fires once per 5 matches, not on every match after the fifth). Conditions are
//! checked as matches arrive: an upper bound alone (`lt`, `lte`) therefore fires on the first
//! match. Events without a `group-by` field do not take part.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use foldhash::fast::RandomState;

use kestrel_proto::Event;

use crate::fields::FieldValues;
use crate::parse::correlation::{Correlation, CorrelationType};

/// Caps on correlation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationLimits {
    /// Groups per correlation rule; past it the least recently updated groups are evicted.
    pub max_groups: usize,
    /// Matches (timestamps or distinct values) remembered per group, beyond what the
    /// condition needs to decide.
    pub max_entries: usize,
    /// Evidence events kept per group (the most recent ones).
    pub max_evidence: usize,
}

impl Default for CorrelationLimits {
    fn default() -> CorrelationLimits {
        CorrelationLimits {
            max_groups: 100_000,
            max_entries: 10_000,
            max_evidence: 8,
        }
    }
}

/// Counters of the correlation state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelationStats {
    /// Groups alive now, all rules together.
    pub groups: usize,
    /// Timestamps and distinct values remembered now.
    pub entries: usize,
    /// Groups dropped because a rule reached `max_groups`.
    pub groups_evicted: u64,
    /// Matches not remembered because a group reached `max_entries`.
    pub entries_dropped: u64,
    /// Groups dropped because their window passed.
    pub groups_expired: u64,
    /// Times a correlation fired.
    pub fired: u64,
}

/// A correlation that fired: its index and the group's evidence.
#[derive(Debug)]
pub(crate) struct Fired {
    pub(crate) correlation: usize,
    pub(crate) group: String,
    pub(crate) evidence: Vec<Arc<Event>>,
}

#[derive(Debug)]
struct Group {
    /// Newest match time, for expiry and eviction.
    last: u64,
    state: GroupState,
    evidence: VecDeque<Arc<Event>>,
    /// Matches offered as evidence since the group was created (kept or not).
    offered: u64,
}

#[derive(Debug)]
enum GroupState {
    /// Match times, oldest first.
    Count(VecDeque<u64>),
    /// Distinct value -> newest time it was seen.
    Values(HashMap<String, u64>),
    /// Per input: newest match time.
    Temporal(Vec<Option<u64>>),
    /// Per input i: start time of the latest sequence that reached input i in order.
    Ordered(Vec<Option<u64>>),
}

/// Group keys come from event fields an attacker controls: a seeded hasher keeps collisions
/// unpredictable.
type GroupMap = HashMap<String, Group, RandomState>;

/// The state of one correlation rule.
#[derive(Debug, Default)]
pub(crate) struct RuleState {
    groups: GroupMap,
}

/// All correlation state of a detector.
#[derive(Debug)]
pub(crate) struct Correlator {
    pub(crate) states: Vec<RuleState>,
    limits: CorrelationLimits,
    stats: CorrelationStats,
    watermark: u64,
    last_sweep: u64,
    /// Reused buffer for group keys (allocated only when a group is created).
    key: String,
}

/// Sweep for expired groups at most this often (event time).
const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

impl Correlator {
    /// Empty state for `count` correlation rules.
    pub(crate) fn new(count: usize, limits: CorrelationLimits) -> Correlator {
        Correlator {
            states: (0..count).map(|_| RuleState::default()).collect(),
            limits,
            stats: CorrelationStats::default(),
            watermark: 0,
            last_sweep: 0,
            key: String::new(),
        }
    }

    /// Replaces the per-rule state after a reload: `keep[i]` is the old index whose state the
    /// new rule `i` continues, if any.
    pub(crate) fn remap(&mut self, keep: &[Option<usize>]) {
        let mut old: Vec<Option<RuleState>> = std::mem::take(&mut self.states)
            .into_iter()
            .map(Some)
            .collect();
        self.states = keep
            .iter()
            .map(|k| {
                k.and_then(|i| old.get_mut(i).and_then(Option::take))
                    .unwrap_or_default()
            })
            .collect();
    }

    /// Records that input `input` of correlation `index` matched `event` (fields in `values`)
    /// at event time `time`; returns the firing when the condition now holds. A group that keeps
    /// the event as evidence shares it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &mut self,
        index: usize,
        correlation: &Correlation,
        input: usize,
        event: &Arc<Event>,
        values: &FieldValues,
        time: u64,
    ) -> Option<Fired> {
        let mut key = std::mem::take(&mut self.key);
        let fired = self.update_with_key(index, correlation, input, event, values, time, &mut key);
        self.key = key;
        fired
    }

    #[allow(clippy::too_many_arguments)]
    fn update_with_key(
        &mut self,
        index: usize,
        correlation: &Correlation,
        input: usize,
        event: &Arc<Event>,
        values: &FieldValues,
        time: u64,
        key: &mut String,
    ) -> Option<Fired> {
        let spec = &correlation.inputs[input];
        group_key(correlation, &spec.group_fields, values, event, key)?;
        let value = match correlation.kind {
            CorrelationType::ValueCount => Some(joined(&spec.value_fields, values)?),
            _ => None,
        };
        self.watermark = self.watermark.max(time);
        let limits = self.limits;
        let horizon = time.saturating_sub(correlation.timespan_ns);
        let groups = &mut self.states[index].groups;
        if !groups.contains_key(key.as_str()) {
            // A later step of an ordered sequence without its earlier steps changes nothing.
            if correlation.kind == CorrelationType::TemporalOrdered && input > 0 {
                return None;
            }
            if groups.len() >= limits.max_groups {
                self.stats.groups_evicted += evict_oldest(groups, limits.max_groups);
            }
        }
        let n_inputs = correlation.inputs.len();
        if !groups.contains_key(key.as_str()) {
            groups.insert(
                key.clone(),
                Group {
                    last: time,
                    state: match correlation.kind {
                        CorrelationType::EventCount => GroupState::Count(VecDeque::new()),
                        CorrelationType::ValueCount => GroupState::Values(HashMap::new()),
                        CorrelationType::Temporal => GroupState::Temporal(vec![None; n_inputs]),
                        CorrelationType::TemporalOrdered => {
                            GroupState::Ordered(vec![None; n_inputs])
                        }
                    },
                    evidence: VecDeque::new(),
                    offered: 0,
                },
            );
        }
        let group = groups.get_mut(key.as_str())?;
        group.last = group.last.max(time);
        let saturation = usize::try_from(correlation.condition.saturation())
            .unwrap_or(usize::MAX)
            .min(limits.max_entries);
        let condition = &correlation.condition;
        let (fires, advanced) = match &mut group.state {
            GroupState::Count(times) => {
                while times.front().is_some_and(|t| *t < horizon) {
                    times.pop_front();
                }
                if times.len() >= saturation {
                    times.pop_front();
                    self.stats.entries_dropped += 1;
                }
                times.push_back(time);
                (condition.holds(times.len() as u64), true)
            }
            GroupState::Values(seen) => {
                seen.retain(|_, t| *t >= horizon);
                let value = value.expect("value_count has a value");
                if let Some(t) = seen.get_mut(&value) {
                    *t = (*t).max(time);
                } else if seen.len() >= saturation {
                    self.stats.entries_dropped += 1;
                } else {
                    seen.insert(value, time);
                }
                (condition.holds(seen.len() as u64), true)
            }
            GroupState::Temporal(last) => {
                last[input] = Some(time);
                let count = last.iter().flatten().filter(|t| **t >= horizon).count();
                (condition.holds(count as u64), true)
            }
            GroupState::Ordered(stages) => {
                for s in stages.iter_mut() {
                    if s.is_some_and(|start| start < horizon) {
                        *s = None;
                    }
                }
                let advanced = if input == 0 {
                    stages[0] = Some(time);
                    true
                } else if let Some(start) = stages[input - 1] {
                    stages[input] = Some(start);
                    true
                } else {
                    false
                };
                (stages[n_inputs - 1].is_some(), advanced)
            }
        };
        if advanced && limits.max_evidence > 0 {
            group.offered += 1;
            // The group cannot fire before `min_offers(correlation)` matches were offered, and
            // then keeps only the last `max_evidence`: an earlier one would be dropped before
            // anyone sees it, so it is not copied at all.
            let survives =
                group.offered.saturating_add(limits.max_evidence as u64) > min_offers(correlation);
            if survives {
                if group.evidence.len() >= limits.max_evidence {
                    group.evidence.pop_front();
                }
                group.evidence.push_back(event.clone());
            }
        }
        if !fires {
            return None;
        }
        self.stats.fired += 1;
        let group = groups.remove(key.as_str())?;
        Some(Fired {
            correlation: index,
            group: display_key(correlation, &spec.group_fields, values),
            evidence: group.evidence.into_iter().collect(),
        })
    }

    /// Drops groups whose window passed, at most once per second of event time.
    pub(crate) fn sweep(&mut self, correlations: &[Correlation]) {
        if self.watermark < self.last_sweep + SWEEP_INTERVAL_NS {
            return;
        }
        self.last_sweep = self.watermark;
        for (state, c) in self.states.iter_mut().zip(correlations) {
            let horizon = self.watermark.saturating_sub(c.timespan_ns);
            let before = state.groups.len();
            state.groups.retain(|_, g| g.last >= horizon);
            self.stats.groups_expired += (before - state.groups.len()) as u64;
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> CorrelationStats {
        let mut stats = self.stats;
        stats.groups = self.states.iter().map(|s| s.groups.len()).sum();
        stats.entries = self
            .states
            .iter()
            .flat_map(|s| s.groups.values())
            .map(|g| match &g.state {
                GroupState::Count(t) => t.len(),
                GroupState::Values(v) => v.len(),
                GroupState::Temporal(t) | GroupState::Ordered(t) => t.iter().flatten().count(),
            })
            .sum();
        stats
    }
}

/// A lower bound of the matches a group of `correlation` has seen (since it was created) when it
/// fires: each match adds at most one timestamp, value or step.
fn min_offers(correlation: &Correlation) -> u64 {
    match correlation.kind {
        CorrelationType::TemporalOrdered => correlation.inputs.len() as u64,
        _ => correlation.condition.min_count(),
    }
}

/// Evicts the least recently updated groups (a tenth of the cap at once, so eviction is
/// amortized); returns how many.
fn evict_oldest(groups: &mut GroupMap, cap: usize) -> u64 {
    let drop = (cap / 10).max(1).min(groups.len());
    let mut lasts: Vec<u64> = groups.values().map(|g| g.last).collect();
    let (_, nth, _) = lasts.select_nth_unstable(drop - 1);
    let threshold = *nth;
    let before = groups.len();
    let mut budget = drop;
    groups.retain(|_, g| {
        if budget > 0 && g.last <= threshold {
            budget -= 1;
            false
        } else {
            true
        }
    });
    (before - groups.len()) as u64
}

const SEPARATOR: char = '\u{1f}';

/// Writes the group key into `key`: the group-by values (and the host when exec ids are
/// involved); `None` when the event lacks a group-by field.
fn group_key(
    correlation: &Correlation,
    fields: &[crate::fields::Field],
    values: &FieldValues,
    event: &Event,
    key: &mut String,
) -> Option<()> {
    key.clear();
    if correlation.host_scoped {
        key.push_str(&event.host);
        key.push(SEPARATOR);
    }
    for field in fields {
        key.push_str(values.get(*field)?.raw);
        key.push(SEPARATOR);
    }
    Some(())
}

fn joined(fields: &[crate::fields::Field], values: &FieldValues) -> Option<String> {
    let mut out = String::new();
    for field in fields {
        out.push_str(values.get(*field)?.raw);
        out.push(SEPARATOR);
    }
    Some(out)
}

fn display_key(
    correlation: &Correlation,
    fields: &[crate::fields::Field],
    values: &FieldValues,
) -> String {
    correlation
        .group_by
        .iter()
        .zip(fields)
        .map(|(name, f)| format!("{name}={}", values.get(*f).map_or("", |v| v.raw)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Approximate heap bytes of the state (capacities of maps, deques and keys; evidence events
/// are shared with the detections and counted once per group reference).
pub(crate) fn heap_bytes(correlator: &Correlator) -> usize {
    let mut bytes = 0;
    for state in &correlator.states {
        bytes += state.groups.capacity() * (std::mem::size_of::<(String, Group)>() + 1);
        for (key, g) in &state.groups {
            bytes += key.capacity();
            bytes += g.evidence.capacity() * std::mem::size_of::<Arc<Event>>();
            bytes += match &g.state {
                GroupState::Count(t) => t.capacity() * 8,
                GroupState::Values(v) => {
                    v.capacity() * (std::mem::size_of::<(String, u64)>() + 1)
                        + v.keys().map(String::capacity).sum::<usize>()
                }
                GroupState::Temporal(t) | GroupState::Ordered(t) => t.capacity() * 16,
            };
        }
    }
    bytes
}
