//! Sigma detection: loading rules from a directory, compiling them, matching events.
//!
//! Rules are compiled once at load (field lookups resolved through the one mapping table in
//! [`fields`], literals lowercased, wildcard and regex matchers built); matching an event computes
//! each field value at most once and shares it across every rule.
//!
//! Supported today: `process_creation` rules for Linux (exec events). Rules for other log sources
//! are reported as [`RuleError`]s so callers can log and skip them.

mod condition;
mod error;
mod fields;
mod modifiers;
mod pattern;
mod rule;
mod selection;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use error::{LoadError, RuleError, RuleErrorKind};
pub use rule::Rule;

use fields::EventView;

/// Rule files larger than this are rejected (rules are small; this bounds hostile input).
const MAX_RULE_FILE_BYTES: u64 = 1 << 20;
/// Sub-directory depth limit, against symlink loops.
const MAX_DIR_DEPTH: usize = 16;

/// A compiled set of Sigma rules, ready to match events.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Loads every `*.yml` / `*.yaml` file under `dir` recursively (hidden entries are skipped,
    /// files load in path order).
    ///
    /// An unreadable or missing directory is a [`LoadError`] naming the path. An invalid rule
    /// file is one [`RuleError`] (file and reason) in the returned list; the other rules still load.
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<RuleError>), LoadError> {
        let mut files = Vec::new();
        collect_rule_files(dir, 0, &mut files)?;
        files.sort();
        let mut errors = Vec::new();
        let rules = files
            .into_iter()
            .filter_map(|path| match read_rule(&path) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    errors.push(e);
                    None
                }
            })
            .collect::<Vec<_>>();
        let (set, duplicates) = RuleSet::from_rules(rules);
        errors.extend(duplicates);
        Ok((set, errors))
    }

    /// Builds a set from compiled rules. A rule whose id an earlier rule already uses is left out
    /// and reported.
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> (RuleSet, Vec<RuleError>) {
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut errors = Vec::new();
        let mut kept = Vec::new();
        for rule in rules {
            if let Some(first) = seen.get(&rule.id) {
                errors.push(RuleError {
                    path: rule.path.clone(),
                    line: None,
                    kind: RuleErrorKind::DuplicateId {
                        id: rule.id.clone(),
                        first: first.clone(),
                    },
                });
                continue;
            }
            seen.insert(rule.id.clone(), rule.path.clone());
            kept.push(rule);
        }
        (RuleSet { rules: kept }, errors)
    }

    /// Number of loaded rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The loaded rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules whose logsource and detection match this event.
    pub fn matching(&self, event: &kestrel_proto::Event) -> Vec<&Rule> {
        let Some(view) = EventView::process_creation(event) else {
            return Vec::new();
        };
        self.rules
            .iter()
            .filter(|r| r.matches_view(&view))
            .collect()
    }
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
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; a dangling link is reported as a rule file problem below if it looks
        // like a rule, and ignored otherwise.
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            collect_rule_files(&path, depth + 1, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_rule(path: &Path) -> Result<Rule, RuleError> {
    let fail = |kind| RuleError {
        path: path.to_path_buf(),
        line: None,
        kind,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(RuleErrorKind::Read(e)))?
        .len();
    if size > MAX_RULE_FILE_BYTES {
        return Err(fail(RuleErrorKind::TooLarge {
            size,
            limit: MAX_RULE_FILE_BYTES,
        }));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(RuleErrorKind::Read(e)))?;
    Rule::from_yaml(path, &text)
}
