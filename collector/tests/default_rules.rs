//! The default rule set in `collector/rules`: loads cleanly, covers the ground the issue asks
//! for, and every rule passes its fixtures; `rules check` and `rules test` behave as documented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kestrel_detect::{fixture, RuleSet};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

#[test]
fn default_rules_load_without_errors() {
    let (set, errors) = RuleSet::load_dir(&rules_dir()).unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    let alerting = (0..set.rules().len())
        .filter(|&i| set.rule_emits(i))
        .count()
        + set.correlations().len();
    assert!(alerting >= 40, "only {alerting} rules raise alerts");
    for rule in set.rules() {
        assert!(
            rule.tags.iter().any(|t| t.starts_with("attack.t")) || !rule.description.is_empty(),
            "{} has neither an ATT&CK technique nor a description",
            rule.id
        );
    }
}

#[test]
fn every_default_rule_passes_its_positive_and_negative_fixtures() {
    let (set, errors) = RuleSet::load_dir(&rules_dir()).unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    let (fixtures, fixture_errors) = fixture::load_fixtures(&rules_dir());
    assert!(fixture_errors.is_empty(), "{fixture_errors:#?}");
    let report = fixture::run(&Arc::new(set), &fixtures);
    let failed: Vec<String> = report
        .rules
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {:?}", r.id, r.failures))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

fn collector(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel-collector"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn rules_check_passes_on_the_default_rules() {
    let (code, out) = collector(&["rules", "check", rules_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 invalid"), "{out}");
}

#[test]
fn rules_check_exits_1_naming_file_line_and_reason_of_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: bad\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel:\n        Image|endswithh: /x\n        Usr: root\n    condition: sel or other\n",
    )
    .unwrap();
    let (code, out) = collector(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.yml"), "{out}");
    assert!(
        out.contains("unknown modifier 'endswithh' on field Image"),
        "{out}"
    );
    assert!(out.contains("(line 5)"), "{out}");
    assert!(out.contains("unknown field 'Usr'"), "{out}");
    assert!(out.contains("unknown search identifier 'other'"), "{out}");
    assert!(out.contains("1 invalid (3 problem(s))"), "{out}");
}

#[test]
fn rules_test_reports_pass_and_fail_per_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |id: &str| {
        format!("title: {id}\nid: {id}\nlogsource: {{ category: process_creation, product: linux }}\ndetection:\n    sel:\n        Image|endswith: /nc\n    condition: sel\n")
    };
    std::fs::write(dir.path().join("good.yml"), rule("good")).unwrap();
    std::fs::write(dir.path().join("untested.yml"), rule("untested")).unwrap();
    std::fs::create_dir(dir.path().join("fixtures")).unwrap();
    std::fs::write(
        dir.path().join("fixtures/good.yml"),
        "- rule: good\n  name: nc\n  expect: match\n  events:\n    - { process: { exe: /usr/bin/nc }, exec: {} }\n- rule: good\n  name: ls\n  expect: no_match\n  events:\n    - { process: { exe: /usr/bin/ls }, exec: {} }\n- rule: untested\n  name: wrong expectation\n  expect: no_match\n  events:\n    - { process: { exe: /usr/bin/nc }, exec: {} }\n",
    )
    .unwrap();
    let (code, out) = collector(&["rules", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PASS good (2 case(s): 1 match, 1 no_match)"),
        "{out}"
    );
    assert!(out.contains("FAIL untested"), "{out}");
    assert!(
        out.contains("expected no match, the rule fired on event 1"),
        "{out}"
    );
    assert!(out.contains("no 'match' case"), "{out}");
}

#[test]
fn every_default_rule_and_correlation_input_has_an_attack_technique_tag() {
    let (set, _) = RuleSet::load_dir(&rules_dir()).unwrap();
    let technique = |tags: &[String]| {
        tags.iter().any(|t| {
            t.strip_prefix("attack.t")
                .is_some_and(|n| n.len() >= 4 && n[..4].bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let mut untagged: Vec<&str> = set
        .rules()
        .iter()
        .filter(|r| !technique(&r.tags))
        .map(|r| r.id.as_str())
        .collect();
    untagged.extend(
        set.correlations()
            .iter()
            .filter(|c| !technique(&c.info.tags))
            .map(|c| c.info.id.as_str()),
    );
    assert!(untagged.is_empty(), "no ATT&CK technique tag: {untagged:?}");
}

const COVERAGE_BEGIN: &str = "<!-- rules coverage: begin -->\n";
const COVERAGE_END: &str = "<!-- rules coverage: end -->";

/// The README's coverage table is what `rules coverage collector/rules` prints; regenerate it
/// with `KESTREL_UPDATE_README=1 cargo test -p kestrel-collector --test default_rules`.
#[test]
fn readme_coverage_table_is_the_output_of_rules_coverage() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (code, printed) = collector(&["rules", "coverage", rules_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{printed}");
    let (set, _) = RuleSet::load_dir(&rules_dir()).unwrap();
    let table = kestrel_collector::cli::rules::Coverage::of(&set).markdown();
    assert_eq!(printed, table, "the CLI prints the table");
    let begin = readme
        .find(COVERAGE_BEGIN)
        .expect("README has the coverage begin marker")
        + COVERAGE_BEGIN.len();
    let end = readme
        .find(COVERAGE_END)
        .expect("README has the coverage end marker");
    if std::env::var_os("KESTREL_UPDATE_README").is_some() {
        let updated = format!("{}{table}{}", &readme[..begin], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[begin..end],
        table,
        "README coverage table is stale: run KESTREL_UPDATE_README=1 cargo test -p kestrel-collector --test default_rules"
    );
}
