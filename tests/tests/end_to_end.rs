//! End to end: the real collector and agent binaries, certificates from `xtask certs`, a real
//! exec on this host, and the alert line it must produce.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use kestrel_testkit::pty::Pty;
use kestrel_testkit::{
    binary, expect_json_line, poll, require_root_for_ebpf,
    stack::{certs, free_port, http_get, identity, metric, read, serve_command, Agent, Collector},
};
use serde_json::Value;

const AGENT: &str = "e2e-agent";

/// Runs `cat /etc/shadow` under `sh` (the trailing `true` keeps sh from exec'ing cat in place,
/// so the chain is test -> sh -> cat), on `terminal` if given. Returns the pid of sh.
fn read_shadow_under_sh(terminal: Option<&Pty>) -> u32 {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "cat /etc/shadow > /dev/null; true"]);
    if let Some(pty) = terminal {
        pty.make_controlling(&mut command);
    }
    let child = command.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    pid
}

/// A collector for `dir` that raises one alert per matching event: alerts fold by session, and
/// the tests of this file run their `cat /etc/shadow` concurrently in one session (each agent
/// sees the others' too), so with the default `dedup_window` one test's alert could be counted
/// into another's.
fn collector_without_folding(dir: &Path, pki: &Path, args: &[&str]) -> Collector {
    let config = dir.join("collector.toml");
    std::fs::write(&config, "[alerts]\ndedup_window = \"0s\"\n").unwrap();
    let config = config.display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    Collector::new(dir, pki, &all)
}

fn shadow_alert_for(sh_pid: u32) -> impl Fn(&Value) -> bool {
    move |alert: &Value| {
        alert["rule"]["id"] == "kestrel-cred-shadow-read-cli"
            && alert["ancestors"][0]["pid"].as_u64() == Some(sh_pid as u64)
    }
}

#[test]
fn exec_on_this_host_becomes_an_alert_with_identity_and_parent_chain() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let mut collector = collector_without_folding(dir.path(), &pki, &[]);
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, AGENT, collector.port, &[]);
    agent.start();

    // On a terminal, like someone at a shell prompt.
    let pty = Pty::open();
    let started = Instant::now();
    let sh_pid = read_shadow_under_sh(Some(&pty));
    let alert = expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the shadow-read alert",
        shadow_alert_for(sh_pid),
    );
    eprintln!("exec to alert line: {:?}", started.elapsed());

    assert_eq!(
        alert["host"],
        identity(AGENT),
        "identity from the client certificate SAN"
    );
    assert_eq!(
        alert["rule"]["title"],
        "Shadow password file read by a command-line tool"
    );
    assert!(alert["rule"]["level"].is_string());
    let process = &alert["process"];
    assert!(
        process["exe"].as_str().unwrap().ends_with("/cat"),
        "{process}"
    );
    assert_eq!(process["command_line"], "cat /etc/shadow");
    assert_eq!(process["user"], "root");
    assert_eq!(process["ppid"].as_u64(), Some(sh_pid as u64));
    assert_eq!(process["tty"], pty.name.as_str(), "the terminal it ran on");
    let ancestors = alert["ancestors"].as_array().expect("ancestors");
    assert_eq!(ancestors[0]["exe"], "/bin/sh");
    assert_eq!(
        ancestors[0]["command_line"],
        "/bin/sh -c cat /etc/shadow > /dev/null; true"
    );
    assert_eq!(
        ancestors[1]["pid"].as_u64(),
        Some(std::process::id() as u64),
        "grandparent is this test"
    );
    assert_eq!(
        ancestors[1]["exe"],
        std::env::current_exe().unwrap().display().to_string()
    );

    // The agent also wrote the exec to its own JSON-lines file.
    let exec = expect_json_line(
        &agent.events,
        Duration::from_secs(5),
        "the cat exec event",
        |e| {
            e["process"]["argv"] == serde_json::json!(["cat", "/etc/shadow"])
                && e["process"]["ppid"].as_u64() == Some(sh_pid as u64)
        },
    );
    assert!(exec["payload"]["exec"].is_object(), "{exec}");
    assert!(
        !agent.logs().contains("ERROR"),
        "agent log:\n{}",
        agent.logs()
    );
    assert!(collector.data.join("kestrel.db").exists());
}

#[test]
fn who_logged_in_reaches_the_alert_of_what_they_ran_as_root() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let mut collector = collector_without_folding(dir.path(), &pki, &[]);
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, AGENT, collector.port, &[]);
    agent.start();

    // A login as `nobody` (what pam_loginuid does at an SSH login), then a command run as root
    // in it, as after `sudo`: the alert names root as the user and nobody as who logged in.
    let child = Command::new("/bin/sh")
        .args([
            "-c",
            "echo 65534 > /proc/self/loginuid && cat /etc/shadow > /dev/null; true",
        ])
        .spawn()
        .unwrap();
    let sh_pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let alert = expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the shadow-read alert",
        shadow_alert_for(sh_pid),
    );
    let process = &alert["process"];
    assert_eq!(process["user"], "root", "{process}");
    assert_eq!(process["login_uid"], 65534, "{process}");
    assert_eq!(process["login_user"], "nobody", "{process}");
    assert!(process["login_session_id"].is_u64(), "{process}");
}

