//! Fault tests, end to end: the real collector and agent binaries, certificates from
//! `xtask certs`, `kill -9`, a full or damaged spool, hostile clients. Each test runs a workload
//! of N marked execs (`/bin/true MARKER I`) and asserts that exactly the expected ones are
//! stored, each exactly once.
//!
//! `KESTREL_FAULT_OUTAGE_SECS` sets the collector outage of
//! `collector_down_for_a_minute_of_activity_loses_nothing` (default 60).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    net::{Ipv4Addr, TcpStream},
    path::Path,
    process::Command,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use kestrel_agent::ship::spool::inspect;
use kestrel_testkit::{
    net::tcp_from,
    poll, read_json_lines, require_root_for_ebpf,
    stack::{
        certs, diff_marks, event_kind, free_port, http_get, identity, marker, metric, run_marked,
        stored_marks, tail, wait_for_marks, Agent, Collector,
    },
};
use nix::sys::signal::Signal;

const DELIVERY: Duration = Duration::from_secs(60);

/// Every agent here sees every exec on the host, so the tests of this file that run workloads
/// share it, and the full-spool test, whose accounting needs the spool filled by its own flood
/// only (not by the execs of the tests running beside it), has the host to itself.
static HOST: RwLock<()> = RwLock::new(());

fn share_host() -> RwLockReadGuard<'static, ()> {
    HOST.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn own_host() -> RwLockWriteGuard<'static, ()> {
    HOST.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Setup {
    dir: tempfile::TempDir,
    collector: Collector,
    agent: Agent,
}

/// A PKI for `name` (plus `others`), a collector (not started) and an agent (not started).
fn setup(name: &str, others: &[&str], collector_args: &[&str], agent_args: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let agents: Vec<&str> = std::iter::once(name)
        .chain(others.iter().copied())
        .collect();
    certs(&pki, &agents.join(","));
    let collector = Collector::new(dir.path(), &pki, collector_args);
    let agent = Agent::new(dir.path(), &pki, name, collector.port, agent_args);
    Setup {
        dir,
        collector,
        agent,
    }
}

/// Waits for exactly `expected` marks in the store; a failure says which of the missing ones
/// the agent captured at all (lost on the way, or never seen) and the Gaps the store holds.
fn expect_marks(collector: &Collector, agent: &Agent, marker: &str, expected: &[u32], what: &str) {
    let stored = wait_for_marks(collector, marker, expected, DELIVERY);
    if stored != expected {
        let produced = agent.produced_marks(marker);
        let missing_but_produced: Vec<u32> = expected
            .iter()
            .filter(|m| !stored.contains(m) && produced.contains(m))
            .copied()
            .collect();
        panic!(
            "{what}: {}; of the missing, the agent produced {missing_but_produced:?}; gaps: {:?}",
            diff_marks(&stored, expected),
            collector.gaps()
        );
    }
}

/// The epochs stored for `name`.
fn epochs(collector: &Collector, name: &str) -> BTreeSet<u64> {
    collector
        .search(&["--host", &identity(name)])
        .iter()
        .filter_map(|e| e["epoch"].as_u64())
        .collect()
}

/// Marked execs the agent has written to its spool.
fn spooled_marks(spool: &Path, marker: &str) -> BTreeSet<u32> {
    inspect::records(spool)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            let argv = &r.event?.process?.argv;
            (r.kind == "exec" && argv.get(1).map(String::as_str) == Some(marker))
                .then(|| argv.get(2)?.parse().ok())
                .flatten()
        })
        .collect()
}

