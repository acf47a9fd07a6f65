//! The alert JSON line: the shape SIRT tooling and the JSONL sink rely on.

mod common;

use std::path::Path;

use kestrel_collector::alert::{Alert, AlertLog};
use kestrel_collector::detect::Rule;
use serde_json::json;

fn shadow_rule() -> Rule {
    Rule::from_yaml(Path::new("rules/shadow.yml"), common::SHADOW_RULE).unwrap()
}

#[test]
fn exec_alert_json_carries_rule_host_process_and_ancestors() {
    let mut event = common::shadow_exec_event();
    event.host = "spiffe://kestrel.local/node/web-1".into();
    event.seq = 7;

    let alert = Alert::new(&shadow_rule(), &event, 3);
    let value = serde_json::to_value(&alert).unwrap();

    assert_eq!(
        value,
        json!({
            "time": "2023-11-14T22:13:20.123456789Z",
            "time_unix_ns": 1_700_000_000_123_456_789_u64,
            "rule": {
                "id": "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10",
                "title": "Shadow file read with cat",
                "level": "high",
                "description": "A shell utility read the shadow password file.",
                "tags": ["attack.credential-access", "attack.t1003.008"],
            },
            "host": "spiffe://kestrel.local/node/web-1",
            "process": {
                "pid": 4242,
                "ppid": 4200,
                "exe": "/usr/bin/cat",
                "command_line": "cat /etc/shadow",
                "user": "alice",
                "uid": 1000,
                "cwd": "/home/alice",
                "exec_id": "exec-4242",
                "parent_exec_id": "exec-4200",
                "container_id": "",
            },
            "ancestors": [
                {"pid": 4200, "exe": "/usr/bin/bash", "command_line": "-bash",
                 "user": "alice", "exec_id": "exec-4200"},
                {"pid": 4100, "exe": "/usr/sbin/sshd", "command_line": "sshd: alice",
                 "user": "root", "exec_id": "exec-4100"},
            ],
            "event": {"epoch": 3, "seq": 7, "kind": "exec"},
        })
    );
}

#[test]
fn alert_log_appends_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let mut event = common::shadow_exec_event();
    event.host = "node-1".into();
    let mut alert = Alert::new(&shadow_rule(), &event, 1);
    alert.id = Some(1);

    let log = AlertLog::open(&path).unwrap();
    log.append(&[alert.clone()]).unwrap();
    log.append(&[alert]).unwrap();
    drop(log);
    // Reopening appends, never truncates.
    AlertLog::open(&path).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[1]["host"], "node-1");
}

#[test]
fn unwritable_alert_log_path_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("alerts.jsonl");
    let err = AlertLog::open(&path).err().expect("open must fail");
    assert!(
        err.to_string().contains("missing-dir/alerts.jsonl"),
        "{err}"
    );
}
