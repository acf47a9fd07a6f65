//! Correlation rules on event streams: windows, groups, order, sessions, chains, limits.

use std::path::PathBuf;
use std::sync::Arc;

use kestrel_proto::Event;

use super::{CorrelationLimits, Detector, RuleErrorKind, RuleKind, RuleSet, SharedRules};
use crate::testing::fixture::parse_cases;

/// A rule set from `(file name, text)` pairs; panics on any error.
fn set(files: &[(&str, &str)]) -> Arc<RuleSet> {
    let (set, errors) = RuleSet::from_texts(files.iter().map(|(n, t)| (PathBuf::from(n), *t)));
    assert!(errors.is_empty(), "{errors:#?}");
    Arc::new(set)
}

/// Events from a YAML list of fixture events (one per `- `, as in fixture files).
fn events(yaml: &str) -> Vec<Arc<Event>> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("- rule: x\n  name: x\n  expect: match\n  events:\n{indented}");
    parse_cases(&text).unwrap()[0]
        .proto_events()
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// For each event, the ids of the rules that fired on it.
fn run(detector: &mut Detector, events: &[Arc<Event>]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            detector
                .evaluate(e)
                .into_iter()
                .map(|d| d.rule.id.clone())
                .collect()
        })
        .collect()
}

fn fired(results: &[Vec<String>], id: &str) -> Vec<usize> {
    results
        .iter()
        .enumerate()
        .filter(|(_, ids)| ids.iter().any(|i| i == id))
        .map(|(i, _)| i)
        .collect()
}

const CONNECT_RULE: &str = "title: outbound connection
id: connect
logsource: { category: network_connection, product: linux }
detection:
    sel:
        Initiated: 'true'
    condition: sel
";

fn connect(port: u32, at: &str, exe: &str) -> String {
    format!(
        "- at: {at}\n  process: {{ exe: {exe} }}\n  network: {{ op: connect, remote_ip: 10.0.0.9, remote_port: {port} }}\n"
    )
}

#[test]
fn event_count_fires_at_the_threshold_inside_the_window_then_starts_over() {
    let corr = "title: many connections
id: many
correlation:
    type: event_count
    rules: [connect]
    group-by: [Host, Image]
    timespan: 10s
    condition: { gte: 3 }
level: high
";
    let rules = set(&[("connect.yml", CONNECT_RULE), ("many.yml", corr)]);
    let mut d = Detector::new(rules);
    let stream: String = [
        connect(1, "0s", "/usr/bin/nc"),
        connect(2, "1s", "/usr/bin/nc"),
        connect(3, "2s", "/usr/bin/curl"),
        connect(4, "3s", "/usr/bin/nc"),
        connect(5, "4s", "/usr/bin/nc"),
        connect(6, "5s", "/usr/bin/nc"),
        connect(7, "30s", "/usr/bin/nc"),
        connect(8, "45s", "/usr/bin/nc"),
        connect(9, "60s", "/usr/bin/nc"),
    ]
    .concat();
    let results = run(&mut d, &events(&stream));
    assert_eq!(fired(&results, "many"), vec![3], "{results:?}");
    assert!(
        fired(&results, "connect").is_empty(),
        "a rule that only feeds a correlation reports nothing of its own"
    );
    let stats = d.stats();
    assert_eq!(stats.correlation.fired, 1);
}

#[test]
fn correlation_detection_carries_evidence_and_group() {
    let corr = "title: many
id: many
correlation: { type: event_count, rules: [connect], group-by: [Image], timespan: 10s, condition: { gte: 2 } }
";
    let mut d = Detector::new(set(&[("c.yml", CONNECT_RULE), ("m.yml", corr)]));
    let evs = events(
        &[
            connect(1, "0s", "/usr/bin/nc"),
            connect(2, "1s", "/usr/bin/nc"),
        ]
        .concat(),
    );
    assert!(d.evaluate(&evs[0]).is_empty());
    let detections = d.evaluate(&evs[1]);
    assert_eq!(detections.len(), 1);
    let det = &detections[0];
    assert_eq!(det.rule.kind, RuleKind::Correlation);
    assert_eq!(det.group.as_deref(), Some("Image=/usr/bin/nc"));
    assert_eq!(det.events.len(), 2);
    assert_eq!(det.trigger(), Some(&*evs[1]));
}