fn wait_spooled(agent: &Agent, marker: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while spooled_marks(&agent.spool, marker).len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} marked execs reached the spool; agent log:\n{}",
            spooled_marks(&agent.spool, marker).len(),
            tail(&agent.logs(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn collector_killed_mid_stream_and_restarted_stores_each_event_once() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = share_host();
    let Setup {
        dir: _dir,
        mut collector,
        mut agent,
    } = setup("fault-a", &[], &[], &[]);
    collector.start();
    agent.start();
    agent.expect_connected();

    const N: u32 = 300;
    let mark = marker("collector-kill");
    let workload = {
        let mark = mark.clone();
        std::thread::spawn(move || run_marked(&mark, 0..N, Duration::from_millis(10)))
    };
    std::thread::sleep(Duration::from_millis(800));
    collector.kill();
    std::thread::sleep(Duration::from_millis(700));
    collector.start();
    workload.join().unwrap();

    let expected: Vec<u32> = (0..N).collect();
    expect_marks(
        &collector,
        &agent,
        &mark,
        &expected,
        "after a collector kill -9",
    );
    assert_eq!(epochs(&collector, "fault-a").len(), 1, "one epoch");
    assert!(
        agent.logs().contains("collector stream failed"),
        "the agent saw the collector go"
    );
}

#[test]
fn agent_killed_and_restarted_resends_what_was_not_acknowledged_once() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = share_host();
    let Setup {
        dir: _dir,
        mut collector,
        mut agent,
    } = setup("fault-b", &[], &[], &[]);
    collector.start();
    agent.start();
    agent.expect_connected();

    // The collector hangs: batches are sent but not acknowledged.
    collector.process().signal(Signal::SIGSTOP);
    const N: u32 = 200;
    let mark = marker("agent-kill");
    run_marked(&mark, 0..N, Duration::ZERO);
    wait_spooled(&agent, &mark, N as usize);
    agent.kill();
    collector.process().signal(Signal::SIGCONT);

    agent.start();
    agent.expect_connected();
    const M: u32 = 50;
    run_marked(&mark, N..N + M, Duration::ZERO);

    let expected: Vec<u32> = (0..N + M).collect();
    expect_marks(
        &collector,
        &agent,
        &mark,
        &expected,
        "after an agent kill -9",
    );
    assert_eq!(
        epochs(&collector, "fault-b").len(),
        1,
        "the restarted agent continues the same epoch"
    );
    let log = std::fs::read_to_string(agent.log()).unwrap();
    let connected = log
        .lines()
        .find(|l| l.contains("connected to collector"))
        .unwrap();
    assert!(
        !connected.contains("unacked=0"),
        "the restarted agent had unacknowledged events to resend: {connected}"
    );
    // The window in which the killed agent may have held events in memory is reported.
    let crash = poll(Duration::from_secs(10), || {
        collector
            .gaps()
            .into_iter()
            .find(|g| g["reason"] == "agent_crashed")
    })
    .unwrap_or_else(|| {
        panic!(
            "no agent_crashed Gap; gaps {:?}; agent log:\n{}",
            collector.gaps(),
            tail(&agent.logs(), 40)
        )
    });
    assert_eq!(crash["kind"], "all", "{crash}");
    let (from, to) = (
        crash["first_time_unix_ns"].as_u64().unwrap_or(0),
        crash["last_time_unix_ns"].as_u64().unwrap_or(0),
    );
    assert!(0 < from && from <= to, "{crash}");
}

#[test]
fn collector_down_for_a_minute_of_activity_loses_nothing() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = share_host();
    let outage = Duration::from_secs(
        std::env::var("KESTREL_FAULT_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let Setup {
        dir: _dir,
        mut collector,
        mut agent,
    } = setup("fault-c", &[], &[], &[]);
    collector.start();
    agent.start();
    agent.expect_connected();

    collector.kill();
    let mark = marker("outage");
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < outage {
        run_marked(&mark, n..n + 1, Duration::from_millis(200));
        n += 1;
    }
    collector.start();

    let expected: Vec<u32> = (0..n).collect();
    expect_marks(
        &collector,
        &agent,
        &mark,
        &expected,
        "after a collector outage",
    );
    assert!(
        u64::from(n) >= outage.as_secs() * 3,
        "the workload ran through the outage ({n} execs)"
    );
}

