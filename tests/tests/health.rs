//! `/healthz` and `/readyz` of the real binaries: the agent is ready once its programs are
//! attached and its ring buffer is read; the collector is alive but not ready without rules,
//! and not ready while a sink keeps failing, until it delivers again.

use std::process::{Command, Stdio};
use std::time::Duration;

use kestrel_testkit::{
    poll,
    receiver::{Receiver, Reply},
    require_root_for_ebpf,
    stack::{certs, free_port, http_get, read, serve_command, tail, Agent, Collector},
    ChildGuard,
};
use serde_json::Value;

/// The status code and JSON body of `GET /readyz`.
fn readiness(addr: &str) -> (u16, Value) {
    let response = http_get(addr, "/readyz");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {response}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    (status, json)
}

/// The check `name` of a readiness body.
fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {body}"))
}

fn connectable(addr: &str) -> Option<()> {
    std::net::TcpStream::connect(addr).ok().map(|_| ())
}

#[test]
fn the_agent_is_ready_once_its_programs_are_attached_and_its_ring_is_read() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "health-agent");
    let mut collector = Collector::new(dir.path(), &pki, &[]);
    collector.start();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        "health-agent",
        collector.port,
        &["--metrics-listen", &addr],
    );
    agent.start();
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    let ready = poll(Duration::from_secs(10), || {
        let (status, body) = readiness(&addr);
        (status == 200).then_some(body)
    })
    .unwrap_or_else(|| panic!("never ready: {:?}", readiness(&addr)));
    assert_eq!(ready["ready"], true);
    let programs = check(&ready, "programs_attached");
    assert_eq!(programs["ok"], true);
    assert!(
        programs["detail"]
            .as_str()
            .unwrap()
            .contains("hooks attached"),
        "{ready}"
    );
    assert_eq!(check(&ready, "ring_read")["ok"], true, "{ready}");
}

#[test]
fn a_collector_without_rules_is_alive_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "unused");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("collector.log");
    let mut collector = ChildGuard::spawn(
        "collector",
        serve_command(
            &None,
            &format!("127.0.0.1:{}", free_port()),
            &pki,
            &rules,
            &dir.path().join("data"),
        )
        .args(["--metrics-listen", &addr])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap())),
    );
    assert!(
        poll(Duration::from_secs(20), || connectable(&addr)).is_some(),
        "metrics listener: {}",
        tail(&read(&log), 20)
    );
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    let (status, body) = readiness(&addr);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(check(&body, "rules_loaded")["ok"], false, "{body}");
    assert_eq!(check(&body, "rules_loaded")["detail"], "0 rules loaded");
    assert_eq!(check(&body, "store_writable")["ok"], true, "{body}");
    assert_eq!(check(&body, "sinks_alive")["ok"], true, "{body}");
    collector.assert_running();
}

#[test]
fn a_collector_whose_sink_keeps_failing_is_not_ready_until_it_delivers() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "sink-agent");
    let receiver = Receiver::spawn();
    // Refused 12 times, then accepted.
    receiver.script(std::iter::repeat_n(Reply::Status(503), 12));
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[delivery]\ninitial_backoff = \"100ms\"\nmax_backoff = \"300ms\"\nmeta_alert_after = 3\n\n\
             [[sinks]]\nkind = \"webhook\"\nname = \"sirt\"\nurl = \"{}/kestrel\"\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config_arg = config.display().to_string();
    let mut collector = Collector::new(
        dir.path(),
        &pki,
        &["--config", &config_arg, "--metrics-listen", &addr],
    );
    collector.start();
    let (status, body) = readiness(&addr);
    assert_eq!(
        status,
        200,
        "ready before any alert: {body}; log:\n{}",
        tail(&read(&collector.log()), 30)
    );
    let mut agent = Agent::new(dir.path(), &pki, "sink-agent", collector.port, &[]);
    agent.start();
    let status = Command::new("/bin/sh")
        .args(["-c", "cat /etc/shadow > /dev/null; true"])
        .status()
        .unwrap();
    assert!(status.success());

    let dead = poll(Duration::from_secs(30), || {
        let (status, body) = readiness(&addr);
        (status == 503).then_some(body)
    })
    .unwrap_or_else(|| panic!("never unready: {:?}", readiness(&addr)));
    let sinks = check(&dead, "sinks_alive");
    assert_eq!(sinks["ok"], false);
    let detail = sinks["detail"].as_str().unwrap();
    assert!(detail.contains("sink sirt:"), "{detail}");
    assert!(detail.contains("failed in a row"), "{detail}");

    receiver.expect(
        Duration::from_secs(30),
        "the alert delivered at last",
        |body| body["data"]["rule"]["id"] == "kestrel-cred-shadow-read-cli",
    );
    let revived = poll(Duration::from_secs(10), || {
        let (status, body) = readiness(&addr);
        (status == 200).then_some(body)
    });
    assert!(revived.is_some(), "still unready: {:?}", readiness(&addr));
}
