//! The alert record: an OCSF Detection Finding with the flat keys SIRT tooling and the
//! JSON-lines sink rely on.

mod common;

use std::path::Path;

use kestrel_collector::alert::render;
use kestrel_collector::alert::{Alert, Level, SystemAlert};
use kestrel_collector::sinks::jsonl::JsonlFile;
use kestrel_detect::{Detection, Rule, RuleKind};
use serde_json::json;

fn shadow_rule() -> Rule {
    Rule::from_yaml(Path::new("rules/shadow.yml"), common::SHADOW_RULE).unwrap()
}

fn shadow_alert() -> Alert {
    let mut event = common::shadow_exec_event();
    event.host = "spiffe://kestrel.local/node/web-1".into();
    event.seq = 7;
    Alert::new(&shadow_rule(), &event, 3)
}

#[test]
fn exec_alert_keeps_the_flat_rule_host_process_and_ancestor_keys() {
    let value = serde_json::to_value(shadow_alert()).unwrap();
    assert_eq!(
        value["rule"],
        json!({
            "id": "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10",
            "title": "Shadow file read with cat",
            "level": "high",
            "description": "A shell utility read the shadow password file.",
            "tags": ["attack.credential-access", "attack.t1003.008"],
        })
    );
    assert_eq!(value["host"], "spiffe://kestrel.local/node/web-1");
    assert_eq!(
        value["process"],
        json!({
            "pid": 4242, "ppid": 4200, "exe": "/usr/bin/cat", "command_line": "cat /etc/shadow",
            "user": "alice", "uid": 1000, "cwd": "/home/alice", "exec_id": "exec-4242",
            "parent_exec_id": "exec-4200", "container_id": "", "start_time": "",
        })
    );
    assert_eq!(
        value["ancestors"],
        json!([
            {"pid": 4200, "exe": "/usr/bin/bash", "command_line": "-bash", "user": "alice",
             "uid": 1000, "exec_id": "exec-4200", "start_time": "2023-11-14T21:56:40.000000000Z"},
            {"pid": 4100, "exe": "/usr/sbin/sshd", "command_line": "sshd: alice", "user": "root",
             "uid": 0, "exec_id": "exec-4100", "start_time": "2023-11-14T21:40:00.000000000Z"},
        ])
    );
    assert_eq!(
        value["event"],
        json!({"epoch": 3, "seq": 7, "kind": "exec"})
    );
}

