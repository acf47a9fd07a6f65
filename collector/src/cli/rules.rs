//! `kestrel-collector rules check DIR`, `rules test DIR` and `rules coverage DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use kestrel_detect::fixture::{self, FixtureReport};
use kestrel_detect::{RuleError, RuleSet};

/// Options of `kestrel-collector rules`.
#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    /// What to do with the rules.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// `kestrel-collector rules` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RulesCommand {
    /// Load every rule in DIR; print each invalid rule with file, line and reason; exit 1 if any.
    Check {
        /// Rules directory (searched recursively; `fixtures/` is skipped).
        dir: PathBuf,
    },
    /// Run the fixtures of DIR/fixtures against the rules of DIR; pass/fail per rule; exit 1
    /// on any failure (a rule without a positive and a negative case fails).
    Test {
        /// Rules directory.
        dir: PathBuf,
    },
    /// Print the ATT&CK techniques the alerting rules of DIR cover, from their tags, as a
    /// Markdown table (technique, tactics, rules) followed by a count per tactic; exit 1 when
    /// an alerting rule has no technique tag.
    Coverage {
        /// Rules directory.
        dir: PathBuf,
    },
}

/// `rules check` or `rules test` found problems (the details were printed).
#[derive(Debug, thiserror::Error)]
pub enum RulesCliError {
    /// The directory could not be read.
    #[error(transparent)]
    Load(#[from] kestrel_detect::LoadError),
    /// Some rules are invalid.
    #[error("{invalid} problem(s) in the rules of {}", dir.display())]
    Invalid {
        /// The rules directory.
        dir: PathBuf,
        /// How many problems were found.
        invalid: usize,
    },
    /// Some alerting rules carry no ATT&CK technique tag.
    #[error("{untagged} alerting rule(s) in {} have no ATT&CK technique tag", dir.display())]
    Untagged {
        /// The rules directory.
        dir: PathBuf,
        /// How many.
        untagged: usize,
    },
    /// Some rule tests failed.
    #[error("{failed} rule(s) failed their fixtures in {}", dir.display())]
    Failed {
        /// The rules directory.
        dir: PathBuf,
        /// Rules that failed plus unusable fixture files.
        failed: usize,
    },
}

/// Runs a `rules` subcommand, printing its report to stdout.
pub fn run(args: RulesArgs) -> Result<(), RulesCliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.command {
        RulesCommand::Check { dir } => check(&dir, &mut out),
        RulesCommand::Test { dir } => test(&dir, &mut out),
        RulesCommand::Coverage { dir } => {
            let (set, errors) = RuleSet::load_dir(&dir)?;
            print_errors(&errors, &mut out);
            let coverage = Coverage::of(&set);
            let _ = out.write_all(coverage.markdown().as_bytes());
            for id in &coverage.untagged {
                let _ = writeln!(out, "UNTAGGED {id}");
            }
            if coverage.untagged.is_empty() {
                Ok(())
            } else {
                Err(RulesCliError::Untagged {
                    dir,
                    untagged: coverage.untagged.len(),
                })
            }
        }
    }
}

/// The ATT&CK techniques a rule set's alerting rules (detection rules that report on their
/// own, and correlations) cover, read from their Sigma tags (`attack.t1059.004`,
/// `attack.execution`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Technique id (`T1059.004`) to the tactics named beside it and the rule ids tagged with it.
    pub techniques: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    /// Tactic to the alerting rules tagged with it.
    pub tactics: BTreeMap<String, BTreeSet<String>>,
    /// Alerting rules without any technique tag.
    pub untagged: Vec<String>,
}

impl Coverage {
    /// Reads the tags of `set`'s alerting rules.
    pub fn of(set: &RuleSet) -> Coverage {
        let mut coverage = Coverage::default();
        let detection = set
            .rules()
            .iter()
            .enumerate()
            .filter(|(i, _)| set.rule_emits(*i))
            .map(|(_, r)| (&r.id, &r.tags));
        let correlation = set
            .correlations()
            .iter()
            .enumerate()
            .filter(|(i, _)| set.correlation_emits(*i))
            .map(|(_, c)| (&c.info.id, &c.info.tags));
        for (id, tags) in detection.chain(correlation) {
            let mut techniques = Vec::new();
            let mut tactics = BTreeSet::new();
            for tag in tags {
                let Some(name) = tag.strip_prefix("attack.") else {
                    continue;
                };
                let numbered = |letter: char| {
                    name.len() >= 5
                        && name.starts_with([letter, letter.to_ascii_uppercase()])
                        && name[1..5].bytes().all(|b| b.is_ascii_digit())
                };
                if numbered('t') {
                    techniques.push(name.to_ascii_uppercase());
                } else if !numbered('g') && !numbered('s') {
                    // Groups (g0032) and software (s0002) are neither.
                    tactics.insert(name.to_owned());
                }
            }
            if techniques.is_empty() {
                coverage.untagged.push(id.clone());
            }
            for tactic in &tactics {
                coverage
                    .tactics
                    .entry(tactic.clone())
                    .or_default()
                    .insert(id.clone());
            }
            for technique in techniques {
                let entry = coverage.techniques.entry(technique).or_default();
                entry.0.extend(tactics.iter().cloned());
                entry.1.insert(id.clone());
            }
        }
        coverage
    }