#[test]
fn full_spool_sheds_low_priority_kinds_with_exact_accounting() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = own_host();
    // Only exec, credential and module events may use the top 30 % of the spool: the host's
    // file and network activity during the test competes with the flood, not with the marks.
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut agent_args = vec![
        "--metrics-listen".to_owned(),
        metrics.clone(),
        "--spool-max-bytes".to_owned(),
        "4194304".to_owned(),
        "--spool-segment-bytes".to_owned(),
        "262144".to_owned(),
    ];
    for kind in ["file", "network", "ptrace", "bpf", "memfd", "namespace"] {
        agent_args.extend(["--spool-priority".to_owned(), format!("{kind}=low")]);
    }
    let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let Setup {
        dir: _dir,
        mut collector,
        mut agent,
    } = setup("fault-d", &[], &[], &agent_args);
    // No collector: everything goes to the spool, which fills. A fork and an exit take about
    // 400 bytes, so 9,000 forks fill the low tiers' 70 % (2.9 MB) with room to spare.
    agent.start();
    const FLOOD: usize = 9000;
    let mut flood = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("i=0; while [ $i -lt {FLOOD} ]; do (:); i=$((i+1)); done"),
        ])
        .spawn()
        .unwrap();
    let flood_pid = flood.id();
    assert!(flood.wait().unwrap().success());
    // The marks go in once the agent has taken the whole flood into the spool: this test is
    // about the spool's shares. (While the spool writer is behind, the queue in front of it sheds
    // by the same priorities; the agent's unit tests cover that.)
    let settled = poll(Duration::from_secs(60), || {
        let forks = read_json_lines(&agent.events)
            .iter()
            .filter(|e| e["payload"]["fork"]["parent_tgid"] == flood_pid)
            .count();
        let depth = metric(&http_get(&metrics, "/metrics"), "kestrel_agent_queue_depth");
        (forks == FLOOD && depth == Some(0.0)).then_some(())
    });
    assert!(
        settled.is_some(),
        "the agent did not take the {FLOOD}-fork flood into its spool within 60 s; log:\n{}",
        tail(&agent.logs(), 30)
    );
    let spool_bytes = || metric(&http_get(&metrics, "/metrics"), "kestrel_agent_spool_bytes");
    let before_marks = spool_bytes();
    const N: u32 = 100;
    let mark = marker("full-spool");
    run_marked(&mark, 0..N, Duration::ZERO);
    // Shed counts become Gap records once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let after_marks = spool_bytes();

    collector.start();
    let expected: Vec<u32> = (0..N).collect();
    let stored_marks = wait_for_marks(&collector, &mark, &expected, DELIVERY);
    agent.stop(Duration::from_secs(20));

    let produced = agent.produced_by_kind();
    let stored_events = collector.search(&["--host", &identity("fault-d")]);
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for event in &stored_events {
        if let Some(kind) = event_kind(event) {
            *stored.entry(kind).or_default() += 1;
        }
    }
    let mut shed: BTreeMap<String, u64> = BTreeMap::new();
    let mut shed_by_reason: BTreeMap<(String, String), u64> = BTreeMap::new();
    let gaps = collector.gaps();
    for gap in &gaps {
        let reason = gap["reason"].as_str().unwrap_or("");
        let kind = gap["kind"].as_str().unwrap_or("").to_owned();
        let count = gap["count"].as_u64().unwrap();
        if ["spool_full", "queue_full", "spool_error"].contains(&reason) {
            *shed.entry(kind.clone()).or_default() += count;
        }
        *shed_by_reason.entry((reason.to_owned(), kind)).or_default() += count;
    }
    let report = format!(
        "produced {produced:?}\nstored {stored:?}\nshed {shed:?}\ngaps by (reason, kind) \
         {shed_by_reason:?}\nexecs by image: {:?}\nspool bytes of 4194304 before the marks \
         {before_marks:?}, after {after_marks:?}",
        agent.execs_by_image()
    );
    eprintln!("{report}");
    assert_eq!(
        stored_marks,
        expected,
        "exec is kept while the spool is full: {}\n{report}",
        diff_marks(&stored_marks, &expected)
    );
    assert!(
        gaps.iter().any(|g| g["reason"] == "spool_full"),
        "a Gap records the shedding; {report}"
    );
    assert!(
        shed.get("fork").copied().unwrap_or(0) > 0 && shed.get("exit").copied().unwrap_or(0) > 0,
        "low-priority kinds are shed; {report}"
    );
    // Exec is shed last: the fork that started each marked process (low priority) was shed
    // while the exec that followed it was kept. On a busy host other processes' execs may be
    // shed too once the spool is completely full; the accounting below covers them.
    let produced_events = read_json_lines(&agent.events);
    let marked_pids: BTreeSet<u64> = produced_events
        .iter()
        .filter(|e| event_kind(e).as_deref() == Some("exec"))
        .filter(|e| e["process"]["argv"][1] == mark.as_str())
        .filter_map(|e| e["process"]["pid"].as_u64())
        .collect();
    assert_eq!(marked_pids.len(), N as usize, "{report}");
    let forks_of_marks = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| event_kind(e).as_deref() == Some("fork"))
            .filter(|e| e["payload"]["fork"]["parent_tgid"] == std::process::id())
            .filter(|e| {
                e["process"]["pid"]
                    .as_u64()
                    .is_some_and(|pid| marked_pids.contains(&pid))
            })
            .count()
    };
    assert_eq!(
        (
            forks_of_marks(&produced_events),
            forks_of_marks(&stored_events)
        ),
        (N as usize, 0),
        "(forks of the marked processes produced, stored): all shed while their execs were \
         kept; {report}"
    );
    let kinds: BTreeSet<&String> = produced
        .keys()
        .chain(shed.keys())
        .chain(stored.keys())
        .collect();
    for kind in kinds {
        let get = |m: &BTreeMap<String, u64>| m.get(kind).copied().unwrap_or(0);
        assert_eq!(
            get(&produced),
            get(&stored) + get(&shed),
            "every {kind} event the agent produced is stored or counted in a Gap; {report}"
        );
    }
}

