//! Compatibility with the public SigmaHQ Linux rules (`../shared/sigma`, DRL 1.1): every
//! process_creation, file_event and network_connection rule parses and compiles, or is
//! rejected with a reason; the counts are exact so a change in either direction is noticed.

use std::path::{Path, PathBuf};

use kestrel_detect::{RuleErrorKind, RuleSet};

fn sigma_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/sigma")
        .join(sub)
}

/// Loads one SigmaHQ directory; prints what was rejected and why. Returns (accepted, rejected).
fn load(sub: &str) -> (usize, Vec<(String, RuleErrorKind)>) {
    let dir = sigma_dir(sub);
    let (set, errors) = RuleSet::load_dir(&dir)
        .unwrap_or_else(|e| panic!("the SigmaHQ rules are expected at {}: {e}", dir.display()));
    println!("{sub}: {} compiled, {} rejected", set.len(), errors.len());
    for e in &errors {
        println!("  rejected: {e}");
    }
    let rejected = errors
        .into_iter()
        .map(|e| {
            let file = e.path.file_name().unwrap().to_string_lossy().into_owned();
            (file, e.kind)
        })
        .collect();
    (set.len(), rejected)
}

#[test]
fn every_sigmahq_linux_process_creation_rule_compiles() {
    // The two OMIGOD rules need LogonId: the audit login uid every process carries.
    let (ok, rejected) = load("rules/linux/process_creation");
    let (hunting_ok, hunting_rejected) = load("rules-threat-hunting/linux/process_creation");
    assert_eq!((ok, rejected.len()), (122, 0), "{rejected:?}");
    assert_eq!((hunting_ok, hunting_rejected.len()), (2, 0));
}

#[test]
fn every_sigmahq_linux_file_event_rule_compiles() {
    let (ok, rejected) = load("rules/linux/file_event");
    let (hunting_ok, hunting_rejected) = load("rules-threat-hunting/linux/file");
    assert_eq!((ok, rejected.len()), (8, 0));
    assert_eq!((hunting_ok, hunting_rejected.len()), (2, 0));
}

#[test]
fn every_sigmahq_linux_network_connection_rule_compiles() {
    // Three of them need DestinationHostname: named from the DNS answers the agent sees.
    let (ok, rejected) = load("rules/linux/network_connection");
    assert_eq!((ok, rejected.len()), (5, 0), "{rejected:?}");
}

#[test]
fn sigmahq_rules_for_other_log_sources_are_rejected_naming_the_logsource() {
    for sub in ["rules/linux/auditd", "rules/linux/builtin"] {
        let (ok, rejected) = load(sub);
        assert_eq!(ok, 0, "{sub}");
        assert!(!rejected.is_empty(), "{sub}");
        for (file, kind) in &rejected {
            assert!(
                matches!(kind, RuleErrorKind::UnsupportedLogsource(..)),
                "{sub}/{file}: {kind}"
            );
        }
    }
}

#[test]
fn old_aggregation_syntax_is_rejected_pointing_to_correlation_rules() {
    let (ok, rejected) = load("unsupported/windows");
    assert_eq!(ok, 0);
    assert_eq!(rejected.len(), 5);
    for (file, kind) in &rejected {
        let reason = kind.to_string();
        assert!(
            reason.contains("aggregation") || reason.contains("logsource"),
            "{file}: {reason}"
        );
    }
}

#[test]
fn sigmahq_host_name_rules_fire_on_connections_named_by_dns_answers() {
    use std::sync::Arc;

    use kestrel_detect::fixture;
    let (set, errors) = RuleSet::load_dir(&sigma_dir("rules/linux/network_connection")).unwrap();
    assert!(errors.is_empty());
    let connect = |host: &str| {
        format!(
            "    - process: {{ exe: /usr/bin/curl }}\n      network: {{ op: connect, remote_ip: 3.20.1.5, \
             remote_port: 443, remote_hostname: {host} }}\n"
        )
    };
    let case = |rule: &str, name: &str, expect: &str, host: &str| {
        format!(
            "- rule: {rule}\n  name: {name}\n  expect: {expect}\n  events:\n{}",
            connect(host)
        )
    };
    let text = [
        case(
            "19bf6fdb-7721-4f3d-867f-53467f6a5db6",
            "ngrok",
            "match",
            "tunnel.eu.ngrok.com",
        ),
        case(
            "19bf6fdb-7721-4f3d-867f-53467f6a5db6",
            "other",
            "no_match",
            "example.com",
        ),
        case(
            "c4568f5d-131f-4e78-83d4-45b2da0ec4f1",
            "localtonet",
            "match",
            "x.localto.net",
        ),
        case(
            "c4568f5d-131f-4e78-83d4-45b2da0ec4f1",
            "lookalike",
            "no_match",
            "localto.net.example",
        ),
        case(
            "a46c93b7-55ed-4d27-a41b-c259456c4746",
            "pool",
            "match",
            "pool.supportxmr.com",
        ),
        case(
            "a46c93b7-55ed-4d27-a41b-c259456c4746",
            "unnamed",
            "no_match",
            "''",
        ),
    ]
    .concat();
    let cases = fixture::parse_cases(&text).unwrap();
    let report = fixture::run(&Arc::new(set), &[(PathBuf::from("dns.yml"), cases)]);
    // The other two rules of the directory have no case here.
    let host_name_rules: Vec<_> = report
        .rules
        .iter()
        .filter(|r| r.positives + r.negatives > 0)
        .collect();
    assert_eq!(host_name_rules.len(), 3, "{report:#?}");
    for rule in host_name_rules {
        assert!(rule.failures.is_empty(), "{rule:#?}");
        assert_eq!(rule.passed, 2, "{rule:#?}");
    }
}
