//! Agent identity end to end: the agent takes up a renewed certificate without a restart, and
//! refuses a collector whose certificate does not name it, saying why.

use std::time::Duration;

use kestrel_testkit::{
    require_root_for_ebpf,
    stack::{
        certs, diff_marks, expect_in_file, identity, marker, read, run_marked, tail,
        wait_for_marks, Agent, Collector,
    },
};

#[test]
fn agent_switches_to_a_renewed_certificate_without_restarting() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "rotate-old,rotate-new");
    let mut collector = Collector::new(dir.path(), &pki, &[]);
    collector.start();
    // The agent reads its certificate from files an operator (or cert-manager) replaces.
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let install = |name: &str| {
        for (from, to) in [
            (format!("{name}-key.pem"), "agent-key.pem"),
            (format!("{name}.pem"), "agent.pem"),
        ] {
            let tmp = live.join(format!("{to}.tmp"));
            std::fs::copy(pki.join(from), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(to)).unwrap();
        }
    };
    install("rotate-old");
    let mut agent = Agent::new(dir.path(), &pki, "rotate", collector.port, &[]);
    agent.cert = live.join("agent.pem");
    agent.key = live.join("agent-key.pem");
    agent.start();
    agent.expect_connected();

    let mark = marker("rotate");
    run_marked(&mark, 0..1, Duration::ZERO);
    let stored = wait_for_marks(&collector, &mark, &[0], Duration::from_secs(20));
    assert_eq!(stored, [0], "{}", diff_marks(&stored, &[0]));
    let first = collector.search(&["--command-line", &format!("/bin/true {mark} 0")]);
    assert_eq!(first[0]["host"], identity("rotate-old"));

    install("rotate-new");
    expect_in_file(&agent.log(), "TLS files changed", Duration::from_secs(20));
    run_marked(&mark, 1..2, Duration::ZERO);
    let stored = wait_for_marks(&collector, &mark, &[0, 1], Duration::from_secs(30));
    assert_eq!(stored, [0, 1], "{}", diff_marks(&stored, &[0, 1]));
    let second = collector.search(&["--command-line", &format!("/bin/true {mark} 1")]);
    assert_eq!(
        second[0]["host"],
        identity("rotate-new"),
        "events after the renewal carry the new certificate's identity"
    );
    agent.process().assert_running();
}

#[test]
fn agent_refuses_a_collector_whose_certificate_does_not_name_it() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "wary");
    // The collector certificate names localhost and 127.0.0.1, not 127.0.0.2.
    let mut collector = Collector::new(dir.path(), &pki, &[]);
    collector.ip = "127.0.0.2".into();
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, "wary", collector.port, &[]);
    agent.collector_host = "127.0.0.2".into();
    agent.start();
    expect_in_file(
        &agent.log(),
        "collector stream failed",
        Duration::from_secs(20),
    );
    let log = read(&agent.log());
    let line = log
        .lines()
        .find(|l| l.contains("collector stream failed"))
        .unwrap();
    assert!(
        line.contains("not valid for name"),
        "the refusal names the reason: {line}\n{}",
        tail(&log, 20)
    );
    assert!(
        !read(&collector.log()).contains("agent stream opened"),
        "no stream was opened"
    );
}
