//! Sigma detection: loading rules from a directory, compiling them, matching events, and
//! correlating matches over time.
//!
//! - [`RuleSet`]: the compiled rules of a directory: detection rules routed by logsource
//!   category ([`Category`]), Sigma filters applied to the rules they name, and correlation
//!   rules linked to the rules they reference. Rules are compiled once: field lookups resolved
//!   through the one mapping table in `fields`, literals lowercased, wildcard and regex
//!   matchers built, and per category one literal prefilter (Aho-Corasick per field) that
//!   picks the few rules worth evaluating on an event.
//! - [`Detector`]: applies a rule set to a stream of events, with correlation state and the
//!   process sessions it learns; returns [`Detection`]s. Follows [`SharedRules`] for hot reload.
//!
//! Invalid rules are reported as [`RuleError`]s (file, line, reason) so callers can log and
//! skip them; the other rules still load.

mod calendar;
mod compile;
mod detection;
mod error;
mod fields;
mod logsource;
mod lowercase;
mod parse;
mod runtime;
mod testing;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_correlation;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use detection::{Detection, RuleInfo, RuleKind};
pub use error::{LoadError, RuleError, RuleErrorKind};
pub use fields::sigma_json;
pub use logsource::{categories_of, Category, CategorySet, CATEGORIES};
pub use parse::correlation::{Correlation, CorrelationType};
pub use parse::rule::Rule;
pub use runtime::correlator::{CorrelationLimits, CorrelationStats};
pub use runtime::detector::{Detector, DetectorStats, SharedRules};
pub use runtime::sessions::{SessionStats, DEFAULT_CAPACITY as DEFAULT_SESSION_CAPACITY};
pub use testing::fixture;

use compile::prefilter::Prefilter;
use fields::{EventContext, Field, FieldValues};
use logsource::CATEGORY_COUNT;
use parse::correlation::{CorrelationDef, Input, Source};
use parse::document::{Document, FilterDef};

/// Rule files larger than this are rejected (rules are small; this bounds hostile input).
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;
/// Sub-directory depth limit, against symlink loops.
const MAX_DIR_DEPTH: usize = 16;
/// Directories with this name inside a rules directory hold rule test fixtures, not rules.
pub const FIXTURES_DIR: &str = "fixtures";

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
struct Links {
    /// The rule reports detections of its own (not only an input of correlations).
    emits: bool,
    /// (correlation index, input index) pairs the rule feeds.
    feeds: Vec<(usize, usize)>,
}

impl RuleSet {
    /// Loads every `*.yml` / `*.yaml` file under `dir` recursively (hidden entries and
    /// [`FIXTURES_DIR`] directories are skipped, files load in path order).
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
                    let (docs, errs) = parse::document::parse_file(&path, &text);
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
            let (docs, errs) = parse::document::parse_file(&path, text);
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

    /// What detections of detection rule `index` report (one shared copy per rule).
    pub(crate) fn rule_info(&self, index: usize) -> &Arc<RuleInfo> {
        &self.rule_infos[index]
    }

    /// Detection rules whose logsource and detection match this event (including rules that
    /// only feed correlations). Stateless: session fields are absent; use a [`Detector`] for
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
            for i in compile::prefilter::bits(scratch) {
                let r = group.rules[i] as usize;
                values.fill(event, ctx, &self.rule_fields[r]);
                if self.rules[r].matches_values(values) {
                    f(r);
                }
            }
        }
    }
}

/// Who consumes what, from every correlation definition (valid or not, so that a broken
/// correlation does not turn its inputs into noisy stand-alone rules).
#[derive(Debug, Default)]
struct References {
    /// Ids of rules and correlations consumed by a correlation without `generate: true`.
    quiet_rules: HashSet<String>,
}

/// Ids and names in use, to report duplicates.
#[derive(Default)]
struct Names {
    ids: HashMap<String, PathBuf>,
    names: HashMap<String, PathBuf>,
}

impl Names {
    fn claim(&mut self, id: &str, name: Option<&str>, path: &Path) -> Result<(), RuleErrorKind> {
        if let Some(first) = self.ids.get(id) {
            return Err(RuleErrorKind::DuplicateId {
                id: id.to_string(),
                first: first.clone(),
            });
        }
        if let Some(name) = name {
            if let Some(first) = self.names.get(name) {
                return Err(RuleErrorKind::DuplicateName {
                    name: name.to_string(),
                    first: first.clone(),
                });
            }
            self.names.insert(name.to_string(), path.to_path_buf());
        }
        self.ids.insert(id.to_string(), path.to_path_buf());
        Ok(())
    }
}

