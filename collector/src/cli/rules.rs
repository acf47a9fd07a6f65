//! `kestrel-collector rules check DIR` and `rules test DIR`.

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
}

/// `rules check` or `rules test` found problems (the details were printed).
#[derive(Debug, thiserror::Error)]
pub enum RulesCliError {
    /// The directory could not be read.
    #[error(transparent)]
    Load(#[from] kestrel_detect::LoadError),
    /// Some rules are invalid.
    #[error("{invalid} invalid rule(s) in {}", dir.display())]
    Invalid {
        /// The rules directory.
        dir: PathBuf,
        /// How many problems were found.
        invalid: usize,
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
    }
}

/// `rules check DIR`: writes one line per invalid rule and a summary to `out`.
pub fn check(dir: &Path, out: &mut impl Write) -> Result<(), RulesCliError> {
    let (set, errors) = RuleSet::load_dir(dir)?;
    print_errors(&errors, out);
    let _ = writeln!(
        out,
        "{}: {} detection rule(s), {} correlation rule(s), {} filter(s) loaded; {} invalid",
        dir.display(),
        set.rules().len(),
        set.correlations().len(),
        set.filter_count(),
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
