//! Enrolment end to end with the real binaries: a VM agent with a one-time join token and no
//! certificate enrols, streams, renews its 20-second certificate again and again without a
//! restart, and every event reaches the store exactly once, stamped with the node's identity; a
//! Kubernetes agent enrols with a projected service account token signed by a locally generated
//! cluster key; when its certificate's serial is revoked (`agents revoke --serial`) its stream
//! is refused and it enrols again with its token, losing nothing; when its identity is revoked
//! it is refused everywhere and nothing more is stored.

use std::process::Command;
use std::time::Duration;

use kestrel_testkit::{
    binary, require_root_for_ebpf,
    stack::{
        certs, diff_marks, identity, marker, read, run_marked, wait_for_marks, Agent, Collector,
    },
};

#[test]
fn vm_agent_enrols_with_a_join_token_and_renews_a_short_lived_certificate_losing_nothing() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "unused");
    let enrol_port = kestrel_testkit::stack::free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[enrolment]\nlisten = \"127.0.0.1:{enrol_port}\"\nca_cert = {:?}\nca_key = {:?}\n\
             certificate_lifetime = \"20s\"\n",
            pki.join("ca.pem"),
            pki.join("ca-key.pem")
        ),
    )
    .unwrap();
    let mut collector = Collector::new(
        dir.path(),
        &pki,
        &[
            "--config",
            config.to_str().unwrap(),
            "--trust-domain",
            "kestrel.local",
        ],
    );
    collector.start();

    let output = Command::new(binary("kestrel-collector"))
        .args([
            "agents", "token", "create", "--node", "vm-e2e", "--ttl", "10m", "--data",
        ])
        .arg(&collector.data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = dir.path().join("join-token");
    std::fs::write(&token, &output.stdout).unwrap();

    let enrol_url = format!("https://localhost:{enrol_port}");
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        "vm-e2e",
        collector.port,
        &[
            "--enrol-url",
            &enrol_url,
            "--enrol-token",
            token.to_str().unwrap(),
            "--node",
            "vm-e2e",
        ],
    );
    let live = dir.path().join("identity");
    std::fs::create_dir(&live).unwrap();
    agent.cert = live.join("agent.pem");
    agent.key = live.join("agent-key.pem");
    agent.start();
    agent.expect_connected();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&agent.key).unwrap().permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "the key the agent made is its own");

    // 45 s of marked execs: the 20 s certificate is renewed at least twice meanwhile.
    let mark = marker("enrol");
    let expected: Vec<u32> = (0..90).collect();
    run_marked(&mark, 0..90, Duration::from_millis(500));
    let stored = wait_for_marks(&collector, &mark, &expected, Duration::from_secs(60));
    assert_eq!(stored, expected, "{}", diff_marks(&stored, &expected));

    let logs = agent.logs();
    let enrolments = logs.matches("enrolled: new certificate written").count();
    assert!(
        enrolments >= 3,
        "one enrolment and at least two renewals:\n{logs}"
    );
    assert!(
        logs.matches("TLS files changed: reconnecting").count() >= 2,
        "the stream took up each renewed certificate:\n{logs}"
    );
    agent.process().assert_running();

    // Every stored event of the node: its identity, each sequence number once.
    let events = collector.search(&["--host", &identity("vm-e2e")]);
    assert!(!events.is_empty());
    let mut seqs: Vec<(u64, u64)> = events
        .iter()
        .map(|e| (e["epoch"].as_u64().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    let all = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), all, "no sequence number is stored twice");

    let issued = Command::new(binary("kestrel-collector"))
        .args(["agents", "certificates", "--json", "--data"])
        .arg(&collector.data)
        .output()
        .unwrap();
    let issued = String::from_utf8_lossy(&issued.stdout).into_owned();
    assert!(issued.contains("\"proof\":\"join_token\""), "{issued}");
    assert!(
        issued.matches("\"proof\":\"renewal\"").count() >= 2,
        "{issued}"
    );
    assert!(
        !read(&collector.log()).contains("enrolment refused"),
        "{}",
        read(&collector.log())
    );
}

