//! Issue 14 items 3 and 4: the default rules stay quiet on a developer's ordinary work, and so
//! do the public SigmaHQ Linux rules (`../shared/sigma`, DRL 1.1, read where they are, never
//! copied here) once the filters of `collector/filters/` are loaded beside them.
//!
//! The benign corpus is `collector/filters/fixtures/developer_work.yml`: builds and test runs,
//! package installs, git, a container run, a service restart, a cron job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kestrel_detect::fixture::{self, Case};
use kestrel_detect::{Detector, RuleSet};

fn collector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sigma_linux() -> Option<PathBuf> {
    let dir = collector_dir().join("../../shared/sigma/rules/linux");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SigmaHQ rules not found at {}: skipped", dir.display());
        None
    }
}

fn corpus() -> Vec<Case> {
    let path = collector_dir().join("filters/fixtures/developer_work.yml");
    fixture::parse_cases(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What fires on the corpus: `(case, rule id, rule title)`.
fn fired(rules: Arc<RuleSet>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for case in corpus() {
        let mut detector = Detector::new(rules.clone());
        for event in case.proto_events().unwrap() {
            for d in detector.evaluate(&Arc::new(event)) {
                out.push((case.name.clone(), d.rule.id.clone(), d.rule.title.clone()));
            }
        }
    }
    out
}

fn link(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target.canonicalize().unwrap(), link).unwrap();
}

/// A rules directory as a user would set it up: the default rules, the SigmaHQ Linux rules of
/// the log sources Kestrel produces, and (when `filters`) collector/filters.
fn combined(sigma: &Path, filters: bool) -> (tempfile::TempDir, Arc<RuleSet>) {
    let dir = tempfile::tempdir().unwrap();
    link(&collector_dir().join("rules"), &dir.path().join("kestrel"));
    std::fs::create_dir(dir.path().join("sigmahq")).unwrap();
    for sub in ["process_creation", "file_event", "network_connection"] {
        link(&sigma.join(sub), &dir.path().join("sigmahq").join(sub));
    }
    if filters {
        link(
            &collector_dir().join("filters"),
            &dir.path().join("filters"),
        );
    }
    let (set, errors) = RuleSet::load_dir(dir.path()).unwrap();
    assert!(
        errors.is_empty(),
        "every SigmaHQ Linux rule loads: {errors:?}"
    );
    (dir, Arc::new(set))
}

#[test]
fn default_rules_raise_nothing_on_a_developers_ordinary_work() {
    let (set, errors) = RuleSet::load_dir(&collector_dir().join("rules")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let fired = fired(Arc::new(set));
    assert!(fired.is_empty(), "{fired:#?}");
}

#[test]
fn sigmahq_linux_rules_with_the_benign_filters_raise_nothing_on_a_developers_ordinary_work() {
    let Some(sigma) = sigma_linux() else { return };
    let (_dir, unfiltered) = combined(&sigma, false);
    let before = fired(unfiltered);
    for f in &before {
        println!("without the filters: {f:?}");
    }
    assert!(
        !before.is_empty(),
        "the SigmaHQ rules are quiet without the filters: the filters are not needed"
    );
    let (_dir, filtered) = combined(&sigma, true);
    let after = fired(filtered);
    assert!(after.is_empty(), "{after:#?}");
}

#[test]
fn the_filtered_sigmahq_rules_still_fire_on_what_they_are_for() {
    let Some(sigma) = sigma_linux() else { return };
    let (_dir, set) = combined(&sigma, true);
    let path = collector_dir().join("filters/fixtures/sigmahq_developer_benign.yml");
    let cases = fixture::parse_cases(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let report = fixture::run(&set, &[(path, cases.clone())]);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let tested: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.rule.as_str()).collect();
    let mut checked = 0;
    for r in report
        .rules
        .iter()
        .filter(|r| tested.contains(r.id.as_str()))
    {
        // Only the cases' outcomes count here: a rule need not have both kinds of case.
        let failed: Vec<&String> = r.failures.iter().filter(|f| f.contains("case '")).collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", r.id);
        checked += r.passed;
    }
    assert_eq!(checked, cases.len(), "every case ran and passed");
}
