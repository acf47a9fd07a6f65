//! Silence is a signal, end to end: a real agent heartbeats; when it is killed the collector
//! raises `agent silent`, and `agent recovered` when it comes back.

use std::time::Duration;

use kestrel_testkit::{
    expect_json_line, require_root_for_ebpf,
    stack::{certs, identity, read, Agent, Collector},
};

#[test]
fn killed_agent_raises_agent_silent_and_its_return_agent_recovered() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "beating");
    let mut collector = Collector::new(dir.path(), &pki, &["--agent-silent-after", "3s"]);
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, "beating", collector.port, &[]);
    agent.start();
    agent.expect_connected();
    // Heartbeats (every second) keep it from being silent.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !read(&collector.alerts).contains("agent-silent"),
        "no alert while it heartbeats:\n{}",
        read(&collector.alerts)
    );

    agent.kill();
    let host = identity("beating");
    let silent = expect_json_line(
        &collector.alerts,
        Duration::from_secs(15),
        "the agent-silent alert",
        |a| a["rule"]["id"] == "kestrel.system.agent-silent" && a["host"] == host.as_str(),
    );
    assert_eq!(silent["rule"]["level"], "high", "{silent}");

    agent.start();
    expect_json_line(
        &collector.alerts,
        Duration::from_secs(20),
        "the agent-recovered alert",
        |a| a["rule"]["id"] == "kestrel.system.agent-recovered" && a["host"] == host.as_str(),
    );
}