#[test]
fn kubernetes_agent_enrols_with_its_token_comes_back_after_a_serial_revocation_not_an_identity_one()
{
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "unused");
    let cluster = kestrel_testkit::cluster::ClusterKeys::new("cluster-key");
    let jwks = dir.path().join("jwks.json");
    cluster.write_jwks(&jwks);
    let enrol_port = kestrel_testkit::stack::free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[enrolment]\nlisten = \"127.0.0.1:{enrol_port}\"\nca_cert = {:?}\nca_key = {:?}\n\n\
             [enrolment.kubernetes]\nissuer = {:?}\njwks = {jwks:?}\n",
            pki.join("ca.pem"),
            pki.join("ca-key.pem"),
            kestrel_testkit::cluster::ISSUER,
        ),
    )
    .unwrap();
    let mut collector = Collector::new(
        dir.path(),
        &pki,
        &[
            "--config",
            config.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    collector.start();

    // The projected token, as the kubelet writes it.
    let token = dir.path().join("token");
    let claims = kestrel_testkit::cluster::TokenClaims::agent_on("k8s-node-1");
    std::fs::write(&token, cluster.token(&claims)).unwrap();
    let enrol_url = format!("https://localhost:{enrol_port}");
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        "k8s-node-1",
        collector.port,
        &[
            "--enrol-url",
            &enrol_url,
            "--enrol-token",
            token.to_str().unwrap(),
            "--node",
            "k8s-node-1",
        ],
    );
    let live = dir.path().join("identity");
    std::fs::create_dir(&live).unwrap();
    agent.cert = live.join("agent.pem");
    agent.key = live.join("agent-key.pem");
    agent.start();
    agent.expect_connected();
    let mark = marker("k8s-enrol");
    run_marked(&mark, 0..3, Duration::ZERO);
    let stored = wait_for_marks(&collector, &mark, &[0, 1, 2], Duration::from_secs(30));
    assert_eq!(stored, [0, 1, 2], "{}", diff_marks(&stored, &[0, 1, 2]));
    let events = collector.search(&["--command-line", &format!("/bin/true {mark} 0")]);
    assert_eq!(events[0]["host"], identity("k8s-node-1"));

    let issued = Command::new(binary("kestrel-collector"))
        .args(["agents", "certificates", "--json", "--data"])
        .arg(&collector.data)
        .output()
        .unwrap();
    let issued: serde_json::Value =
        serde_json::from_slice(issued.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(issued["proof"], "kubernetes");
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let revoked = Command::new(binary("kestrel-collector"))
        .args([
            "agents", "revoke", "--serial", &serial, "--reason", "test", "--data",
        ])
        .arg(&collector.data)
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    // Its live stream is ended at once.
    kestrel_testkit::stack::expect_in_file(
        &collector.log(),
        &format!("certificate serial {serial} revoked"),
        Duration::from_secs(20),
    );
    // Refused, the agent enrols again with its token (a new key and serial): what it saw
    // meanwhile waited in its spool and arrives, once.
    run_marked(&mark, 3..5, Duration::ZERO);
    let all: Vec<u32> = (0..5).collect();
    let stored = wait_for_marks(&collector, &mark, &all, Duration::from_secs(40));
    assert_eq!(stored, all, "{}", diff_marks(&stored, &all));
    let issued = Command::new(binary("kestrel-collector"))
        .args(["agents", "certificates", "--json", "--data"])
        .arg(&collector.data)
        .output()
        .unwrap();
    let issued = String::from_utf8_lossy(&issued.stdout).into_owned();
    assert_eq!(
        issued.matches("\"proof\":\"kubernetes\"").count(),
        2,
        "{issued}"
    );
    assert!(issued.contains("\"revoked\":true"), "{issued}");

    // A revoked identity is refused everywhere, enrolment included: nothing more is stored.
    let revoked = Command::new(binary("kestrel-collector"))
        .args([
            "agents",
            "revoke",
            "--identity",
            &identity("k8s-node-1"),
            "--data",
        ])
        .arg(&collector.data)
        .output()
        .unwrap();
    assert!(revoked.status.success());
    kestrel_testkit::stack::expect_in_file(
        &collector.log(),
        &format!("identity {} is revoked", identity("k8s-node-1")),
        Duration::from_secs(30),
    );
    run_marked(&mark, 5..7, Duration::ZERO);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        kestrel_testkit::stack::stored_marks(&collector, &mark),
        all,
        "a revoked identity stores nothing more"
    );
    agent.process().assert_running();
}
