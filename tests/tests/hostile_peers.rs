//! Hostile peers against the real collector binary over mutual TLS: an attacker holding one
//! valid agent certificate (or none) sends what a real agent never would. Each test asserts the
//! collector refuses it with a status naming the limit, stays up with bounded memory, and that
//! a well-behaved agent's batches are still acknowledged within a second and its alert stored.
//!
//! `KESTREL_HOSTILE_BIN_DIR` runs the suite against the collector in another directory (for
//! example an older release build, to see what each attack did before).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kestrel_proto::agent_message::Msg;
use kestrel_proto::event::Payload;
use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::{AgentMessage, Ancestor, Event, ExecEvent, Heartbeat, Hello, Process};
use kestrel_testkit::grpc::{batch, connect_ingest, open_stream};
use kestrel_testkit::net::tcp_from;
use kestrel_testkit::pki::{spiffe, Issued, TestCa};
use kestrel_testkit::procstat::resident_bytes;
use kestrel_testkit::stack::{read, tail, Collector};
use kestrel_testkit::{poll, read_json_lines};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

/// A well-behaved agent's batch must be acknowledged within this, whatever the attacker does.
const ACK_BUDGET: Duration = Duration::from_secs(1);

/// The collector's peak resident memory may not pass this.
const RSS_BUDGET: u64 = 512 * 1024 * 1024;

/// A collector with a throw-away PKI, and the certificates of its agents.
struct Env {
    _dir: tempfile::TempDir,
    ca: TestCa,
    collector: Collector,
    addr: SocketAddr,
}

impl Env {
    /// Starts a collector with `extra` serve arguments.
    fn start(extra: &[&str]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir(&pki).unwrap();
        let ca = TestCa::new("hostile-peers CA");
        let server = ca.server();
        std::fs::write(pki.join("ca.pem"), &ca.cert_pem).unwrap();
        server.write(&pki, "collector");
        let mut collector = Collector::new(dir.path(), &pki, extra);
        collector.bin_dir = std::env::var_os("KESTREL_HOSTILE_BIN_DIR").map(PathBuf::from);
        collector.start();
        let addr = format!("127.0.0.1:{}", collector.port).parse().unwrap();
        Env {
            _dir: dir,
            ca,
            collector,
            addr,
        }
    }

    async fn connect(&self, agent: &Issued) -> IngestClient<Channel> {
        connect_ingest(self.addr, &self.ca, agent)
            .await
            .expect("a valid agent connects")
    }

    fn log(&self) -> String {
        read(&self.collector.log())
    }

    /// The collector is still running and its peak memory stayed bounded.
    fn assert_healthy(&mut self) {
        self.collector.process().assert_running();
        let (rss, peak) = resident_bytes(self.collector.process().id());
        eprintln!("collector RSS {} MiB, peak {} MiB", rss >> 20, peak >> 20);
        assert!(
            peak < RSS_BUDGET,
            "collector peak RSS {} MiB is over {} MiB",
            peak >> 20,
            RSS_BUDGET >> 20
        );
    }

    /// Waits for an alert line satisfying `matches`; the panic shows what arrived.
    fn expect_alert(&self, what: &str, matches: impl Fn(&serde_json::Value) -> bool) {
        let found = poll(Duration::from_secs(10), || {
            read_json_lines(&self.collector.alerts)
                .into_iter()
                .find(|a| matches(a))
        });
        assert!(
            found.is_some(),
            "no alert {what}; alerts:\n{:#?}\ncollector log:\n{}",
            read_json_lines(&self.collector.alerts),
            tail(&self.log(), 30)
        );
    }

    fn alerts_with(&self, needle: &str) -> usize {
        read_json_lines(&self.collector.alerts)
            .iter()
            .filter(|a| a.to_string().contains(needle))
            .count()
    }
}

