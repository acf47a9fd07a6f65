//! What the collector enforces about agents, over real mTLS: certificates refused with the
//! reason logged, one live stream per identity, revocation through the deny-list, reload of
//! the client CA, sequenced gaps, duplicates dropped across restarts, and silence alerts.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{uri, write, Issued, TestCa, SHADOW_RULE};
use kestrel_collector::cli::agents::ListArgs;
use kestrel_collector::cli::ServeArgs;
use kestrel_collector::ingress::AgentArgs;
use kestrel_collector::serve::{Collector, ServeError};
use kestrel_collector::store::DB_FILE;
use kestrel_proto::agent_message::Msg;
use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::{AgentMessage, Event, Gap, Heartbeat, Hello};
use kestrel_testkit::grpc::{batch, open_stream, AgentStream, DEADLINE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Everything the collector logs in this test process.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn get() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_env_filter("kestrel_collector=debug")
                .init();
            logs
        })
        .clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, offset: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[offset..]).into_owned()
    }

    /// Waits for a log line after `offset` containing every one of `needles`.
    async fn expect(&self, offset: usize, needles: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let text = self.since(offset);
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no log line with {needles:?}; logged since:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Harness {
    dir: PathBuf,
    ca: Arc<TestCa>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), ServeError>>,
}

fn serve_args(dir: &Path, ca: &TestCa, agents: AgentArgs) -> ServeArgs {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    write(&rules, "shadow.yml", SHADOW_RULE);
    if !dir.join("collector.pem").exists() {
        let server = ca.server();
        write(dir, "collector.pem", &server.cert_pem);
        write(dir, "collector-key.pem", &server.key_pem);
        write(dir, "ca.pem", &ca.cert_pem);
    }
    ServeArgs {
        check_config: false,
        listen: "127.0.0.1:0".into(),
        cert: dir.join("collector.pem"),
        key: dir.join("collector-key.pem"),
        client_ca: dir.join("ca.pem"),
        rules,
        data: dir.join("data"),
        alerts_jsonl: Some(dir.join("alerts.jsonl")),
        config: None,
        metrics_listen: None,
        log_format: None,
        agents,
        store: Default::default(),
    }
}

impl Harness {
    async fn start(dir: &Path, ca: Arc<TestCa>, agents: AgentArgs) -> Harness {
        Logs::get();
        let args = serve_args(dir, &ca, agents);
        let collector = Collector::start(&args).await.unwrap();
        let addr = collector.local_addr();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(collector.run(async {
            let _ = stopped.await;
        }));
        Harness {
            dir: dir.to_owned(),
            ca,
            addr,
            stop: Some(stop),
            server,
        }
    }

    fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir.join("data").join(DB_FILE)).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    async fn connect(&self, client: &Issued) -> Result<IngestClient<Channel>, Status> {
        common::connect_ingest(self.addr, &self.ca, client).await
    }

    /// Connects and opens a stream with a Hello, or the refusal.
    async fn open(&self, client: &Issued, epoch: u64) -> Result<AgentStream, Status> {
        let mut client = self.connect(client).await?;
        open_stream(&mut client, hello(epoch)).await
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("collector must stop within the deadline")
            .unwrap()
            .unwrap();
    }
}

fn hello(epoch: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Hello(Hello {
            agent_version: "test".into(),
            spool_epoch: epoch,
            first_unacked_seq: 1,
            ..Hello::default()
        })),
    }
}

fn events(n: usize) -> Vec<Event> {
    (0..n).map(|_| common::harmless_exec_event()).collect()
}

fn fast(agents: AgentArgs) -> AgentArgs {
    AgentArgs {
        reload_interval: Duration::from_millis(100),
        ..agents
    }
}

