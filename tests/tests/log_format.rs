//! Log lines of the real binaries: `--log-format json` (or `log_format = "json"` in the
//! configuration file) gives one JSON object per line; text is the default; the flag wins over
//! the file; and a log that is not a terminal carries no colour escapes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kestrel_testkit::{
    poll, require_root_for_ebpf,
    stack::{certs, free_port, read, serve_command, tail, Agent, Collector},
    workspace_root, ChildGuard,
};
use serde_json::Value;

/// Runs `kestrel-collector serve` with `extra` until it logs that it is ready; its log.
fn collector_log(dir: &Path, pki: &Path, extra: &[&str]) -> String {
    let log = dir.join(format!("collector-{}.log", free_port()));
    let _collector = ChildGuard::spawn(
        "collector",
        serve_command(
            &None,
            &format!("127.0.0.1:{}", free_port()),
            pki,
            &workspace_root().join("collector/rules"),
            &dir.join(format!("data-{}", free_port())),
        )
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap())),
    );
    let ready = poll(Duration::from_secs(20), || {
        read(&log).contains("collector ready").then_some(())
    });
    assert!(
        ready.is_some(),
        "collector not ready:\n{}",
        tail(&read(&log), 20)
    );
    read(&log)
}

/// Each line of `log` as JSON; panics naming the first line that is not.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn has_message(lines: &[Value], message: &str) -> bool {
    lines.iter().any(|line| {
        line["fields"]["message"] == message
            && line["level"].is_string()
            && line["target"].is_string()
    })
}

#[test]
fn the_collector_logs_json_by_flag_or_file_and_text_by_default_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "unused");
    let json_config = dir.path().join("json.toml");
    std::fs::write(&json_config, "log_format = \"json\"\n").unwrap();
    let json_config = json_config.display().to_string();

    let by_flag = json_lines(&collector_log(dir.path(), &pki, &["--log-format", "json"]));
    assert!(has_message(&by_flag, "collector ready"), "{by_flag:?}");
    let ready = by_flag
        .iter()
        .find(|line| line["fields"]["message"] == "collector ready")
        .unwrap();
    assert!(ready["fields"]["rules"].as_u64().unwrap() > 0, "{ready}");

    let by_file = json_lines(&collector_log(
        dir.path(),
        &pki,
        &["--config", &json_config],
    ));
    assert!(has_message(&by_file, "collector ready"), "{by_file:?}");

    for (text, extra) in [
        (collector_log(dir.path(), &pki, &[]), "default"),
        (
            collector_log(
                dir.path(),
                &pki,
                &["--config", &json_config, "--log-format", "text"],
            ),
            "the flag over the file",
        ),
    ] {
        assert!(
            !text.contains('\u{1b}'),
            "{extra}: colour escapes in a file:\n{text}"
        );
        let first = text.lines().next().unwrap();
        assert!(
            serde_json::from_str::<Value>(first).is_err() && first.contains("INFO"),
            "{extra}: text lines: {first}"
        );
    }
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_values() {
    let output = std::process::Command::new(kestrel_testkit::binary("kestrel-collector"))
        .args(["serve", "--log-format", "yaml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'yaml'") && stderr.contains("json"),
        "{stderr}"
    );
}

#[test]
fn the_agent_logs_json_lines_with_log_format_json() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "log-agent");
    let mut collector = Collector::new(dir.path(), &pki, &[]);
    collector.start();
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        "log-agent",
        collector.port,
        &["--log-format", "json"],
    );
    agent.start();
    agent.expect_connected();
    let lines = json_lines(&read(&agent.log()));
    assert!(has_message(&lines, "agent running"), "{lines:?}");
    assert!(has_message(&lines, "connected to collector"), "{lines:?}");
}
