//! End to end: the real collector and agent binaries, certificates from `xtask certs`, a real
//! exec on this host, and the alert line it must produce.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kestrel_tests::{
    binary, expect_json_line, poll, require_root_for_ebpf, workspace_root, ChildGuard,
};
use serde_json::Value;

const AGENT: &str = "e2e-agent";
const AGENT_IDENTITY: &str = "spiffe://kestrel.local/node/e2e-agent";

/// Writes a development PKI with `xtask certs`.
fn certs(out: &Path, agents: &str) {
    let status = Command::new(binary("xtask"))
        .args(["certs", "--out"])
        .arg(out)
        .args(["--agents", agents])
        .status()
        .expect("run xtask certs");
    assert!(status.success(), "xtask certs failed: {status}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(dir: &Path, name: &str) -> (PathBuf, Stdio) {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    (path, Stdio::from(file))
}

/// A collector on a fresh port with the default rules, logging to `collector.log`.
struct Collector {
    port: u16,
    alerts: PathBuf,
    log: PathBuf,
    data: PathBuf,
    _child: ChildGuard,
}

fn start_collector(dir: &Path, pki: &Path) -> Collector {
    let port = free_port();
    let (log, stderr) = log_file(dir, "collector.log");
    let alerts = dir.join("alerts.jsonl");
    let data = dir.join("data");
    let child = ChildGuard::spawn(
        "collector",
        Command::new(binary("kestrel-collector"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cert")
            .arg(pki.join("collector.pem"))
            .arg("--key")
            .arg(pki.join("collector-key.pem"))
            .arg("--client-ca")
            .arg(pki.join("ca.pem"))
            .arg("--rules")
            .arg(workspace_root().join("collector/rules"))
            .arg("--data")
            .arg(&data)
            .arg("--alerts-jsonl")
            .arg(&alerts)
            .stderr(stderr),
    );
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listening = poll(Duration::from_secs(15), || {
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()
    });
    assert!(
        listening.is_some(),
        "collector not listening; log:\n{}",
        read(&log)
    );
    Collector {
        port,
        alerts,
        log,
        data,
        _child: child,
    }
}

fn start_agent(dir: &Path, pki: &Path, name: &str, port: u16) -> (ChildGuard, PathBuf, PathBuf) {
    let (log, stderr) = log_file(dir, &format!("{name}.log"));
    let events = dir.join(format!("{name}-events.jsonl"));
    let mut child = ChildGuard::spawn(
        name,
        Command::new(binary("kestrel-agent"))
            .args(["--collector", &format!("https://localhost:{port}")])
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join(format!("{name}.pem")))
            .arg("--key")
            .arg(pki.join(format!("{name}-key.pem")))
            .arg("--events-jsonl")
            .arg(&events)
            .stderr(stderr),
    );
    let running = poll(Duration::from_secs(20), || {
        read(&log).contains("agent running").then_some(())
    });
    child.assert_running();
    assert!(
        running.is_some(),
        "{name} did not start; log:\n{}",
        read(&log)
    );
    (child, log, events)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs `cat /etc/shadow` under `sh` (the trailing `true` keeps sh from exec'ing cat in place,
/// so the chain is test -> sh -> cat). Returns the pid of sh.
fn read_shadow_under_sh() -> u32 {
    let child = Command::new("/bin/sh")
        .args(["-c", "cat /etc/shadow > /dev/null; true"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    pid
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
    let collector = start_collector(dir.path(), &pki);
    let (_agent, agent_log, events) = start_agent(dir.path(), &pki, AGENT, collector.port);

    let started = Instant::now();
    let sh_pid = read_shadow_under_sh();
    let alert = expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the shadow-read alert",
        shadow_alert_for(sh_pid),
    );
    eprintln!("exec to alert line: {:?}", started.elapsed());

    assert_eq!(
        alert["host"], AGENT_IDENTITY,
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
    let exec = expect_json_line(&events, Duration::from_secs(5), "the cat exec event", |e| {
        e["process"]["argv"] == serde_json::json!(["cat", "/etc/shadow"])
            && e["process"]["ppid"].as_u64() == Some(sh_pid as u64)
    });
    assert!(exec["payload"]["exec"].is_object(), "{exec}");
    assert!(
        !read(&agent_log).contains("ERROR"),
        "agent log:\n{}",
        read(&agent_log)
    );
    assert!(collector.data.join("kestrel.db").exists());
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
    let collector = start_collector(dir.path(), &pki);
    let (_agent, _, _) = start_agent(dir.path(), &pki, AGENT, collector.port);
    let (_rogue, rogue_log, _) = start_agent(dir.path(), &rogue_pki, "rogue", collector.port);

    let refused = poll(Duration::from_secs(10), || {
        let log = read(&collector.log);
        log.lines()
            .find(|l| l.contains("refused") && l.contains("127.0.0.1"))
            .map(str::to_owned)
    });
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "no refusal logged; collector log:\n{}",
            read(&collector.log)
        )
    });
    assert!(
        refused.to_lowercase().contains("certificate"),
        "refusal names the reason: {refused}"
    );
    assert!(poll(Duration::from_secs(10), || read(&rogue_log)
        .contains("collector stream failed")
        .then_some(()))
    .is_some());

    let sh_pid = read_shadow_under_sh();
    let alert = expect_json_line(
        &collector.alerts,
        Duration::from_secs(10),
        "the valid agent's alert",
        shadow_alert_for(sh_pid),
    );
    assert_eq!(alert["host"], AGENT_IDENTITY);
    let alerts = kestrel_tests::read_json_lines(&collector.alerts);
    assert!(
        alerts.iter().all(|a| a["host"] == AGENT_IDENTITY),
        "only the valid identity reaches the store"
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
    let output = Command::new(binary("kestrel-collector"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--cert")
        .arg(pki.join("collector.pem"))
        .arg("--key")
        .arg(pki.join("collector-key.pem"))
        .arg("--client-ca")
        .arg(pki.join("ca.pem"))
        .arg("--rules")
        .arg(&rules)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&rules.display().to_string()),
        "stderr: {stderr}"
    );
}
