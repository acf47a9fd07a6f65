//! The rule set: the documents of every rule file, linked (filters applied, correlations
//! resolved) and grouped by category with one prefilter per category.

pub(crate) mod files;
mod link;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compile::prefilter::{self, Prefilter};
use crate::detection::{RuleInfo, RuleKind};
use crate::error::{LoadError, RuleError};
use crate::fields::{EventContext, Field, FieldValues};
use crate::logsource::{categories_of, CATEGORY_COUNT};
use crate::parse::correlation::{Correlation, Source};
use crate::parse::document::{self, Document};
use crate::parse::rule::Rule;
use files::{read_rule_file, rule_files};
use link::{apply_filters, link_correlations, Names, References};

/// A compiled set of Sigma rules, ready to match events.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    correlations: Vec<Correlation>,
    filters: usize,
    groups: Vec<Group>,
    /// Per detection rule: the fields it (with its filters) reads and those the correlations
    /// it feeds group or count by, filled only when the rule is a candidate.
    rule_fields: Vec<Vec<Field>>,
    rule_links: Vec<Links>,
    correlation_links: Vec<Links>,
    /// Per detection rule: what its detections report, made once and shared by each of them.
    rule_infos: Vec<Arc<RuleInfo>>,
}

/// The rules of one category, with their prefilter.
#[derive(Debug, Default)]
struct Group {
    /// Indices into `RuleSet::rules`.
    rules: Vec<u32>,
    prefilter: Prefilter,
    /// The fields the prefilter reads (each rule's own are filled when it is a candidate).
    fields: Vec<Field>,
}

/// What a rule's match leads to.
#[derive(Debug, Default, Clone)]
pub(crate) struct Links {
    /// The rule reports detections of its own (not only an input of correlations).
    pub(crate) emits: bool,
    /// (correlation index, input index) pairs the rule feeds.
    pub(crate) feeds: Vec<(usize, usize)>,
}