async fn refused(h: &Harness, cert: &Issued) -> bool {
    h.open(cert, 1).await.is_err()
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_ca_and_wrong_san_certificates_are_refused_with_the_reason_logged(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("kestrel test CA"));
    let agents = AgentArgs {
        trust_domain: Some("kestrel.local".into()),
        ..AgentArgs::default()
    };
    let h = Harness::start(dir.path(), ca.clone(), agents).await;
    let logs = Logs::get();
    let name = |n: &str| uri(&common::spiffe(n));

    let cases: Vec<(&str, Issued, &[&str])> = vec![
        (
            "expired",
            ca.issue_with(vec![name("expired")], true, |p| {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }),
            &["TLS handshake refused", "client certificate expired"],
        ),
        (
            "not yet valid",
            ca.issue_with(vec![name("future")], true, |p| {
                p.not_before = rcgen::date_time_ymd(2090, 1, 1);
                p.not_after = rcgen::date_time_ymd(2091, 1, 1);
            }),
            &["TLS handshake refused", "client certificate not yet valid"],
        ),
        (
            "wrong CA",
            TestCa::new("rogue CA").agent("rogue"),
            &["TLS handshake refused", "not issued by the client CA"],
        ),
        (
            "wrong SAN: foreign trust domain",
            ca.issue(vec![uri("spiffe://evil.example/node/x")], true),
            &[
                "client certificate refused",
                "not in trust domain kestrel.local",
            ],
        ),
        (
            "wrong SAN: no usable identity",
            ca.issue(vec![common::dns("*.example.com")], true),
            &["client certificate refused", "no usable identity"],
        ),
    ];
    for (what, cert, reason) in cases {
        let offset = logs.len();
        assert!(
            refused(&h, &cert).await,
            "{what} certificate must be refused"
        );
        let line = logs.expect(offset, reason).await;
        assert!(
            line.contains("peer=127.0.0.1:"),
            "{what}: names the peer: {line}"
        );
    }
    // A good agent is unaffected.
    let mut good = h.open(&ca.agent("web-1"), 1).await.unwrap();
    good.send(batch(1, events(1))).await;
    assert_eq!(good.ack().await, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn second_stream_from_the_same_identity_supersedes_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let h = Harness::start(dir.path(), ca.clone(), AgentArgs::default()).await;
    let agent = ca.agent("twin");
    let mut first = h.open(&agent, 5).await.unwrap();
    first.send(batch(1, events(3))).await;
    assert_eq!(first.ack().await, 3);

    let mut second = h.open(&agent, 5).await.unwrap();
    let status = first.ended().await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("superseded"), "{status:?}");

    // The newer stream resends what it does not know was stored: stored once, acked.
    second.send(batch(1, events(4))).await;
    assert_eq!(second.ack().await, 4);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 4);
    // Other identities are not affected.
    let mut other = h.open(&ca.agent("other"), 1).await.unwrap();
    other.send(batch(1, events(1))).await;
    assert_eq!(other.ack().await, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn revoking_an_identity_ends_its_stream_and_refuses_it_until_unlisted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let deny = write(dir.path(), "deny-list", "# revoked agents\n");
    let agents = fast(AgentArgs {
        deny_list: Some(deny.clone()),
        ..AgentArgs::default()
    });
    let h = Harness::start(dir.path(), ca.clone(), agents).await;
    let stolen = ca.agent("stolen");
    let mut stream = h.open(&stolen, 1).await.unwrap();
    stream.send(batch(1, events(1))).await;
    assert_eq!(stream.ack().await, 1);
    let mut bystander = h.open(&ca.agent("bystander"), 1).await.unwrap();

    let logs = Logs::get();
    let offset = logs.len();
    std::fs::write(
        &deny,
        "# revoked agents\nspiffe://kestrel.local/node/stolen\n",
    )
    .unwrap();
    let status = stream.ended().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        refused(&h, &stolen).await,
        "a revoked identity cannot reconnect"
    );
    logs.expect(
        offset,
        &["client certificate refused", "revoked", "deny-list"],
    )
    .await;

    bystander.send(batch(1, events(1))).await;
    assert_eq!(bystander.ack().await, 1, "other agents keep streaming");

    std::fs::write(&deny, "").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !refused(&h, &stolen).await,
        "taken off the list, it may connect again"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn client_ca_file_change_applies_to_new_connections_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("old CA"));
    let h = Harness::start(dir.path(), ca.clone(), fast(AgentArgs::default())).await;
    let new_ca = TestCa::new("new CA");
    let new_agent = new_ca.agent("renewed");
    let mut old = h.open(&ca.agent("old"), 1).await.unwrap();
    assert!(refused(&h, &new_agent).await);

    let logs = Logs::get();
    let offset = logs.len();
    // Both CAs during the rotation.
    write(
        dir.path(),
        "ca.pem",
        &format!("{}{}", ca.cert_pem, new_ca.cert_pem),
    );
    logs.expect(offset, &["TLS files changed"]).await;
    let mut renewed = h.open(&new_agent, 1).await.unwrap();
    renewed.send(batch(1, events(1))).await;
    assert_eq!(renewed.ack().await, 1);
    old.send(batch(1, events(1))).await;
    assert_eq!(old.ack().await, 1, "established streams continue");

    // A broken file is reported and the previous configuration stays.
    let offset = logs.len();
    write(dir.path(), "ca.pem", "not a certificate");
    logs.expect(offset, &["do not load", "ca.pem"]).await;
    assert!(!refused(&h, &new_agent).await);
    h.shutdown().await;
}