#[test]
fn damaged_spool_record_is_reported_in_a_gap_and_later_segments_are_delivered() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = share_host();
    let Setup {
        dir: _dir,
        mut collector,
        mut agent,
    } = setup("fault-e", &[], &[], &["--spool-segment-bytes", "65536"]);
    agent.start();
    const N: u32 = 150;
    let mark = marker("corrupt");
    run_marked(&mark, 0..N, Duration::ZERO);
    wait_spooled(&agent, &mark, N as usize);
    agent.kill();

    let records = inspect::records(&agent.spool).unwrap();
    let segments: Vec<&Path> = records
        .iter()
        .map(|r| r.segment.as_path())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    // The host's other processes write to the spool too: pick a marked exec in a segment that
    // is not the last one holding marked execs, so later ones must still be delivered.
    let marked: Vec<(&inspect::RecordInfo, u32)> = records
        .iter()
        .filter(|r| r.kind == "exec")
        .filter_map(|r| {
            let argv = &r.event.as_ref()?.process.as_ref()?.argv;
            (argv.get(1) == Some(&mark)).then(|| (r, argv[2].parse::<u32>().unwrap()))
        })
        .collect();
    let last_marked_segment = &marked.last().expect("marked execs in the spool").0.segment;
    let candidates: Vec<&(&inspect::RecordInfo, u32)> = marked
        .iter()
        .filter(|(r, _)| &r.segment != last_marked_segment)
        .collect();
    let &&(target, target_mark) = candidates
        .get(candidates.len() / 2)
        .expect("marked execs span at least two segments");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&target.segment)
        .unwrap();
    let mut bytes = std::fs::read(&target.segment).unwrap();
    bytes[target.body_offset as usize + 10] ^= 0xff;
    file.write_all(&bytes).unwrap();
    drop(file);

    collector.start();
    agent.start();
    let expected: Vec<u32> = (0..N).filter(|m| *m != target_mark).collect();
    expect_marks(
        &collector,
        &agent,
        &mark,
        &expected,
        "all but the damaged record",
    );
    let gap = collector
        .gaps()
        .into_iter()
        .find(|g| g["reason"] == "spool_corrupt")
        .expect("a spool_corrupt Gap");
    assert_eq!(gap["kind"], "exec", "{gap}");
    assert_eq!(gap["count"], 1, "{gap}");
    assert_eq!(gap["first_seq"].as_u64(), Some(target.seq), "{gap}");
    assert_eq!(gap["last_seq"].as_u64(), Some(target.seq), "{gap}");
    let log = std::fs::read_to_string(agent.log()).unwrap();
    let name = target.segment.file_name().unwrap().to_str().unwrap();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("spool segment damaged")
            && l.contains(name)),
        "an error names the damaged segment; log:\n{}",
        tail(&log, 30)
    );
    let later: Vec<u32> = stored_marks(&collector, &mark)
        .into_iter()
        .filter(|m| *m > target_mark)
        .collect();
    assert!(!later.is_empty(), "records after the damage are delivered");
}

mod hostile {
    use std::{
        io::Write,
        net::TcpStream,
        path::Path,
        time::{Duration, Instant},
    };

    use kestrel_proto::{
        agent_message::Msg, ingest_client::IngestClient, AgentMessage, Event, EventBatch, Hello,
        Process,
    };
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;

