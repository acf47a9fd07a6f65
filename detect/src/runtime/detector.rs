//! The stateful detector: the current rule set, correlation state and the process sessions it
//! learned, applied to one event at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kestrel_proto::Event;

use crate::detection::Detection;
use crate::fields::{EventContext, FieldValues};
use crate::parse::correlation::Source;
use crate::rule_set::RuleSet;
use crate::runtime::correlator::{self, CorrelationLimits, CorrelationStats, Correlator, Fired};
use crate::runtime::sessions::{SessionStats, Sessions, DEFAULT_CAPACITY};

/// A rule set that can be replaced while detectors use it (hot reload).
///
/// Detectors check the generation counter before each event (one atomic load) and pick up a
/// new set for the next event, so a replacement never splits or repeats an event.
#[derive(Debug)]
pub struct SharedRules {
    current: RwLock<Arc<RuleSet>>,
    generation: AtomicU64,
}

impl SharedRules {
    /// Shares `rules` as generation 0.
    pub fn new(rules: Arc<RuleSet>) -> Arc<SharedRules> {
        Arc::new(SharedRules {
            current: RwLock::new(rules),
            generation: AtomicU64::new(0),
        })
    }

    /// The rule set in use now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the rule set; detectors use it from their next event on. Returns the new
    /// generation number.
    pub fn replace(&self, rules: Arc<RuleSet>) -> u64 {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = rules;
        // Bumped under the write lock: whoever sees the new generation reads the new set.
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// How many times the set was replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Counters of a detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Events evaluated.
    pub events: u64,
    /// Detections returned.
    pub detections: u64,
    /// Rule set replacements picked up.
    pub reloads: u64,
    /// Correlation state.
    pub correlation: CorrelationStats,
    /// Session table.
    pub sessions: SessionStats,
    /// Approximate heap bytes of correlation state and session table together.
    pub state_bytes: usize,
    /// Approximate heap bytes of the correlation state (groups, windows, keys; evidence events
    /// are shared and not included).
    pub correlation_bytes: usize,
    /// Approximate heap bytes of the session table.
    pub session_bytes: usize,
}

/// Applies the rules to a stream of events, keeping correlation state between events.
///
/// One detector per stream of events (the pipeline keeps one behind a mutex). Correlation
/// time is the events' `time_unix_ns`.
#[derive(Debug)]
pub struct Detector {
    shared: Arc<SharedRules>,
    rules: Arc<RuleSet>,
    generation: u64,
    values: FieldValues,
    chain_values: FieldValues,
    scratch: Vec<u64>,
    matched: Vec<usize>,
    hits: Vec<(usize, usize)>,
    sessions: Sessions,
    correlator: Correlator,
    verbose: bool,
    events: u64,
    detections: u64,
    reloads: u64,
}

impl Detector {
    /// A detector over a fixed rule set.
    pub fn new(rules: Arc<RuleSet>) -> Detector {
        Detector::with_shared(SharedRules::new(rules))
    }

    /// A detector that follows `shared`, picking up each replacement before its next event.
    pub fn with_shared(shared: Arc<SharedRules>) -> Detector {
        Detector::with_limits(shared, CorrelationLimits::default(), DEFAULT_CAPACITY)
    }

    /// Like [`Detector::with_shared`], with explicit caps on correlation state and on the
    /// number of processes whose session is remembered.
    pub fn with_limits(
        shared: Arc<SharedRules>,
        limits: CorrelationLimits,
        session_capacity: usize,
    ) -> Detector {
        let generation = shared.generation();
        let rules = shared.current();
        let correlator = Correlator::new(rules.correlations().len(), limits);
        Detector {
            shared,
            rules,
            generation,
            values: FieldValues::default(),
            chain_values: FieldValues::default(),
            scratch: Vec::new(),
            matched: Vec::new(),
            hits: Vec::new(),
            sessions: Sessions::new(session_capacity),
            correlator,
            verbose: false,
            events: 0,
            detections: 0,
            reloads: 0,
        }
    }

    /// Also report detection rules that only feed correlations (as
    /// [`RuleKind::Detection`](crate::RuleKind::Detection));
    /// rule tests use this to check such rules on their own.
    pub fn report_correlation_inputs(mut self, yes: bool) -> Detector {
        self.verbose = yes;
        self
    }

    /// The rule set the next event will be evaluated with (after a pending reload).
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The shared handle this detector follows (replace its set to reload).
    pub fn shared(&self) -> &Arc<SharedRules> {
        &self.shared
    }