#[tokio::test]
async fn sequenced_gap_is_stored_once_and_acknowledged_like_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let h = Harness::start(dir.path(), ca.clone(), AgentArgs::default()).await;
    let mut stream = h.open(&ca.agent("lossy"), 9).await.unwrap();
    let gap = Gap {
        kind: "fork".into(),
        count: 17,
        reason: "spool_full".into(),
        first_seq: 3,
        last_seq: 3,
        ..Gap::default()
    };
    stream.send(batch(1, events(2))).await;
    assert_eq!(stream.ack().await, 2);
    stream.send(Msg::Gap(gap.clone())).await;
    assert_eq!(stream.ack().await, 3);
    stream.send(Msg::Gap(gap)).await;
    assert_eq!(stream.ack().await, 3, "a resent gap is acknowledged again");
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM gaps WHERE epoch = 9 AND first_seq = 3 AND count = 17 \
             AND reason = 'spool_full' AND kind = 'fork'"
        ),
        1
    );
    h.shutdown().await;
}

#[tokio::test]
async fn batch_stored_before_a_collector_restart_is_not_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let h = Harness::start(dir.path(), ca.clone(), AgentArgs::default()).await;
    let agent = ca.agent("steady");
    let mut stream = h.open(&agent, 42).await.unwrap();
    stream.send(batch(1, events(10))).await;
    assert_eq!(stream.ack().await, 10);
    h.shutdown().await;

    let h = Harness::start(dir.path(), ca.clone(), AgentArgs::default()).await;
    let mut stream = h.open(&agent, 42).await.unwrap();
    // The agent did not see the ack: it resends, then goes on.
    stream.send(batch(1, events(10))).await;
    assert_eq!(stream.ack().await, 10);
    stream.send(batch(11, events(5))).await;
    assert_eq!(stream.ack().await, 15);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 15);
    assert_eq!(
        h.count("SELECT COUNT(DISTINCT seq) FROM events WHERE epoch = 42"),
        15
    );
    h.shutdown().await;
}

fn alert_rules(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|a| format!("{} {}", a["rule"]["id"].as_str().unwrap_or(""), a["host"]))
        .collect()
}