    /// The Markdown tables: one row per technique, then one row per tactic.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| technique | tactics | rules |\n|---|---|---|\n");
        for (technique, (tactics, rules)) in &self.techniques {
            let link = technique.replacen('.', "/", 1);
            let tactics: Vec<&str> = tactics.iter().map(String::as_str).collect();
            let rules: Vec<String> = rules.iter().map(|r| format!("`{r}`")).collect();
            out.push_str(&format!(
                "| [{technique}](https://attack.mitre.org/techniques/{link}/) | {} | {} |\n",
                tactics.join(", "),
                rules.join(", ")
            ));
        }
        out.push_str("\n| tactic | techniques | rules |\n|---|---|---|\n");
        for (tactic, rules) in &self.tactics {
            let techniques = self
                .techniques
                .values()
                .filter(|(tactics, _)| tactics.contains(tactic))
                .count();
            out.push_str(&format!("| {tactic} | {techniques} | {} |\n", rules.len()));
        }
        out
    }
}

/// `rules check DIR`: writes one line per problem (a rule file reports all of its own, with
/// their lines) and a summary to `out`.
pub fn check(dir: &Path, out: &mut impl Write) -> Result<(), RulesCliError> {
    let (set, errors) = RuleSet::load_dir(dir)?;
    print_errors(&errors, out);
    let _ = writeln!(
        out,
        "{}: {} detection rule(s), {} correlation rule(s), {} filter(s) loaded; {} invalid \
         ({} problem(s))",
        dir.display(),
        set.rules().len(),
        set.correlations().len(),
        set.filter_count(),
        invalid_files(&errors),
        errors.len()
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RulesCliError::Invalid {
            dir: dir.to_path_buf(),
            invalid: errors.len(),
        })
    }
}

/// How many rule files the problems are in (a file reports every problem it has).
fn invalid_files(errors: &[RuleError]) -> usize {
    errors
        .iter()
        .map(|e| &e.path)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn print_errors(errors: &[RuleError], out: &mut impl Write) {
    for e in errors {
        let _ = writeln!(out, "INVALID {e}");
    }
}

/// `rules test DIR`: writes PASS/FAIL per rule and a summary to `out`.
pub fn test(dir: &Path, out: &mut impl Write) -> Result<(), RulesCliError> {
    let (set, errors) = RuleSet::load_dir(dir)?;
    print_errors(&errors, out);
    let (fixtures, fixture_errors) = fixture::load_fixtures(dir);
    let mut report = fixture::run(&Arc::new(set), &fixtures);
    report.errors.splice(0..0, fixture_errors);
    print_report(&report, out);
    let failed = report.rules.iter().filter(|r| !r.ok()).count() + report.errors.len();
    let _ = writeln!(
        out,
        "{}: {} rule(s) tested, {} passed, {} failed; {} invalid rule(s)",
        dir.display(),
        report.rules.len(),
        report.rules.len() - report.rules.iter().filter(|r| !r.ok()).count(),
        failed,
        errors.len()
    );
    if failed > 0 || !errors.is_empty() {
        return Err(RulesCliError::Failed {
            dir: dir.to_path_buf(),
            failed: failed + errors.len(),
        });
    }
    Ok(())
}

fn print_report(report: &FixtureReport, out: &mut impl Write) {
    for e in &report.errors {
        let _ = writeln!(out, "FAIL {e}");
    }
    for r in &report.rules {
        if r.ok() {
            let _ = writeln!(
                out,
                "PASS {} ({} case(s): {} match, {} no_match)",
                r.id, r.passed, r.positives, r.negatives
            );
        } else {
            let _ = writeln!(out, "FAIL {} ({})", r.id, r.path.display());
            for why in &r.failures {
                let _ = writeln!(out, "     {why}");
            }
        }
    }
}