#[test]
fn evidence_is_the_most_recent_matches_when_a_group_needs_more_than_it_keeps() {
    let corr = "title: scan
id: scan
correlation:
    type: value_count
    rules: [connect]
    group-by: [Image]
    timespan: 1m
    condition: { field: DestinationPort, gte: 12 }
";
    let mut d = Detector::new(set(&[("c.yml", CONNECT_RULE), ("s.yml", corr)]));
    // A repeated port adds a match but no distinct value: 14 matches before the 12th port.
    let ports = [1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12];
    let stream: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| connect(*p, &format!("{i}s"), "/usr/bin/nc"))
        .collect();
    let evs = events(&stream);
    let mut fired = Vec::new();
    for e in &evs {
        fired.extend(d.evaluate(e));
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let max = CorrelationLimits::default().max_evidence;
    assert_eq!(fired[0].events, evs[evs.len() - max..].to_vec());
}

#[test]
fn value_count_counts_distinct_values_per_group() {
    let corr = "title: port scan
id: scan
correlation:
    type: value_count
    rules: [connect]
    group-by: [Host, ProcessId]
    timespan: 10s
    condition: { field: DestinationPort, gte: 3 }
";
    let mut d = Detector::new(set(&[("c.yml", CONNECT_RULE), ("s.yml", corr)]));
    let same_port: String = (0..5)
        .map(|i| connect(22, &format!("{i}s"), "/x"))
        .collect();
    assert!(fired(&run(&mut d, &events(&same_port)), "scan").is_empty());
    let ports: String = (0..3)
        .map(|i| connect(100 + i, &format!("{}s", 20 + i), "/x"))
        .collect();
    assert_eq!(fired(&run(&mut d, &events(&ports)), "scan"), vec![2]);
}

fn two_step_rules(kind: &str) -> Vec<(&'static str, String)> {
    let a = "title: a\nid: step-a\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel: { Image|endswith: /whoami }\n    condition: sel\n";
    let b = "title: b\nid: step-b\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel: { Image|endswith: /id }\n    condition: sel\n";
    let c = format!(
        "title: recon\nid: recon\ncorrelation:\n    type: {kind}\n    rules: [step-a, step-b]\n    group-by: [User]\n    timespan: 1m\n"
    );
    vec![("a.yml", a.into()), ("b.yml", b.into()), ("c.yml", c)]
}

fn exec(exe: &str, at: &str, user: &str) -> String {
    format!("- at: {at}\n  process: {{ exe: {exe}, user: {user} }}\n  exec: {{}}\n")
}

#[test]
fn temporal_fires_in_any_order_within_the_window() {
    let files = two_step_rules("temporal");
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let mut d = Detector::new(set(&refs));
    let stream = [
        exec("/usr/bin/id", "0s", "bob"),
        exec("/usr/bin/whoami", "10s", "alice"),
        exec("/usr/bin/whoami", "20s", "bob"),
    ]
    .concat();
    assert_eq!(fired(&run(&mut d, &events(&stream)), "recon"), vec![2]);
    let mut d = Detector::new(set(&refs));
    let late = [
        exec("/usr/bin/id", "0s", "bob"),
        exec("/usr/bin/whoami", "61s", "bob"),
    ]
    .concat();
    assert!(fired(&run(&mut d, &events(&late)), "recon").is_empty());
}

#[test]
fn temporal_ordered_needs_the_order_given() {
    let files = two_step_rules("temporal_ordered");
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let mut d = Detector::new(set(&refs));
    let wrong = [
        exec("/usr/bin/id", "0s", "bob"),
        exec("/usr/bin/whoami", "1s", "bob"),
    ]
    .concat();
    assert!(fired(&run(&mut d, &events(&wrong)), "recon").is_empty());
    let mut d = Detector::new(set(&refs));
    let right = [
        exec("/usr/bin/whoami", "0s", "bob"),
        exec("/usr/bin/ls", "1s", "bob"),
        exec("/usr/bin/id", "2s", "bob"),
    ]
    .concat();
    assert_eq!(fired(&run(&mut d, &events(&right)), "recon"), vec![2]);
}