/// An exec of `cat /etc/shadow` from bash: the default rules alert on it.
fn shadow_exec() -> Event {
    Event {
        time_unix_ns: 1_700_000_000_000_000_000,
        process: Some(Process {
            pid: 4242,
            tgid: 4242,
            ppid: 4200,
            uid: 1000,
            user: "alice".into(),
            exe: "/usr/bin/cat".into(),
            comm: "cat".into(),
            argv: vec!["cat".into(), "/etc/shadow".into()],
            cwd: "/home/alice".into(),
            exec_id: "exec-4242".into(),
            parent_exec_id: "exec-4200".into(),
            ..Process::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors: vec![ancestor(4200, "/usr/bin/bash")],
            ..ExecEvent::default()
        })),
        ..Event::default()
    }
}

/// An exec of `/usr/bin/ls` numbered `n` (its content differs with `n`).
fn harmless_exec(n: u32) -> Event {
    let mut event = shadow_exec();
    let process = event.process.as_mut().unwrap();
    process.exe = "/usr/bin/ls".into();
    process.comm = "ls".into();
    process.argv = vec!["ls".into(), format!("/tmp/{n}")];
    process.pid = 5000 + n;
    process.exec_id = format!("exec-ls-{n}");
    event
}

fn ancestor(pid: u32, exe: &str) -> Ancestor {
    Ancestor {
        pid,
        exe: exe.into(),
        argv: vec![exe.into()],
        exec_id: format!("exec-{pid}"),
        ..Ancestor::default()
    }
}

fn hello_msg(epoch: u64, first_unacked_seq: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Hello(Hello {
            agent_version: "hostile-test".into(),
            hostname: "liar".into(),
            spool_epoch: epoch,
            first_unacked_seq,
            heartbeat_interval_ms: 10_000,
            ..Hello::default()
        })),
    }
}

/// A well-behaved agent running beside the attack: one batch (with a shadow read) every
/// 100 ms, each of whose acks is timed.
struct Honest {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
    identity: String,
}

impl Honest {
    async fn start(env: &Env) -> Honest {
        let name = "honest";
        let agent = env.ca.agent(name);
        let mut client = env.connect(&agent).await;
        let mut stream = open_stream(&mut client, hello_msg(1, 0)).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _client = client;
                let mut latencies = Vec::new();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) || latencies.is_empty() {
                    let sent = Instant::now();
                    stream.send(batch(seq, vec![shadow_exec()])).await;
                    let acked = tokio::time::timeout(Duration::from_secs(30), stream.ack())
                        .await
                        .expect("the honest agent's batch is acknowledged at all");
                    assert_eq!(acked, seq);
                    latencies.push(sent.elapsed());
                    seq += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                latencies
            }
        });
        Honest {
            stop,
            task,
            identity: spiffe(name),
        }
    }

    /// Stops it and checks every ack came within [`ACK_BUDGET`] and its alert was stored.
    async fn finish(self, env: &mut Env) {
        self.stop.store(true, Ordering::Relaxed);
        let latencies = self.task.await.expect("the honest agent ran to the end");
        let slowest = latencies.iter().max().copied().unwrap_or_default();
        eprintln!(
            "honest agent: {} batches, slowest ack {slowest:?}",
            latencies.len()
        );
        assert!(
            slowest < ACK_BUDGET,
            "a well-behaved agent waited {slowest:?} for an ack (of {} batches)",
            latencies.len()
        );
        let identity = self.identity.clone();
        env.expect_alert("for the honest agent's shadow read", |a| {
            a["host"] == identity.as_str() && a.to_string().contains("/etc/shadow")
        });
        env.assert_healthy();
    }
}