/// Applies each filter to the rules it names; returns how many filters were applied.
fn apply_filters(
    rules: &mut [Rule],
    index: &HashMap<String, usize>,
    filters: Vec<FilterDef>,
    errors: &mut Vec<RuleError>,
) -> usize {
    let mut applied = 0;
    let mut targets_of = Vec::new();
    for filter in filters {
        let targets: Result<Vec<usize>, RuleErrorKind> = filter
            .rules
            .iter()
            .map(|reference| {
                let &i = index
                    .get(reference)
                    .ok_or_else(|| RuleErrorKind::UnknownReference {
                        reference: reference.clone(),
                    })?;
                if rules[i].category != filter.category {
                    return Err(RuleErrorKind::Filter(format!(
                        "filter for category {} cannot apply to rule '{reference}' of category {}",
                        filter.category.name(),
                        rules[i].category.name()
                    )));
                }
                Ok(i)
            })
            .collect();
        match targets {
            Ok(targets) => targets_of.push((targets, Arc::new(filter.logic))),
            Err(kind) => errors.push(RuleError::new(&filter.path, filter.line, kind)),
        }
    }
    for (targets, logic) in targets_of {
        for i in targets {
            rules[i].add_filter(logic.clone());
        }
        applied += 1;
    }
    applied
}

/// Resolves correlation references; returns the valid correlations (in definition order)
/// and which sources are consumed without `generate`.
fn link_correlations(
    rules: &[Rule],
    rule_index: &HashMap<String, usize>,
    defs: Vec<CorrelationDef>,
    errors: &mut Vec<RuleError>,
) -> (Vec<Correlation>, References) {
    let mut references = References::default();
    let def_index: HashMap<&str, usize> = defs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            [
                Some((d.meta.id.as_str(), i)),
                d.name.as_deref().map(|n| (n, i)),
            ]
        })
        .flatten()
        .collect();
    // Record consumption first, from every definition.
    for def in &defs {
        if def.generate {
            continue;
        }
        for reference in &def.rules {
            if let Some(&r) = rule_index.get(reference) {
                references.quiet_rules.insert(rules[r].id.clone());
            } else if let Some(&d) = def_index.get(reference.as_str()) {
                references.quiet_rules.insert(defs[d].meta.id.clone());
            }
        }
    }
    // Resolve in dependency order; a definition is valid when all it references is.
    let mut state: Vec<Resolve> = (0..defs.len()).map(|_| Resolve::Pending).collect();
    for d in 0..defs.len() {
        resolve(d, &defs, &def_index, rules, rule_index, &mut state, 0);
    }
    // Valid definitions keep their order; map old indices to new ones.
    let mut new_index = vec![None; defs.len()];
    let mut next = 0;
    for (d, s) in state.iter().enumerate() {
        if matches!(s, Resolve::Done(_)) {
            new_index[d] = Some(next);
            next += 1;
        }
    }
    let mut correlations = Vec::new();
    for (d, (def, s)) in defs.into_iter().zip(state).enumerate() {
        match s {
            Resolve::Done(inputs) => {
                let inputs = inputs
                    .into_iter()
                    .map(|mut input| {
                        if let Source::Correlation(o) = input.source {
                            input.source =
                                Source::Correlation(new_index[o].expect("valid dependency"));
                        }
                        input
                    })
                    .collect::<Vec<Input>>();
                let host_scoped = inputs
                    .iter()
                    .flat_map(|i| &i.group_fields)
                    .any(|f| f.is_exec_id());
                debug_assert_eq!(new_index[d], Some(correlations.len()));
                correlations.push(Correlation {
                    info: def.meta,
                    name: def.name,
                    kind: def.kind,
                    timespan_ns: def.timespan_ns,
                    group_by: def.group_by,
                    condition: def.condition,
                    inputs,
                    host_scoped,
                    fingerprint: def.fingerprint,
                });
            }
            Resolve::Failed(kind) => {
                errors.push(RuleError::new(&def.meta.path, def.line, kind));
            }
            Resolve::Pending | Resolve::Visiting => unreachable!("every definition resolved"),
        }
    }
    (correlations, references)
}

#[derive(Debug)]
enum Resolve {
    Pending,
    Visiting,
    Done(Vec<Input>),
    Failed(RuleErrorKind),
}