/// The rule of the issue: a file is written, made executable and executed in the same session
/// within 60 s (the same file: aliases map the path to TargetFilename and Image).
const WRITE_CHMOD_EXEC: &str = "title: File written, made executable and run in one session
id: write-chmod-exec
correlation:
    type: temporal_ordered
    rules: [file-written, made-executable, executed]
    group-by: [SessionExecId, path]
    aliases:
        path:
            file-written: TargetFilename
            made-executable: TargetFilename
            executed: Image
    timespan: 60s
level: high
---
title: file written
name: file-written
logsource: { category: file_event, product: linux }
detection:
    sel: { FileOperation: open }
    condition: sel
---
title: made executable
name: made-executable
logsource: { category: file_change, product: linux }
detection:
    sel:
        FileOperation: chmod
        FileModeFlags|contains: executable
    condition: sel
---
title: executed
name: executed
logsource: { category: process_creation, product: linux }
detection:
    sel: { Image|startswith: / }
    condition: sel
";

/// An SSH session: sshd -> bash (exec id `shell-<n>`), then the shell's children.
fn session_stream(session: &str, times: [&str; 3], path: &str, exec_path: &str) -> String {
    let ancestors = format!(
        "[{{ pid: 100, exe: /usr/bin/bash, exec_id: {session} }}, {{ pid: 90, exe: /usr/sbin/sshd, exec_id: sshd }}]"
    );
    format!(
        "- process: {{ exe: /usr/bin/bash, exec_id: {session} }}
  exec: {{ ancestors: [{{ pid: 90, exe: /usr/sbin/sshd, exec_id: sshd }}] }}
- at: {t0}
  process: {{ exe: /usr/bin/curl, exec_id: curl-{session}, parent_exec_id: {session} }}
  exec: {{ ancestors: {ancestors} }}
- at: {t0}
  process: {{ exe: /usr/bin/curl, exec_id: curl-{session}, parent_exec_id: {session} }}
  file: {{ op: open, path: {path}, created: true, mode: 0o644 }}
- at: {t1}
  process: {{ exe: /usr/bin/chmod, exec_id: chmod-{session}, parent_exec_id: {session} }}
  file: {{ op: chmod, path: {path}, mode: 0o755 }}
- at: {t2}
  process: {{ exe: {exec_path}, exec_id: run-{session}, parent_exec_id: {session} }}
  exec: {{ ancestors: {ancestors} }}
",
        t0 = times[0],
        t1 = times[1],
        t2 = times[2],
    )
}

#[test]
fn written_chmod_and_executed_in_one_session_within_60s_is_one_detection() {
    let rules = set(&[("wce.yml", WRITE_CHMOD_EXEC)]);
    let mut d = Detector::new(rules.clone());
    let stream = session_stream("shell-1", ["1s", "5s", "9s"], "/tmp/x", "/tmp/x");
    let results = run(&mut d, &events(&stream));
    assert_eq!(fired(&results, "write-chmod-exec"), vec![4], "{results:?}");
    assert_eq!(
        results.iter().flatten().count(),
        1,
        "the three steps do not alert on their own: {results:?}"
    );

    let mut d = Detector::new(rules.clone());
    let slow = session_stream("shell-1", ["1s", "5s", "70s"], "/tmp/x", "/tmp/x");
    assert!(fired(&run(&mut d, &events(&slow)), "write-chmod-exec").is_empty());

    let mut d = Detector::new(rules.clone());
    let other_file = session_stream("shell-1", ["1s", "5s", "9s"], "/tmp/x", "/tmp/y");
    assert!(fired(&run(&mut d, &events(&other_file)), "write-chmod-exec").is_empty());
}

