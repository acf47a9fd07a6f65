//! Compatibility with the public SigmaHQ Linux rules (`../shared/sigma`, DRL 1.1): every
//! process_creation, file_event and network_connection rule parses and compiles, or is
//! rejected with a reason; the counts are exact so a change in either direction is noticed.

use std::path::{Path, PathBuf};

use kestrel_collector::detect::{RuleErrorKind, RuleSet};

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
fn every_sigmahq_linux_process_creation_rule_compiles_or_is_rejected_with_a_reason() {
    let (ok, rejected) = load("rules/linux/process_creation");
    let (hunting_ok, hunting_rejected) = load("rules-threat-hunting/linux/process_creation");
    assert_eq!((ok, rejected.len()), (120, 2));
    assert_eq!((hunting_ok, hunting_rejected.len()), (2, 0));
    for (file, kind) in &rejected {
        assert!(
            file.starts_with("proc_creation_lnx_omigod_scx_runasprovider_"),
            "{file}"
        );
        assert!(
            matches!(kind, RuleErrorKind::FieldNotAvailable { field, .. } if field == "LogonId"),
            "{file}: {kind}"
        );
    }
}

#[test]
fn every_sigmahq_linux_file_event_rule_compiles() {
    let (ok, rejected) = load("rules/linux/file_event");
    let (hunting_ok, hunting_rejected) = load("rules-threat-hunting/linux/file");
    assert_eq!((ok, rejected.len()), (8, 0));
    assert_eq!((hunting_ok, hunting_rejected.len()), (2, 0));
}

#[test]
fn sigmahq_network_connection_rules_needing_host_names_are_rejected() {
    let (ok, rejected) = load("rules/linux/network_connection");
    assert_eq!((ok, rejected.len()), (2, 3));
    for (file, kind) in &rejected {
        assert!(
            matches!(kind, RuleErrorKind::FieldNotAvailable { field, .. } if field == "DestinationHostname"),
            "{file}: {kind}"
        );
    }
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