    /// Counters and state size.
    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            events: self.events,
            detections: self.detections,
            reloads: self.reloads,
            correlation: self.correlator.stats(),
            sessions: self.sessions.stats(),
            state_bytes: correlator::heap_bytes(&self.correlator) + self.sessions.heap_bytes(),
            correlation_bytes: correlator::heap_bytes(&self.correlator),
            session_bytes: self.sessions.heap_bytes(),
        }
    }

    /// Evaluates one event: one [`Detection`] per detection rule that matches it (unless the
    /// rule only feeds correlations), plus one per correlation rule it completes. The event is
    /// shared, not copied, into the detections and the correlation evidence.
    pub fn evaluate(&mut self, event: &Arc<Event>) -> Vec<Detection> {
        self.refresh();
        self.events += 1;
        let session = self.sessions.observe(event);
        let ctx = EventContext {
            session: session.as_deref(),
        };
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        let rules = self.rules.clone();
        rules.for_each_match(event, &ctx, &mut self.values, &mut self.scratch, |r| {
            matched.push(r)
        });
        let mut detections = Vec::new();
        self.hits.clear();
        for &r in &matched {
            if self.verbose || rules.rule_emits(r) {
                detections.push(Detection {
                    rule: rules.rule_info(r).clone(),
                    events: vec![event.clone()],
                    group: None,
                    session: session.clone(),
                });
            }
            self.hits.extend(&rules.rule_links(r).feeds);
        }
        self.matched = matched;
        if !self.hits.is_empty() {
            self.correlate(&rules, event, &ctx, &mut detections);
        }
        self.correlator.sweep(rules.correlations());
        self.sessions.after(event);
        self.detections += detections.len() as u64;
        detections
    }

    /// Feeds the collected (correlation, input) hits, then the correlations that fire into
    /// the correlations that consume them.
    fn correlate(
        &mut self,
        rules: &RuleSet,
        event: &Arc<Event>,
        ctx: &EventContext<'_>,
        detections: &mut Vec<Detection>,
    ) {
        // Per correlation, later inputs first: one event matching two steps of an ordered
        // sequence must not complete both.
        let mut hits = std::mem::take(&mut self.hits);
        hits.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        hits.dedup();
        let time = event.time_unix_ns;
        let mut queue: VecDeque<(usize, usize)> = hits.iter().copied().collect();
        let mut chained_values_loaded = false;
        let mut fired: HashSet<usize> = HashSet::new();
        while let Some((c, input)) = queue.pop_front() {
            let correlation = &rules.correlations()[c];
            let from_correlation =
                matches!(correlation.inputs[input].source, Source::Correlation(_));
            let values = if from_correlation {
                if !chained_values_loaded {
                    // Chained inputs may group by fields the base rules did not need.
                    self.chain_values.load();
                    let all: Vec<_> = crate::fields::FIELDS.iter().map(|d| d.field).collect();
                    self.chain_values.fill(event, ctx, &all);
                    chained_values_loaded = true;
                }
                &self.chain_values
            } else {
                &self.values
            };
            let Some(Fired {
                correlation: index,
                group,
                evidence,
            }) = self
                .correlator
                .update(c, correlation, input, event, values, time)
            else {
                continue;
            };
            let links = rules.correlation_links(index);
            if links.emits || self.verbose {
                detections.push(Detection {
                    rule: Arc::new(correlation.info.clone()),
                    events: evidence,
                    group: Some(group),
                    session: ctx.session.map(Arc::from),
                });
            }
            if fired.insert(index) {
                let mut next = links.feeds.clone();
                next.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                queue.extend(next);
            }
        }
        hits.clear();
        self.hits = hits;
    }

    fn refresh(&mut self) {
        let generation = self.shared.generation();
        if generation == self.generation {
            return;
        }
        let new = self.shared.current();
        // Keep the state of correlations that are unchanged (same id and definition).
        let old: HashMap<(&str, u64), usize> = self
            .rules
            .correlations()
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.info.id.as_str(), c.fingerprint), i))
            .collect();
        let keep: Vec<Option<usize>> = new
            .correlations()
            .iter()
            .map(|c| old.get(&(c.info.id.as_str(), c.fingerprint)).copied())
            .collect();
        self.correlator.remap(&keep);
        self.rules = new;
        self.generation = generation;
        self.reloads += 1;
    }
}
