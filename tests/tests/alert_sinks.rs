//! End to end: the real collector (configured with `--config`) and agent, a real exec on this
//! host, and the signed webhook that reaches a real HTTP receiver; then the `alerts` CLI on the
//! collector's data directory.

use std::{
    path::Path,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use kestrel_testkit::{
    binary, expect_json_line,
    receiver::Receiver,
    require_root_for_ebpf,
    stack::{certs, identity, Agent, Collector},
};
use sha2::Sha256;

const AGENT: &str = "sinks-agent";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn collector_cli(args: &[&str], data: &Path) -> String {
    let output = Command::new(binary("kestrel-collector"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kestrel-collector {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn exec_alert_reaches_a_signed_webhook_and_the_alerts_cli() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);

    let receiver = Receiver::spawn();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[delivery]\ninitial_backoff = \"100ms\"\n\n[[sinks]]\nkind = \"webhook\"\n\
             name = \"sirt\"\nurl = \"{}/kestrel\"\nsecret = \"{SECRET}\"\nmin_level = \"medium\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut collector = Collector::new(dir.path(), &pki, &["--config", &config_arg]);
    collector.start();
    let (data, alerts_jsonl) = (collector.data.clone(), collector.alerts.clone());
    let mut agent = Agent::new(dir.path(), &pki, AGENT, collector.port, &[]);
    agent.start();

    let sh = Command::new("/bin/sh")
        .args(["-c", "cat /etc/shadow > /dev/null; true"])
        .spawn()
        .unwrap();
    let sh_pid = u64::from(sh.id());
    assert!(sh.wait_with_output().unwrap().status.success());

    let request = receiver.expect(Duration::from_secs(15), "the shadow-read alert", |body| {
        body["data"]["rule"]["id"] == "kestrel-cred-shadow-read-cli"
            && body["data"]["ancestors"][0]["pid"].as_u64() == Some(sh_pid)
    });
    assert_eq!(request.path, "/kestrel");
    // Standard Webhooks: HMAC-SHA256 over id.timestamp.body with the decoded whsec_ key.
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            request.header("webhook-id"),
            request.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(request.header("webhook-signature"), expected);
    let sent_at: u64 = request.header("webhook-timestamp").parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(sent_at) < 60);

    let alert = request.json()["data"].clone();
    assert_eq!(alert["class_uid"], 2004);
    assert_eq!(alert["host"], identity(AGENT));
    assert_eq!(alert["process"]["command_line"], "cat /etc/shadow");
    assert_eq!(alert["process"]["user"], "root");
    assert_eq!(alert["ancestors"][0]["exe"], "/bin/sh");
    assert_eq!(
        alert["finding_info"]["attacks"][0]["sub_technique"]["uid"],
        "T1003.008"
    );
    assert_eq!(
        request.header("webhook-id"),
        format!("msg_{}", alert["metadata"]["uid"].as_str().unwrap())
    );

    // --alerts-jsonl is a sink too: the same alert record, same uid.
    let line = expect_json_line(
        &alerts_jsonl,
        Duration::from_secs(10),
        "the alert line",
        |l| l["metadata"]["uid"] == alert["metadata"]["uid"],
    );
    assert_eq!(line["rule"]["id"], "kestrel-cred-shadow-read-cli");

    let id = alert["id"].as_i64().unwrap().to_string();
    let listed = collector_cli(&["alerts", "list"], &data);
    assert!(
        listed.contains("Shadow password file read by a command-line tool"),
        "{listed}"
    );
    let shown = collector_cli(&["alerts", "show", &id], &data);
    assert!(
        shown.contains("/bin/sh -c cat /etc/shadow > /dev/null; true"),
        "{shown}"
    );
    assert!(shown.contains("root  cat /etc/shadow"), "{shown}");
    assert!(shown.contains("sirt"), "{shown}");
    let acked = collector_cli(&["alerts", "ack", &id, "--by", "e2e"], &data);
    assert!(acked.contains("acknowledged by e2e"), "{acked}");
    assert!(collector_cli(&["alerts", "show", &id], &data).contains("acknowledged"));
}