#[test]
fn steps_from_two_sessions_do_not_combine() {
    let rules = set(&[("wce.yml", WRITE_CHMOD_EXEC)]);
    let mut d = Detector::new(rules);
    let one = events(&session_stream(
        "shell-1",
        ["1s", "5s", "9s"],
        "/tmp/x",
        "/tmp/x",
    ));
    let two = events(&session_stream(
        "shell-2",
        ["1s", "5s", "9s"],
        "/tmp/x",
        "/tmp/x",
    ));
    // Session 1 writes and chmods; session 2 executes the file.
    let mixed: Vec<Arc<Event>> = one[..4]
        .iter()
        .chain(&two[..2])
        .chain(&two[4..])
        .cloned()
        .collect();
    assert!(fired(&run(&mut d, &mixed), "write-chmod-exec").is_empty());
}

#[test]
fn generate_true_keeps_the_referenced_rules_alerting() {
    let corr = "title: many\nid: many\ngenerate: true\ncorrelation: { type: event_count, rules: [connect], group-by: [Image], timespan: 10s, condition: { gte: 2 } }\n";
    let mut d = Detector::new(set(&[("c.yml", CONNECT_RULE), ("m.yml", corr)]));
    let results = run(&mut d, &events(&connect(1, "0s", "/x")));
    assert_eq!(results[0], vec!["connect".to_string()]);
}

#[test]
fn correlations_chain_into_correlations() {
    let many = "title: many\nid: many\nname: many_connects\ncorrelation: { type: event_count, rules: [connect], group-by: [Host], timespan: 10s, condition: { gte: 2 } }\n";
    let shell = "title: shell\nid: shell\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel: { Image|endswith: /sh }\n    condition: sel\n";
    let then = "title: connects then shell\nid: chain\ncorrelation: { type: temporal_ordered, rules: [many_connects, shell], group-by: [Host], timespan: 1m }\n";
    let mut d = Detector::new(set(&[
        ("c.yml", CONNECT_RULE),
        ("m.yml", many),
        ("s.yml", shell),
        ("t.yml", then),
    ]));
    let stream = [
        connect(1, "0s", "/x"),
        connect(2, "1s", "/x"),
        exec("/bin/sh", "5s", "bob"),
    ]
    .concat();
    let results = run(&mut d, &events(&stream));
    assert_eq!(fired(&results, "chain"), vec![2], "{results:?}");
    assert!(fired(&results, "many").is_empty(), "consumed by the chain");
}

fn load_error(files: &[(&str, &str)]) -> Vec<String> {
    let (_, errors) = RuleSet::from_texts(files.iter().map(|(n, t)| (PathBuf::from(n), *t)));
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn broken_correlations_are_reported_with_the_reason() {
    let unknown = "title: x\nid: x\ncorrelation: { type: event_count, rules: [nope], group-by: [Host], timespan: 1m, condition: { gte: 2 } }\n";
    let errors = load_error(&[("u.yml", unknown)]);
    assert!(errors[0].contains("references rule 'nope'"), "{errors:?}");

    let sum = "title: x\nid: x\ncorrelation: { type: value_sum, rules: [connect], group-by: [Host], timespan: 1m, condition: { gt: 2, field: Result } }\n";
    let errors = load_error(&[("c.yml", CONNECT_RULE), ("s.yml", sum)]);
    assert!(
        errors[0].contains("type 'value_sum' is not supported"),
        "{errors:?}"
    );

    let field = "title: x\nid: x\ncorrelation: { type: event_count, rules: [connect], group-by: [TargetFilename], timespan: 1m, condition: { gte: 2 } }\n";
    let errors = load_error(&[("c.yml", CONNECT_RULE), ("f.yml", field)]);
    assert!(
        errors[0].contains("'TargetFilename' is not produced for category network_connection"),
        "{errors:?}"
    );

    let a = "title: a\nid: a\ncorrelation: { type: temporal, rules: [b, connect], group-by: [Host], timespan: 1m }\n";
    let b = "title: b\nid: b\ncorrelation: { type: temporal, rules: [a, connect], group-by: [Host], timespan: 1m }\n";
    let errors = load_error(&[("c.yml", CONNECT_RULE), ("a.yml", a), ("b.yml", b)]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("cycle")), "{errors:?}");

    let no_span = "title: x\nid: x\ncorrelation: { type: event_count, rules: [connect], condition: { gte: 2 } }\n";
    let errors = load_error(&[("c.yml", CONNECT_RULE), ("n.yml", no_span)]);
    assert!(errors[0].contains("missing 'timespan'"), "{errors:?}");
}

