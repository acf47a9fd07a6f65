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
fn rules_check_exits_1_naming_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: bad\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel:\n        Image|endswithh: /x\n    condition: sel\n",
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