#[test]
fn exec_alert_is_an_ocsf_detection_finding() {
    let alert = shadow_alert();
    let value = serde_json::to_value(&alert).unwrap();
    assert_eq!(value["class_uid"], 2004);
    assert_eq!(value["category_uid"], 2);
    assert_eq!(value["activity_id"], 1);
    assert_eq!(value["type_uid"], 200401);
    assert_eq!(value["severity_id"], 4);
    assert_eq!(value["severity"], "High");
    assert_eq!(value["status_id"], 1);
    assert_eq!(value["time"], 1_700_000_000_123_u64);
    assert_eq!(value["time_dt"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(value["count"], 1);
    assert_eq!(value["metadata"]["version"], "1.3.0");
    assert_eq!(value["metadata"]["product"]["name"], "Kestrel");
    assert_eq!(value["metadata"]["uid"].as_str().unwrap().len(), 32);
    assert_eq!(
        value["device"]["hostname"],
        "spiffe://kestrel.local/node/web-1"
    );
    let info = &value["finding_info"];
    assert_eq!(info["uid"], alert.fingerprint());
    assert_eq!(info["title"], "Shadow file read with cat");
    assert_eq!(
        info["analytic"]["uid"],
        "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10"
    );
    assert_eq!(info["analytic"]["type_id"], 1);
    assert_eq!(info["first_seen_time"], info["last_seen_time"]);
    assert_eq!(info["attacks"][0]["tactic"]["uid"], "TA0006");
    assert_eq!(info["attacks"][0]["technique"]["uid"], "T1003");
    assert_eq!(info["attacks"][0]["sub_technique"]["uid"], "T1003.008");
    let evidence = &value["evidences"][0];
    assert_eq!(evidence["process"]["cmd_line"], "cat /etc/shadow");
    assert_eq!(
        evidence["process"]["parent_process"]["file"]["path"],
        "/usr/bin/bash"
    );
    // OCSF nests one parent only; the rest of the chain is the flat `ancestors` list.
    assert!(evidence["process"]["parent_process"]["parent_process"].is_null());
    assert_eq!(value["ancestors"][1]["user"], "root");
    assert_eq!(evidence["data"]["event"]["seq"], 7);
}

#[test]
fn the_same_command_from_another_pid_has_the_same_fingerprint_but_a_new_uid() {
    let first = shadow_alert();
    let mut event = common::shadow_exec_event();
    event.host = "spiffe://kestrel.local/node/web-1".into();
    event.process.as_mut().unwrap().pid = 9999;
    let second = Alert::new(&shadow_rule(), &event, 3);
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert_ne!(first.uid(), second.uid());
}

#[test]
fn correlation_alert_keeps_all_evidence_and_groups_by_its_key() {
    let mut events = vec![common::harmless_exec_event(), common::shadow_exec_event()];
    for (seq, e) in events.iter_mut().enumerate() {
        e.host = "node-1".into();
        e.seq = seq as u64;
    }
    events[0].time_unix_ns -= 5_000_000_000;
    let detection = Detection {
        rule: shadow_rule().info(RuleKind::Correlation).into(),
        events: events.into_iter().map(std::sync::Arc::new).collect(),
        group: Some("User=alice".into()),
        session: None,
    };
    let alert = Alert::from_detection(&detection, 1);
    assert_eq!(alert.evidences.len(), 2);
    assert_eq!(alert.group.as_deref(), Some("User=alice"));
    assert_eq!(alert.finding_info.types, ["correlation"]);
    assert_eq!(
        alert.finding_info.last_seen_time - alert.finding_info.first_seen_time,
        5_000
    );
    assert_eq!(alert.event.unwrap().seq, 1, "the trigger is the last event");
}

#[test]
fn system_alert_is_a_finding_about_its_host_without_a_process() {
    let alert = Alert::from_system(&SystemAlert {
        rule_id: "agent-silent".into(),
        title: "Agent stopped sending heartbeats".into(),
        description: "No heartbeat for 2m.".into(),
        level: Level::High,
        host: "spiffe://kestrel.local/node/db-1".into(),
        group: None,
        details: json!({"silent_for_s": 120}),
        time_unix_ns: 1_700_000_000_000_000_000,
    });
    assert_eq!(alert.rule.id, "kestrel.system.agent-silent");
    assert!(alert.is_system());
    assert_eq!(alert.severity_id, 4);
    assert_eq!(alert.evidences[0].data["silent_for_s"], 120);
    assert!(render::process_tree(&alert).is_empty());
}

#[test]
fn process_tree_renders_oldest_ancestor_first_with_users_and_command_lines() {
    let tree = render::process_tree(&shadow_alert());
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert!(
        lines[0].starts_with("[4100] root  sshd: alice  (/usr/sbin/sshd"),
        "{tree}"
    );
    assert!(lines[1].starts_with("└─ [4200] alice  -bash"), "{tree}");
    assert!(
        lines[2].starts_with("   └─ [4242] alice  cat /etc/shadow"),
        "{tree}"
    );
    assert!(lines[2].ends_with('◀'), "{tree}");
}

#[test]
fn a_process_on_a_terminal_says_so_in_the_record_and_the_tree() {
    let mut event = common::shadow_exec_event();
    event.process.as_mut().unwrap().tty = "pts/1".into();
    let alert = Alert::new(&shadow_rule(), &event, 3);
    assert_eq!(
        serde_json::to_value(&alert).unwrap()["process"]["tty"],
        "pts/1"
    );
    let tree = render::process_tree(&alert);
    let own = tree.lines().last().unwrap();
    assert!(own.contains("on pts/1") && own.ends_with('◀'), "{tree}");
}

#[test]
fn jsonl_file_appends_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let mut alert = shadow_alert();
    alert.id = Some(1);

    let mut file = JsonlFile::open(&path, 0, 1).unwrap();
    file.append(&alert).unwrap();
    file.append(&alert).unwrap();
    drop(file);
    // Reopening appends, never truncates.
    JsonlFile::open(&path, 0, 1).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[1]["host"], "spiffe://kestrel.local/node/web-1");
}