async fn expect_alert(dir: &Path, rule: &str, host: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let alerts = alert_rules(dir);
        if alerts.iter().any(|a| a.contains(rule) && a.contains(host)) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no {rule} alert for {host}; alerts: {alerts:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn silent_agent_raises_an_alert_and_another_when_it_reports_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let agents = AgentArgs {
        agent_silent_after: Duration::from_millis(400),
        ..AgentArgs::default()
    };
    let h = Harness::start(dir.path(), ca.clone(), agents).await;
    let host = common::spiffe("quiet");
    let mut stream = h.open(&ca.agent("quiet"), 1).await.unwrap();
    let beat = || {
        Msg::Heartbeat(Heartbeat {
            time_unix_ns: 1,
            ..Heartbeat::default()
        })
    };
    // While it keeps talking, no alert.
    for _ in 0..4 {
        stream.send(beat()).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        !alert_rules(dir.path())
            .iter()
            .any(|a| a.contains("agent-silent")),
        "{:?}",
        alert_rules(dir.path())
    );
    // Then it falls silent.
    expect_alert(dir.path(), "kestrel.system.agent-silent", &host).await;
    stream.send(beat()).await;
    expect_alert(dir.path(), "kestrel.system.agent-recovered", &host).await;
    stream.send(batch(1, events(1))).await;
    assert_eq!(stream.ack().await, 1);
    h.shutdown().await;
}

/// Each alert of `rule` for `host` stored in the collector's database, with its count.
fn stored_alerts(dir: &Path, rule: &str, host: &str) -> Vec<(serde_json::Value, i64)> {
    let db = rusqlite::Connection::open(dir.join("data").join(DB_FILE)).unwrap();
    let mut statement = db.prepare("SELECT json, count FROM alerts").unwrap();
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    rows.map(|row| {
        let (json, count) = row.unwrap();
        (
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            count,
        )
    })
    .filter(|(a, _)| a["rule"]["id"] == rule && a["host"] == host)
    .collect()
}

/// `agents list --json` of the collector in `dir`.
fn agents_listed(dir: &Path) -> Vec<serde_json::Value> {
    kestrel_collector::cli::agents::list(&ListArgs {
        data: dir.join("data"),
        json: true,
    })
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn silence_outlives_a_collector_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("ca"));
    let agents = || AgentArgs {
        agent_silent_after: Duration::from_millis(400),
        ..AgentArgs::default()
    };
    let quiet = common::spiffe("quiet");
    let gone = common::spiffe("gone");
    let h = Harness::start(dir.path(), ca.clone(), agents()).await;
    // "quiet" connects and falls silent while the collector runs.
    let quiet_hello = unix_now_ns();
    drop(h.open(&ca.agent("quiet"), 1).await.unwrap());
    expect_alert(dir.path(), "kestrel.system.agent-silent", &quiet).await;
    // "gone" is heard from just before the collector stops, and never again.
    let gone_before = unix_now_ns();
    let gone_stream = h.open(&ca.agent("gone"), 1).await.unwrap();
    let gone_after = unix_now_ns();
    h.shutdown().await;
    drop(gone_stream);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let h = Harness::start(dir.path(), ca.clone(), agents()).await;
    // "gone" gets the full period after the restart, then its alert names when it was really
    // last heard from, not when the collector started.
    expect_alert(dir.path(), "kestrel.system.agent-silent", &gone).await;
    let (alert, _) = stored_alerts(dir.path(), "kestrel.system.agent-silent", &gone)
        .pop()
        .unwrap();
    let last_seen = alert["evidences"][0]["data"]["last_seen_unix_ns"]
        .as_u64()
        .unwrap();
    assert!(
        (gone_before..=gone_after).contains(&last_seen),
        "last seen {last_seen} is when its Hello arrived ({gone_before}..={gone_after}): {alert}"
    );
    // "quiet" was silent before the restart: no second alert for the same silence.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let silent_alerts: i64 = stored_alerts(dir.path(), "kestrel.system.agent-silent", &quiet)
        .iter()
        .map(|(_, count)| count)
        .sum();
    assert_eq!(silent_alerts, 1, "one agent-silent alert per silence");
    // `agents list` shows both silent.
    let listed = agents_listed(dir.path());
    assert_eq!(
        listed
            .iter()
            .map(|a| (
                a["identity"].as_str().unwrap(),
                a["silent_since_unix_ns"].is_u64()
            ))
            .collect::<Vec<_>>(),
        [(gone.as_str(), true), (quiet.as_str(), true)],
        "{listed:?}"
    );
    let text = kestrel_collector::cli::agents::list(&ListArgs {
        data: dir.path().join("data"),
        json: false,
    })
    .unwrap();
    assert_eq!(text.matches("SILENT since").count(), 2, "{text}");
    // When it reports again, the recovery covers the whole silence, across the restart.
    let reported = unix_now_ns();
    let stream = h.open(&ca.agent("quiet"), 1).await.unwrap();
    stream
        .send(Msg::Heartbeat(Heartbeat {
            time_unix_ns: 1,
            ..Heartbeat::default()
        }))
        .await;
    expect_alert(dir.path(), "kestrel.system.agent-recovered", &quiet).await;
    let (alert, _) = stored_alerts(dir.path(), "kestrel.system.agent-recovered", &quiet)
        .pop()
        .unwrap();
    let silent_for = alert["evidences"][0]["data"]["silent_for_s"]
        .as_f64()
        .unwrap();
    // Less the handshakes' time (the silence is about 2 s).
    let at_least = (reported - quiet_hello) as f64 / 1e9 - 0.2;
    assert!(
        silent_for >= at_least,
        "silent for {silent_for} s, at least {at_least} s: {alert}"
    );
    // Its recovery is kept too: `agents list` shows it reporting, silent agents first.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let listed = agents_listed(dir.path());
        let states: Vec<(&str, bool)> = listed
            .iter()
            .map(|a| {
                (
                    a["identity"].as_str().unwrap(),
                    a["silent_since_unix_ns"].is_u64(),
                )
            })
            .collect();
        if states == [(gone.as_str(), true), (quiet.as_str(), false)] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}