impl RuleSet {
    /// Loads every `*.yml` / `*.yaml` file under `dir` recursively (hidden entries and
    /// [`FIXTURES_DIR`](crate::FIXTURES_DIR) directories are skipped, files load in path order).
    ///
    /// An unreadable or missing directory is a [`LoadError`] naming the path. An invalid rule
    /// is one [`RuleError`] (file, line and reason) in the returned list; the other rules still
    /// load.
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<RuleError>), LoadError> {
        let files = rule_files(dir)?;
        let mut errors = Vec::new();
        let mut documents = Vec::new();
        for path in files {
            match read_rule_file(&path) {
                Ok(text) => {
                    let (docs, errs) = document::parse_file(&path, &text);
                    documents.extend(docs);
                    errors.extend(errs);
                }
                Err(e) => errors.push(e),
            }
        }
        let (set, link_errors) = RuleSet::from_documents(documents);
        errors.extend(link_errors);
        Ok((set, errors))
    }

    /// Builds a set from rule file texts (`(path, text)`, each possibly several documents),
    /// as [`RuleSet::load_dir`] would from files with these contents.
    pub fn from_texts<'t>(
        files: impl IntoIterator<Item = (PathBuf, &'t str)>,
    ) -> (RuleSet, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut documents = Vec::new();
        for (path, text) in files {
            let (docs, errs) = document::parse_file(&path, text);
            documents.extend(docs);
            errors.extend(errs);
        }
        let (set, link_errors) = RuleSet::from_documents(documents);
        errors.extend(link_errors);
        (set, errors)
    }

    /// Builds a set from compiled detection rules. A rule whose id an earlier rule already uses
    /// is left out and reported.
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> (RuleSet, Vec<RuleError>) {
        RuleSet::from_documents(rules.into_iter().map(Document::Detection).collect())
    }

    fn from_documents(documents: Vec<Document>) -> (RuleSet, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let mut defs = Vec::new();
        let mut filters = Vec::new();
        for doc in documents {
            match doc {
                Document::Detection(rule) => rules.push(rule),
                Document::Correlation(def) => defs.push(def),
                Document::Filter(filter) => filters.push(filter),
            }
        }
        let mut names = Names::default();
        rules.retain(
            |rule| match names.claim(&rule.id, rule.name.as_deref(), &rule.path) {
                Ok(()) => true,
                Err(kind) => {
                    errors.push(RuleError::new(&rule.path, None, kind));
                    false
                }
            },
        );
        defs.retain(
            |def| match names.claim(&def.meta.id, def.name.as_deref(), &def.meta.path) {
                Ok(()) => true,
                Err(kind) => {
                    errors.push(RuleError::new(&def.meta.path, def.line, kind));
                    false
                }
            },
        );
        let rule_index: HashMap<String, usize> = rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| [Some((r.id.clone(), i)), r.name.clone().map(|n| (n, i))])
            .flatten()
            .collect();
        let applied = apply_filters(&mut rules, &rule_index, filters, &mut errors);
        let (correlations, sources) = link_correlations(&rules, &rule_index, defs, &mut errors);
        let mut set = RuleSet {
            rules,
            correlations,
            filters: applied,
            ..RuleSet::default()
        };
        set.link(&sources);
        set.build_groups();
        (set, errors)
    }

    /// Fills `rule_links` and `correlation_links` from the correlations' inputs; sources that
    /// some correlation consumes without `generate: true` report no detections of their own.
    fn link(&mut self, referenced: &References) {
        self.rule_links = vec![Links::default(); self.rules.len()];
        self.correlation_links = vec![Links::default(); self.correlations.len()];
        for (c, corr) in self.correlations.iter().enumerate() {
            for (i, input) in corr.inputs.iter().enumerate() {
                match input.source {
                    Source::Rule(r) => self.rule_links[r].feeds.push((c, i)),
                    Source::Correlation(o) => self.correlation_links[o].feeds.push((c, i)),
                }
            }
        }
        for (r, links) in self.rule_links.iter_mut().enumerate() {
            links.emits = !referenced.quiet_rules.contains(&self.rules[r].id);
        }
        for (c, links) in self.correlation_links.iter_mut().enumerate() {
            links.emits = !referenced
                .quiet_rules
                .contains(&self.correlations[c].info.id);
        }
    }

    fn build_groups(&mut self) {
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); CATEGORY_COUNT];
        for (i, rule) in self.rules.iter().enumerate() {
            members[rule.category.index()].push(i as u32);
        }
        self.rule_infos = self
            .rules
            .iter()
            .map(|rule| Arc::new(rule.info(RuleKind::Detection)))
            .collect();
        self.rule_fields = (0..self.rules.len())
            .map(|r| {
                let mut fields = Vec::new();
                self.rules[r].fields(&mut fields);
                for &(c, i) in &self.rule_links[r].feeds {
                    let input = &self.correlations[c].inputs[i];
                    fields.extend(&input.group_fields);
                    fields.extend(&input.value_fields);
                }
                fields.sort();
                fields.dedup();
                fields
            })
            .collect();
        self.groups = members
            .into_iter()
            .map(|rules| {
                let requirements: Vec<_> = rules
                    .iter()
                    .map(|&r| self.rules[r as usize].requirement())
                    .collect();
                let prefilter = Prefilter::build(&requirements);
                let fields: Vec<Field> = prefilter.fields().collect();
                Group {
                    rules,
                    prefilter,
                    fields,
                }
            })
            .collect();
    }

    /// Number of loaded rules (detection and correlation).
    pub fn len(&self) -> usize {
        self.rules.len() + self.correlations.len()
    }

    /// True when no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The loaded detection rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The loaded correlation rules, in load order.
    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    /// Number of Sigma filters applied.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// True when detection rule `index` reports detections of its own; false when it only
    /// feeds correlation rules (Sigma's default, unless a correlation says `generate: true`).
    pub fn rule_emits(&self, index: usize) -> bool {
        self.rule_links.get(index).is_some_and(|l| l.emits)
    }

    /// True when correlation rule `index` reports detections of its own; false when it only
    /// feeds other correlations (unless one says `generate: true`).
    pub fn correlation_emits(&self, index: usize) -> bool {
        self.correlation_links.get(index).is_some_and(|l| l.emits)
    }

    /// What detection rule `index`'s match leads to.
    pub(crate) fn rule_links(&self, index: usize) -> &Links {
        &self.rule_links[index]
    }

    /// What correlation `index`'s firing leads to.
    pub(crate) fn correlation_links(&self, index: usize) -> &Links {
        &self.correlation_links[index]
    }

    /// What detections of detection rule `index` report (one shared copy per rule).
    pub(crate) fn rule_info(&self, index: usize) -> &Arc<RuleInfo> {
        &self.rule_infos[index]
    }

    /// Detection rules whose logsource and detection match this event (including rules that
    /// only feed correlations). Stateless: session fields are absent; use a
    /// [`Detector`](crate::Detector) for
    /// the full evaluation.
    pub fn matching(&self, event: &kestrel_proto::Event) -> Vec<&Rule> {
        let mut values = FieldValues::default();
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        self.for_each_match(
            event,
            &EventContext::default(),
            &mut values,
            &mut scratch,
            |i| out.push(i),
        );
        out.into_iter().map(|i| &self.rules[i]).collect()
    }

    /// Calls `f` with the index of every detection rule matching `event`, in rule order per
    /// category. `values` and `scratch` are reused buffers.
    pub(crate) fn for_each_match(
        &self,
        event: &kestrel_proto::Event,
        ctx: &EventContext<'_>,
        values: &mut FieldValues,
        scratch: &mut Vec<u64>,
        mut f: impl FnMut(usize),
    ) {
        let categories = categories_of(event);
        if categories.is_empty() || self.groups.is_empty() {
            return;
        }
        values.load();
        for category in categories.iter() {
            let group = &self.groups[category.index()];
            if group.rules.is_empty() {
                continue;
            }
            values.fill(event, ctx, &group.fields);
            group.prefilter.candidates(values, scratch);
            for i in prefilter::bits(scratch) {
                let r = group.rules[i] as usize;
                values.fill(event, ctx, &self.rule_fields[r]);
                if self.rules[r].matches_values(values) {
                    f(r);
                }
            }
        }
    }
}