#[test]
fn sigma_correlation_examples_of_the_specification_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/sigma/specification/tests/schema/correlation");
    for name in ["event_count", "value_count", "temporal", "temporal_ordered"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.yml"))).unwrap();
        let errors = load_error(&[("spec.yml", &text)]);
        // The examples reference rules that are not part of them, and Windows fields.
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        assert!(
            errors[0].contains("references rule") || errors[0].contains("field"),
            "{name}: {errors:?}"
        );
    }
    let (_, errors) = RuleSet::from_texts(
        ["value_sum", "value_avg", "value_percentile"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(dir.join(format!("{n}.yml"))).unwrap();
                (PathBuf::from(n), Box::leak(text.into_boxed_str()) as &str)
            }),
    );
    assert!(
        errors
            .iter()
            .all(|e| matches!(e.kind, RuleErrorKind::Correlation(_))),
        "{errors:?}"
    );
}

#[test]
fn group_cap_evicts_oldest_groups_and_counts_them() {
    let corr = "title: many\nid: many\ncorrelation: { type: event_count, rules: [connect], group-by: [DestinationPort], timespan: 1h, condition: { gte: 1000 } }\n";
    let rules = set(&[("c.yml", CONNECT_RULE), ("m.yml", corr)]);
    let limits = CorrelationLimits {
        max_groups: 100,
        ..CorrelationLimits::default()
    };
    let mut d = Detector::with_limits(SharedRules::new(rules), limits, 1000);
    let stream: String = (0..1000).map(|p| connect(p, "1s", "/x")).collect();
    run(&mut d, &events(&stream));
    let stats = d.stats().correlation;
    assert!(stats.groups <= 100, "{stats:?}");
    assert!(stats.groups_evicted >= 900, "{stats:?}");
}

#[test]
fn expired_groups_are_swept() {
    let corr = "title: many\nid: many\ncorrelation: { type: event_count, rules: [connect], group-by: [DestinationPort], timespan: 10s, condition: { gte: 5 } }\n";
    let mut d = Detector::new(set(&[("c.yml", CONNECT_RULE), ("m.yml", corr)]));
    let stream: String = (0..50).map(|p| connect(p, "1s", "/x")).collect();
    run(&mut d, &events(&stream));
    assert_eq!(d.stats().correlation.groups, 50);
    run(&mut d, &events(&connect(9999, "5m", "/x")));
    let stats = d.stats().correlation;
    assert_eq!(stats.groups, 1, "{stats:?}");
    assert_eq!(stats.groups_expired, 50);
}

#[test]
fn unchanged_correlations_keep_their_state_across_a_reload() {
    let corr = "title: many\nid: many\ncorrelation: { type: event_count, rules: [connect], group-by: [Image], timespan: 1m, condition: { gte: 2 } }\n";
    let shared = SharedRules::new(set(&[("c.yml", CONNECT_RULE), ("m.yml", corr)]));
    let mut d = Detector::with_shared(shared.clone());
    let evs = events(&[connect(1, "0s", "/x"), connect(2, "1s", "/x")].concat());
    assert!(d.evaluate(&evs[0]).is_empty());
    let extra = "title: other\nid: other\nlogsource: { category: process_creation }\ndetection:\n    sel: { Image: /nothing }\n    condition: sel\n";
    shared.replace(set(&[
        ("c.yml", CONNECT_RULE),
        ("m.yml", corr),
        ("o.yml", extra),
    ]));
    let detections = d.evaluate(&evs[1]);
    assert_eq!(detections.len(), 1, "the count of 1 survived the reload");
    assert_eq!(d.stats().reloads, 1);
}