    /// An authenticated gRPC client for agent `name` of the PKI in `pki`.
    pub async fn client(pki: &Path, name: &str, port: u16) -> IngestClient<Channel> {
        kestrel_testkit::grpc::connect_from_pki(pki, name, port)
            .await
            .unwrap()
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    fn hello() -> AgentMessage {
        AgentMessage {
            msg: Some(Msg::Hello(Hello {
                agent_version: "hostile".into(),
                spool_epoch: 1,
                ..Hello::default()
            })),
        }
    }

    fn batch(first_seq: u64, events: usize, argv_bytes: usize) -> AgentMessage {
        let event = Event {
            process: Some(Process {
                exe: "/bin/hostile".into(),
                argv: vec!["x".repeat(argv_bytes)],
                ..Process::default()
            }),
            payload: Some(kestrel_proto::event::Payload::Exec(Default::default())),
            ..Event::default()
        };
        AgentMessage {
            msg: Some(Msg::Batch(EventBatch {
                first_seq,
                events: vec![event; events],
            })),
        }
    }

    /// Sends one 24 MiB batch (over the 16 MiB limit); returns the collector's answer.
    pub async fn oversized(pki: &Path, port: u16) -> String {
        let mut client = client(pki, "hostile", port).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(hello()).await.unwrap();
        tx.send(batch(1, 24, 1024 * 1024)).await.unwrap();
        match client.stream(ReceiverStream::new(rx)).await {
            Err(status) => format!("{status:?}"),
            Ok(response) => {
                let mut inbound = response.into_inner();
                match tokio::time::timeout(Duration::from_secs(20), inbound.message()).await {
                    Ok(result) => format!("{result:?}"),
                    Err(_) => "no answer".into(),
                }
            }
        }
    }

    /// Sends batches as fast as it can and never reads the acknowledgements.
    pub async fn never_reads(pki: &Path, port: u16, until: Instant) {
        let mut client = client(pki, "slowpoke", port).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(hello()).await.unwrap();
        let _response = client.stream(ReceiverStream::new(rx)).await;
        let mut seq = 1;
        while Instant::now() < until {
            let sent =
                tokio::time::timeout(Duration::from_millis(200), tx.send(batch(seq, 200, 100)));
            if let Ok(Err(_)) = sent.await {
                break;
            }
            seq += 200;
        }
        // Keep the connection (and the unread acknowledgements) open to the end.
        tokio::time::sleep_until(until.into()).await;
    }

    /// Connects and writes random bytes.
    pub fn garbage(port: u16, n: usize) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..n {
            let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let bytes: Vec<u8> = (0..65_536)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = tcp.write_all(&bytes);
        }
    }
}

#[test]
fn hostile_clients_leave_the_collector_up_and_a_good_agent_delivering_within_two_seconds() {
    if !require_root_for_ebpf() {
        return;
    }
    let _host = share_host();
    let Setup {
        dir,
        mut collector,
        mut agent,
    } = setup("fault-f", &["hostile", "slowpoke"], &[], &[]);
    collector.start();
    agent.start();
    agent.expect_connected();
    let pki = dir.path().join("pki");
    let port = collector.port;

    // 200 idle connections that never start TLS, from another address (127.0.0.2): the
    // collector bounds handshakes per source address, so they hold only that address's share.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| tcp_from(Ipv4Addr::new(127, 0, 0, 2), port).unwrap())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let until = Instant::now() + Duration::from_secs(12);
    let slow = runtime.spawn({
        let pki = pki.clone();
        async move { hostile::never_reads(&pki, port, until).await }
    });
    let oversized = runtime.spawn({
        let pki = pki.clone();
        async move { hostile::oversized(&pki, port).await }
    });
    let garbage = std::thread::spawn(move || hostile::garbage(port, 50));

    let mark = marker("hostile");
    let mut latencies = Vec::new();
    for i in 0..10u32 {
        let started = Instant::now();
        run_marked(&mark, i..i + 1, Duration::ZERO);
        let expected: Vec<u32> = (0..=i).collect();
        let stored = wait_for_marks(&collector, &mark, &expected, Duration::from_secs(5));
        latencies.push(started.elapsed());
        assert_eq!(stored, expected, "{}", diff_marks(&stored, &expected));
        std::thread::sleep(Duration::from_millis(200));
    }
    garbage.join().unwrap();
    let answer = runtime.block_on(oversized).unwrap();
    assert!(
        answer.contains("OutOfRange")
            || answer.contains("ResourceExhausted")
            || answer.contains("message length too large"),
        "an oversized message is refused: {answer}"
    );
    const N: u32 = 100;
    run_marked(&mark, 10..N, Duration::ZERO);
    let expected: Vec<u32> = (0..N).collect();
    expect_marks(
        &collector,
        &agent,
        &mark,
        &expected,
        "next to hostile clients",
    );
    collector.process().assert_running();
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(2),
        "each event stored within 2 s of its exec: {latencies:?}"
    );
    eprintln!("exec to stored, next to hostile clients: {latencies:?}");
    drop(idle);
    runtime.block_on(slow).unwrap();
}