/// Correlation chains longer than this are rejected.
const MAX_CHAIN_DEPTH: usize = 16;

fn resolve(
    d: usize,
    defs: &[CorrelationDef],
    def_index: &HashMap<&str, usize>,
    rules: &[Rule],
    rule_index: &HashMap<String, usize>,
    state: &mut [Resolve],
    depth: usize,
) -> bool {
    match &state[d] {
        Resolve::Done(_) => return true,
        Resolve::Failed(_) => return false,
        Resolve::Visiting => return false,
        Resolve::Pending => {}
    }
    let def = &defs[d];
    if depth > MAX_CHAIN_DEPTH {
        state[d] = Resolve::Failed(RuleErrorKind::Correlation(format!(
            "correlation chain deeper than {MAX_CHAIN_DEPTH}"
        )));
        return false;
    }
    state[d] = Resolve::Visiting;
    let mut inputs = Vec::new();
    for reference in &def.rules {
        let (source, names, category) = if let Some(&r) = rule_index.get(reference) {
            let rule = &rules[r];
            let mut names = vec![reference.as_str(), rule.id.as_str()];
            names.extend(rule.name.as_deref());
            (Source::Rule(r), names, Some(rule.category))
        } else if let Some(&o) = def_index.get(reference.as_str()) {
            if !resolve(o, defs, def_index, rules, rule_index, state, depth + 1) {
                let kind = match &state[o] {
                    Resolve::Visiting => RuleErrorKind::Correlation(format!(
                        "references '{reference}', which depends on this correlation (cycle)"
                    )),
                    _ => RuleErrorKind::Correlation(format!(
                        "references correlation '{reference}', which failed to load"
                    )),
                };
                state[d] = Resolve::Failed(kind);
                return false;
            }
            let other = &defs[o];
            let mut names = vec![reference.as_str(), other.meta.id.as_str()];
            names.extend(other.name.as_deref());
            (Source::Correlation(o), names, None)
        } else {
            state[d] = Resolve::Failed(RuleErrorKind::UnknownReference {
                reference: reference.clone(),
            });
            return false;
        };
        let resolve_all = |list: &[String]| -> Result<Vec<Field>, RuleErrorKind> {
            list.iter()
                .map(|name| {
                    let field = parse::correlation::resolve_field(def, name, &names)
                        .map_err(RuleErrorKind::Correlation)?;
                    if let Some(category) = category {
                        if !field.def().categories.contains(category) {
                            return Err(RuleErrorKind::Correlation(format!(
                                "field '{}' is not produced for category {} (rule '{reference}')",
                                field.name(),
                                category.name()
                            )));
                        }
                    }
                    Ok(field)
                })
                .collect()
        };
        let fields =
            resolve_all(&def.group_by).and_then(|g| Ok((g, resolve_all(&def.value_fields)?)));
        match fields {
            Ok((group_fields, value_fields)) => inputs.push(Input {
                source,
                group_fields,
                value_fields,
            }),
            Err(kind) => {
                state[d] = Resolve::Failed(kind);
                return false;
            }
        }
    }
    state[d] = Resolve::Done(inputs);
    true
}

/// The rule files under `dir`, sorted.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    collect_rule_files(dir, 0, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect_rule_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let load_error = |error| LoadError {
        dir: dir.to_path_buf(),
        error,
    };
    if depth > MAX_DIR_DEPTH {
        return Err(load_error(std::io::Error::other(format!(
            "more than {MAX_DIR_DEPTH} nested directories (symlink loop?)"
        ))));
    }
    for entry in std::fs::read_dir(dir).map_err(load_error)? {
        let entry = entry.map_err(load_error)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; a dangling link is reported as a rule file problem below if it looks
        // like a rule, and ignored otherwise.
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            if name != FIXTURES_DIR {
                collect_rule_files(&path, depth + 1, out)?;
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_rule_file(path: &Path) -> Result<String, RuleError> {
    let fail = |kind| RuleError::new(path, None, kind);
    let size = std::fs::metadata(path)
        .map_err(|e| fail(RuleErrorKind::Read(e)))?
        .len();
    if size > MAX_RULE_FILE_BYTES {
        return Err(fail(RuleErrorKind::TooLarge {
            size,
            limit: MAX_RULE_FILE_BYTES,
        }));
    }
    std::fs::read_to_string(path).map_err(|e| fail(RuleErrorKind::Read(e)))
}