/// Sends `msg` on a fresh stream of `agent` after its Hello, and returns the status the
/// collector ends the stream with.
async fn refusal_of(env: &Env, agent: &Issued, msg: AgentMessage) -> tonic::Status {
    let mut client = env.connect(agent).await;
    let mut stream = open_stream(&mut client, hello_msg(9, 0)).await.unwrap();
    stream.send(msg).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.rx.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("the collector neither refused nor ended the stream within 20s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_4000_ancestors_is_refused_by_the_ancestor_limit() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let mut deep = shadow_exec();
    if let Some(Payload::Exec(exec)) = &mut deep.payload {
        exec.ancestors = (0..4000).map(|i| ancestor(10_000 + i, "/bin/sh")).collect();
    }
    let status = refusal_of(&env, &env.ca.agent("deep"), batch(0, vec![deep])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Counted in the encoded message, before anything is decoded.
    assert_eq!(
        status.message(),
        "exec.ancestors has 4000 ancestors; the limit is 64"
    );
    assert!(env.log().contains("agent message refused"), "logged");
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_naming_the_size_limit() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let mut huge = harmless_exec(0);
    huge.process.as_mut().unwrap().argv = vec!["x".repeat(4000); 1300];
    let status = refusal_of(&env, &env.ca.agent("huge"), batch(0, vec![huge])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("4194304"), "{status:?}");
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_the_event_limit_is_refused_and_an_empty_one_ignored() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("wide");
    let status = refusal_of(&env, &agent, batch(0, vec![harmless_exec(1); 5000])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "batch has 5000 events; the limit is 2048");
    // An empty batch is no error: the stream goes on.
    let mut client = env.connect(&agent).await;
    let mut stream = open_stream(&mut client, hello_msg(2, 0)).await.unwrap();
    stream.send(batch(0, Vec::new())).await;
    stream.send(batch(0, vec![harmless_exec(2)])).await;
    assert_eq!(stream.ack().await, 0);
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_event_flood_does_not_stall_other_agents() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("flood");
    // One 1 MiB message of half a million empty events.
    // Refused by counting on the wire: decoding it would take ~500 MiB (it did, before).
    let status = refusal_of(&env, &agent, batch(0, vec![Event::default(); 500_000])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "batch.events has 500000 events; the limit is 16384"
    );
    // Then as many full batches as the collector takes, for three seconds.
    let mut client = env.connect(&agent).await;
    let mut stream = open_stream(&mut client, hello_msg(3, 0)).await.unwrap();
    let flood = tokio::spawn(async move {
        let start = Instant::now();
        let mut seq = 0u64;
        let mut sent = 0;
        while start.elapsed() < Duration::from_secs(3) {
            stream
                .tx
                .send(batch(seq, vec![Event::default(); 2048]))
                .await
                .unwrap();
            seq += 2048;
            sent += 1;
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.rx.message())
                    .await
                    .unwrap_or(Ok(None))
            {}
        }
        sent
    });
    let sent = flood.await.unwrap();
    eprintln!("flooder sent {sent} batches of 2048 empty events");
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_on_one_connection_is_capped() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let client = env.connect(&env.ca.agent("streams")).await;
    // 200 streams on one connection that never send their Hello.
    let mut held = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..200 {
        let (tx, rx) = mpsc::channel::<AgentMessage>(1);
        held.push(tx);
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            client.stream(ReceiverStream::new(rx)).await.map(|_| ())
        }));
    }
    let refused = |log: &str| log.matches("no Hello within").count();
    let first = poll(Duration::from_secs(40), || {
        (refused(&env.log()) > 0).then(Instant::now)
    })
    .expect("streams without a Hello are refused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_once = refused(&env.log());
    eprintln!(
        "{at_once} streams of one connection timed out together ({:?} after the first)",
        first.elapsed()
    );
    assert!(
        at_once <= 2,
        "{at_once} streams were open at once on one connection; the limit is 2"
    );
    drop(held);
    for call in calls {
        call.abort();
    }
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_identity_limit_are_refused_with_a_status() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("many");
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..12 {
        let mut client = env.connect(&agent).await;
        match open_stream(&mut client, hello_msg(4, 0)).await {
            Ok(stream) => open.push((client, stream)),
            Err(status) => refused.push(status),
        }
    }
    eprintln!("{} streams opened, {} refused", open.len(), refused.len());
    assert_eq!(
        open.len(),
        4,
        "4 connections per identity; refused: {refused:?}"
    );
    assert!(
        refused.iter().all(|s| s.code() == Code::ResourceExhausted
            && s.message()
                == "identity spiffe://kestrel.local/node/many has 4 connections; the limit is 4"),
        "{refused:?}"
    );
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_clients_from_one_address_are_capped_and_others_unaffected() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let port = env.collector.port;
    // 300 TCP connections from 127.0.0.2 that never start the TLS handshake.
    let closed_at_once = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::new();
        for _ in 0..300 {
            let socket = tcp_from(Ipv4Addr::new(127, 0, 0, 2), port).unwrap();
            conns.push(socket);
        }
        std::thread::sleep(Duration::from_millis(500));
        let closed = conns.iter_mut().filter(|c| closed_by_peer(c)).count();
        (closed, conns)
    })
    .await
    .unwrap();
    let (closed, conns) = closed_at_once;
    eprintln!("{closed} of 300 silent connections closed within 0.5 s");
    assert!(
        closed >= 300 - 64,
        "only {closed} of 300 silent handshakes from one address were closed at once"
    );
    honest.finish(&mut env).await;
    drop(conns);
}