#[test]
fn client_from_another_ca_is_refused_while_the_valid_agent_keeps_streaming() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let rogue_pki = dir.path().join("rogue-pki");
    certs(&pki, AGENT);
    certs(&rogue_pki, "rogue");
    // The rogue agent trusts our collector's CA but presents a certificate from its own CA.
    std::fs::copy(pki.join("ca.pem"), rogue_pki.join("ca.pem")).unwrap();
    let mut collector = collector_without_folding(dir.path(), &pki, &[]);
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, AGENT, collector.port, &[]);
    agent.start();
    let mut rogue = Agent::new(dir.path(), &rogue_pki, "rogue", collector.port, &[]);
    rogue.start();

    let refused = poll(Duration::from_secs(10), || {
        let log = read(&collector.log());
        log.lines()
            .find(|l| l.contains("refused") && l.contains("127.0.0.1"))
            .map(str::to_owned)
    });
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "no refusal logged; collector log:\n{}",
            read(&collector.log())
        )
    });
    assert!(
        refused.to_lowercase().contains("certificate"),
        "refusal names the reason: {refused}"
    );
    assert!(poll(Duration::from_secs(10), || read(&rogue.log())
        .contains("collector stream failed")
        .then_some(()))
    .is_some());

    let sh_pid = read_shadow_under_sh(None);
    let alert = expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the valid agent's alert",
        shadow_alert_for(sh_pid),
    );
    assert_eq!(alert["host"], identity(AGENT));
    let alerts = kestrel_testkit::read_json_lines(&collector.alerts);
    assert!(
        alerts.iter().all(|a| a["host"] == identity(AGENT)),
        "only the valid identity reaches the store"
    );
}

#[test]
fn agent_and_collector_serve_metrics_of_what_flowed() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let collector_metrics = format!("127.0.0.1:{}", free_port());
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let mut collector =
        collector_without_folding(dir.path(), &pki, &["--metrics-listen", &collector_metrics]);
    collector.start();
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        AGENT,
        collector.port,
        &["--metrics-listen", &agent_metrics],
    );
    agent.start();
    let sh_pid = read_shadow_under_sh(None);
    expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the shadow-read alert",
        shadow_alert_for(sh_pid),
    );

    let scraped = poll(Duration::from_secs(15), || {
        let agent_side = http_get(&agent_metrics, "/metrics");
        let collector_side = http_get(&collector_metrics, "/metrics");
        let sent = metric(&agent_side, "kestrel_agent_events_sent_total")?;
        let stored = metric(&collector_side, "kestrel_collector_events_stored")?;
        (sent > 0.0 && stored > 0.0).then_some((agent_side, collector_side))
    });
    let (agent_side, collector_side) =
        scraped.expect("both endpoints report the events that flowed");
    assert!(agent_side.starts_with("HTTP/1.1 200"), "{agent_side}");
    assert!(
        metric(&agent_side, "kestrel_agent_resident_bytes").is_some_and(|rss| rss > 1e6),
        "{agent_side}"
    );
    assert!(
        metric(&collector_side, "kestrel_collector_alerts_stored").is_some_and(|n| n >= 1.0),
        "{collector_side}"
    );
    assert_eq!(
        metric(&collector_side, "kestrel_collector_agents_known"),
        Some(1.0),
        "{collector_side}"
    );

    // A metrics address that is taken is an error naming the flag.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let output = serve_command(
        &None,
        "127.0.0.1:0",
        &pki,
        &kestrel_testkit::workspace_root().join("collector/rules"),
        &dir.path().join("data-2"),
    )
    .args(["--metrics-listen", &taken_addr])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--metrics-listen") && stderr.contains(&taken_addr),
        "stderr: {stderr}"
    );
}

#[test]
fn agent_with_a_missing_key_file_exits_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let missing = pki.join("no-such-key.pem");
    let output = Command::new(binary("kestrel-agent"))
        .args(["--collector", "https://localhost:1"])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join(format!("{AGENT}.pem")))
        .arg("--key")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "stderr: {stderr}"
    );
}

#[test]
fn collector_with_a_missing_rules_directory_exits_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let rules = dir.path().join("no-rules-here");
    let output = serve_command(&None, "127.0.0.1:0", &pki, &rules, &dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&rules.display().to_string()),
        "stderr: {stderr}"
    );
}
