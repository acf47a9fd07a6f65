//! Hot reload on SIGHUP of a real `kestrel-collector serve` process: a changed rule applies to
//! the next event; an invalid rule set is refused, the running set stays and the log names the
//! file and the reason.
//!
//! The rule file is rewritten with the same size and modification time, so the directory poll
//! cannot notice the change: only the signal can have triggered the reload.

mod common;
mod mtls_env;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::Event;
use tonic::transport::Channel;

use common::{shadow_exec_event, write, Issued, TestCa, SHADOW_RULE};
use mtls_env::{batch, hello, open_stream, AgentStream, DEADLINE};

const RULE_ID: &str = "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10";
/// Same length as [`RULE_ID`]: the rewritten file keeps its size.
const NEW_RULE_ID: &str = "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a11";

/// A `kestrel-collector serve` child process and everything it wrote to stderr.
struct Serve {
    child: Child,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    ca: TestCa,
    addr: String,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("kestrel test CA");
        let server = ca.server();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        write(&rules, "shadow.yml", SHADOW_RULE);
        let arg = |name: &str, contents: &str| write(dir.path(), name, contents);
        let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel-collector"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--cert")
            .arg(arg("collector.pem", &server.cert_pem))
            .arg("--key")
            .arg(arg("collector-key.pem", &server.key_pem))
            .arg("--client-ca")
            .arg(arg("ca.pem", &ca.cert_pem))
            .arg("--rules")
            .arg(&rules)
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--alerts-jsonl")
            .arg(dir.path().join("alerts.jsonl"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&strip_ansi(&line));
                log.push('\n');
            }
        });
        let mut serve = Serve {
            child,
            log,
            dir,
            ca,
            addr: String::new(),
        };
        let ready = serve.wait_for_log(0, &["collector ready"]);
        serve.addr = ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no listen address in {ready:?}"))
            .to_string();
        serve
    }

    fn rules(&self) -> std::path::PathBuf {
        self.dir.path().join("rules")
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The first log line after byte `from` that contains every one of `parts`; panics with
    /// the log after the deadline or when the collector exited.
    fn wait_for_log(&mut self, from: usize, parts: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(line) = log[from..]
                    .lines()
                    .find(|l| parts.iter().all(|p| l.contains(p)))
                {
                    return line.to_string();
                }
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "no log line with {parts:?} (collector exit: {exited:?}); log:\n{}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn hangup(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a valid signal number on our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// Rule ids of the alerts in the JSON-lines file, once there are `n` of them.
    fn alert_rules(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("alerts.jsonl")).unwrap_or_default();
            let ids: Vec<String> = text
                .lines()
                .map(|l| {
                    let alert: serde_json::Value = serde_json::from_str(l).unwrap();
                    find_rule_id(&alert).unwrap_or_else(|| panic!("no rule id in {l}"))
                })
                .collect();
            if ids.len() >= n || Instant::now() > deadline {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn connect(&self, client: &Issued) -> IngestClient<Channel> {
        let addr = self.addr.parse().expect("a socket address");
        common::connect_ingest(addr, &self.ca, client)
            .await
            .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rule id of an alert, wherever the alert format puts it (`rule.id` or `finding_info`).
fn find_rule_id(alert: &serde_json::Value) -> Option<String> {
    let ids = [RULE_ID, NEW_RULE_ID];
    match alert {
        serde_json::Value::String(s) if ids.contains(&s.as_str()) => Some(s.clone()),
        serde_json::Value::Array(items) => items.iter().find_map(find_rule_id),
        serde_json::Value::Object(map) => map.values().find_map(find_rule_id),
        _ => None,
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites `path` with `text`, which must be as long as the current contents, and restores
/// the modification time: the directory poll sees no change.
fn rewrite_unnoticed(path: &Path, text: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len(), text.len() as u64, "same size");
    let modified: SystemTime = before.modified().unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

/// A `cat /etc/shadow` exec from a login shell (a session) of its own, so the alerts'
/// fingerprints differ and none is deduplicated.
fn shadow_exec(n: u32) -> Event {
    let mut event = shadow_exec_event();
    let process = event.process.as_mut().unwrap();
    process.pid = 5000 + n;
    process.tgid = 5000 + n;
    process.exec_id = format!("exec-sighup-{n}");
    process.parent_exec_id = format!("exec-sighup-shell-{n}");
    if let Some(kestrel_proto::event::Payload::Exec(exec)) = &mut event.payload {
        exec.ancestors[0].exec_id = format!("exec-sighup-shell-{n}");
    }
    event.time_unix_ns += u64::from(n) * 1_000_000_000;
    event
}

async fn send(stream: &mut AgentStream, seq: u64, event: Event) {
    stream.send(batch(seq, vec![event])).await;
    assert_eq!(stream.ack().await, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_rules_and_keeps_running_ones_when_invalid() {
    let mut serve = Serve::start();
    let agent = serve.ca.agent("node-1");
    let mut client = serve.connect(&agent).await;
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    send(&mut stream, 1, shadow_exec(1)).await;
    assert_eq!(serve.alert_rules(1), [RULE_ID], "the initial rule applies");

    // A changed rule (new id), picked up on SIGHUP only.
    let file = serve.rules().join("shadow.yml");
    rewrite_unnoticed(&file, &SHADOW_RULE.replace(RULE_ID, NEW_RULE_ID));
    let mark = serve.log_len();
    serve.hangup();
    serve.wait_for_log(mark, &["rules reloaded", "trigger=\"SIGHUP\""]);
    send(&mut stream, 2, shadow_exec(2)).await;
    assert_eq!(
        serve.alert_rules(2),
        [RULE_ID, NEW_RULE_ID],
        "the next event is evaluated with the reloaded rule"
    );

    // An invalid rule set: refused with the file and the reason; the running set stays.
    let invalid = SHADOW_RULE
        .replace(RULE_ID, NEW_RULE_ID)
        .replace("condition: selection", "condition: selectiom");
    rewrite_unnoticed(&file, &invalid);
    let mark = serve.log_len();
    serve.hangup();
    let reason = serve.wait_for_log(mark, &["shadow.yml", "selectiom"]);
    assert!(reason.contains("SIGHUP"), "{reason}");
    serve.wait_for_log(
        mark,
        &["rules reload rejected", "keeping the running rules"],
    );
    send(&mut stream, 3, shadow_exec(3)).await;
    assert_eq!(
        serve.alert_rules(3),
        [RULE_ID, NEW_RULE_ID, NEW_RULE_ID],
        "the running rule set still applies after a refused reload"
    );
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "the collector survived both signals"
    );
}