/// True when the collector has closed `c` (a read sees the end or a reset, not "no data").
fn closed_by_peer(c: &TcpStream) -> bool {
    use std::io::Read;
    let mut c = c;
    c.set_nonblocking(true).unwrap();
    match c.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_hello_and_idle_streams_are_closed_naming_the_limit() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("mute");
    // No Hello at all.
    let mut client = env.connect(&agent).await;
    let (_tx, rx) = mpsc::channel::<AgentMessage>(1);
    let started = Instant::now();
    let opened = tokio::time::timeout(
        Duration::from_secs(40),
        client.stream(ReceiverStream::new(rx)),
    )
    .await
    .expect("the collector ends a stream without a Hello");
    let status = opened.expect_err("no stream without a Hello");
    eprintln!("no Hello: {status:?} after {:?}", started.elapsed());
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        status.message().contains("no Hello within 10s"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(12));
    // A Hello claiming 300 ms heartbeats, then silence: closed after 3 intervals.
    let mut client = env.connect(&agent).await;
    let mut hello = hello_msg(5, 0);
    if let Some(Msg::Hello(h)) = &mut hello.msg {
        h.heartbeat_interval_ms = 300;
    }
    let mut stream = open_stream(&mut client, hello).await.unwrap();
    stream
        .send(AgentMessage {
            msg: Some(Msg::Heartbeat(Heartbeat::default())),
        })
        .await;
    let started = Instant::now();
    let status = stream.ended().await;
    eprintln!("idle: {status:?} after {:?}", started.elapsed());
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("heartbeat intervals"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewound_spool_with_other_content_raises_a_sequence_conflict() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("vm");
    let first: Vec<Event> = (0..10).map(harmless_exec).collect();
    let mut client = env.connect(&agent).await;
    let mut stream = open_stream(&mut client, hello_msg(5, 0)).await.unwrap();
    stream.send(batch(0, first.clone())).await;
    assert_eq!(stream.ack().await, 9);
    drop(stream);
    // A lost ack: the same batch again after a reconnect is a silent duplicate.
    let mut stream = open_stream(&mut client, hello_msg(5, 0)).await.unwrap();
    stream.send(batch(0, first)).await;
    assert_eq!(stream.ack().await, 9);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.alerts_with("sequence-conflict"),
        0,
        "identical resend is silent"
    );
    // A snapshot restore: the same epoch and seqs, new content.
    let mut stream = open_stream(&mut client, hello_msg(5, 0)).await.unwrap();
    let restored: Vec<Event> = (100..110).map(harmless_exec).collect();
    stream.send(batch(2, restored)).await;
    let _ = stream.ack().await;
    let identity = spiffe("vm");
    env.expect_alert("kestrel.system.sequence-conflict for vm", |a| {
        let text = a.to_string();
        a["host"] == identity.as_str()
            && text.contains("kestrel.system.sequence-conflict")
            && text.contains("epoch 5, seq 2..=9")
    });
    assert!(env.log().contains("sequence conflict"), "logged");
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_of_one_certificate_are_caught_by_their_sequences() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    let stolen = env.ca.agent("twin");
    let mut a = env.connect(&stolen).await;
    let mut b = env.connect(&stolen).await;
    let mut stream_a = open_stream(&mut a, hello_msg(1, 0)).await.unwrap();
    stream_a
        .send(batch(0, (0..5).map(harmless_exec).collect()))
        .await;
    assert_eq!(stream_a.ack().await, 4);
    let mut stream_b = open_stream(&mut b, hello_msg(1, 0)).await.unwrap();
    let superseded = stream_a.ended().await;
    assert_eq!(superseded.code(), Code::Aborted, "{superseded:?}");
    stream_b
        .send(batch(0, (50..55).map(harmless_exec).collect()))
        .await;
    assert_eq!(stream_b.ack().await, 4);
    let identity = spiffe("twin");
    env.expect_alert("kestrel.system.sequence-conflict for twin", |a| {
        a["host"] == identity.as_str() && a.to_string().contains("sequence-conflict")
    });
    honest.finish(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_identity_is_cut_off_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# revoked agents\n").unwrap();
    let deny_arg = deny.to_str().unwrap().to_owned();
    let mut env = Env::start(&["--deny-list", &deny_arg, "--reload-interval", "200ms"]);
    let honest = Honest::start(&env).await;
    let agent = env.ca.agent("revoked");
    let mut client = env.connect(&agent).await;
    let mut stream = open_stream(&mut client, hello_msg(1, 0)).await.unwrap();
    stream.send(batch(0, vec![harmless_exec(1)])).await;
    assert_eq!(stream.ack().await, 0);
    std::fs::write(&deny, format!("{}\n", spiffe("revoked"))).unwrap();
    let status = stream.ended().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        connect_ingest(env.addr, &env.ca, &agent).await.is_err()
            || open_stream(&mut env.connect(&agent).await, hello_msg(1, 1))
                .await
                .is_err(),
        "a revoked identity cannot open a new stream"
    );
    honest.finish(&mut env).await;
}

