//! Linking the documents of a rule set: unique ids and names, filters applied to the rules they
//! name, and correlation rules resolved to the rules and correlations they reference.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{RuleError, RuleErrorKind};
use crate::fields::Field;
use crate::parse::correlation::{self, Correlation, CorrelationDef, Input, Source};
use crate::parse::document::FilterDef;
use crate::parse::rule::Rule;

/// Who consumes what, from every correlation definition (valid or not, so that a broken
/// correlation does not turn its inputs into noisy stand-alone rules).
#[derive(Debug, Default)]
pub(super) struct References {
    /// Ids of rules and correlations consumed by a correlation without `generate: true`.
    pub(super) quiet_rules: HashSet<String>,
}

/// Ids and names in use, to report duplicates.
#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<String, PathBuf>,
    names: HashMap<String, PathBuf>,
}

impl Names {
    pub(super) fn claim(
        &mut self,
        id: &str,
        name: Option<&str>,
        path: &Path,
    ) -> Result<(), RuleErrorKind> {
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
pub(super) fn apply_filters(
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
pub(super) fn link_correlations(
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
                    let field = correlation::resolve_field(def, name, &names)
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