/// A heartbeat reporting `spool_unacked` events waiting in the agent's spool.
fn heartbeat_with_backlog(spool_unacked: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Heartbeat(Heartbeat {
            spool_unacked,
            ..Heartbeat::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_only_stream_holding_a_backlog_raises_a_stalled_alert() {
    let mut env = Env::start(&[]);
    let honest = Honest::start(&env).await;
    // The wedge: connected and heard (Hello, heartbeats), its spool holds events, none is sent.
    let wedged = env.ca.agent("wedged");
    let mut client = env.connect(&wedged).await;
    let stream = open_stream(&mut client, hello_msg(4, 10)).await.unwrap();
    // A quiet agent with nothing waiting raises nothing, however long it only heartbeats.
    let quiet = env.ca.agent("quiet");
    let mut quiet_client = env.connect(&quiet).await;
    let quiet_stream = open_stream(&mut quiet_client, hello_msg(4, 0))
        .await
        .unwrap();
    for _ in 0..5 {
        stream.send(heartbeat_with_backlog(40)).await;
        quiet_stream.send(heartbeat_with_backlog(0)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let host = spiffe("wedged");
    env.expect_alert("for the stream that delivers nothing", |a| {
        a["host"] == host.as_str()
            && a.to_string().contains("kestrel.system.agent-stalled")
            && a.to_string().contains("\"spool_unacked\":40")
    });
    assert_eq!(
        env.alerts_with("kestrel.system.agent-stalled"),
        1,
        "one alert per stream, and none for the quiet agent"
    );
    assert!(
        env.log()
            .contains("agent stream delivers nothing while its spool holds events"),
        "logged"
    );
    honest.finish(&mut env).await;
}
