//! Collector ingest throughput: agents stream batches over real mutual TLS (gRPC), the collector
//! detects with the default rule set, drops duplicates by (identity, epoch, sequence) and commits
//! each batch to SQLite (WAL, synchronous=FULL) before acknowledging it. Target: 100,000 events/s.
//!
//! The collector is the real release binary (`kestrel-collector serve`); the agents are tonic
//! clients in this process. Measured side by side in one run:
//! - **full path**: fresh events through mTLS + detection + dedup + SQLite commit, acknowledged;
//! - **duplicates**: the same batches sent again (all dropped by the store, still acknowledged);
//! - **baseline**: the store alone in this process (`WriteBatch::write_batch`: no TLS, no gRPC,
//!   no detection), the cost floor the full path is compared with.
//!
//! Besides events per second (which depend on what else the machine runs), the collector's CPU
//! time per event is reported: it does not, and it gives the rate one core sustains. So is the
//! CPU time of the collector's single store writer thread (dedup, detection, group commit),
//! the serial part of the path: with a core to itself, it caps the rate.
//!
//! `KESTREL_INGEST_AGENTS` (default 4) agents send `KESTREL_INGEST_BATCHES` (default 100)
//! batches of 512 events each. `KESTREL_INGEST_COLLECTOR` names another collector binary to run
//! (to compare builds side by side on a busy machine).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{write, Issued, TestCa};
use kestrel_collector::alerting::{EventRecord, WriteBatch};
use kestrel_collector::store::Store;
use kestrel_proto::agent_message::Msg;
use kestrel_proto::{collector_message, AgentMessage, Event, EventBatch, Hello};
use tokio_stream::wrappers::ReceiverStream;

const BATCH: usize = 512;
const EPOCH: u64 = 7;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default rule set shipped with the collector.
fn default_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// Realistic exec events (ancestors, arguments), each a little different.
fn events(agent: usize, batch: usize) -> Vec<Event> {
    (0..BATCH)
        .map(|i| {
            let mut event = common::harmless_exec_event();
            event.time_unix_ns += (batch * BATCH + i) as u64;
            let process = event.process.as_mut().unwrap();
            process.pid = (agent * 100_000 + i) as u32;
            process.exec_id = format!("exec-{agent}-{batch}-{i}");
            process.argv = vec!["ls".into(), "-l".into(), format!("/srv/data/{i}")];
            event
        })
        .collect()
}

/// One agent: Hello, then its batches (numbered from 1), until the last one is acknowledged.
async fn agent(addr: SocketAddr, ca: Arc<TestCa>, cert: Arc<Issued>, batches: Vec<Vec<Event>>) {
    let mut client = common::connect_ingest(addr, &ca, &cert)
        .await
        .unwrap()
        .max_encoding_message_size(16 * 1024 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let hello = Hello {
        agent_version: "bench".into(),
        spool_epoch: EPOCH,
        first_unacked_seq: 1,
        ..Hello::default()
    };
    tx.send(AgentMessage {
        msg: Some(Msg::Hello(hello)),
    })
    .await
    .unwrap();
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let last = (batches.len() * BATCH) as u64;
    let sender = tokio::spawn(async move {
        for (b, events) in batches.into_iter().enumerate() {
            let first_seq = (b * BATCH) as u64 + 1;
            let msg = Msg::Batch(EventBatch { first_seq, events });
            tx.send(AgentMessage { msg: Some(msg) }).await.unwrap();
        }
        tx
    });
    loop {
        match inbound.message().await.unwrap().and_then(|m| m.msg) {
            Some(collector_message::Msg::Ack(ack)) if ack.up_to_seq >= last => break,
            Some(_) => {}
            None => panic!("stream ended before the last acknowledgement"),
        }
    }
    drop(sender.await.unwrap());
}

/// Sends every agent's batches concurrently; returns the elapsed time.
async fn run_agents(
    addr: SocketAddr,
    ca: &Arc<TestCa>,
    certs: &[Arc<Issued>],
    batches: &[Vec<Vec<Event>>],
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = certs
        .iter()
        .zip(batches)
        .map(|(cert, batches)| tokio::spawn(agent(addr, ca.clone(), cert.clone(), batches.clone())))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// CPU time (user + system) from a `/proc/.../stat` text.
fn stat_cpu(stat: &str) -> Duration {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU time (user + system) of process `pid`, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

/// CPU time of the threads of process `pid` named `name` (the collector names its store writer
/// thread `store-writer`).
fn threads_cpu(pid: u32, name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter(|stat| stat.contains(&format!("({name})")))
        .map(|stat| stat_cpu(&stat))
        .sum()
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Writes every batch with the store alone; returns (wall time, CPU time).
fn baseline(dir: &Path, batches: &[Vec<Vec<Event>>]) -> (Duration, Duration) {
    let store = Store::open(&dir.join("baseline")).unwrap();
    let started = Instant::now();
    let cpu = thread_cpu();
    for (a, agent_batches) in batches.iter().enumerate() {
        let identity = format!("spiffe://kestrel.local/node/baseline-{a}");
        for (b, events) in agent_batches.iter().enumerate() {
            let records: Vec<EventRecord> = events
                .iter()
                .zip((b * BATCH) as u64 + 1..)
                .map(|(event, seq)| {
                    let mut event = event.clone();
                    event.host.clone_from(&identity);
                    event.seq = seq;
                    EventRecord {
                        event,
                        alerts: Vec::new(),
                    }
                })
                .collect();
            store.write_batch(&identity, EPOCH, &records).unwrap();
        }
    }
    (started.elapsed(), thread_cpu() - cpu)
}

/// Starts the release collector binary on a free port.
fn start_collector(dir: &Path, ca: &TestCa) -> (std::process::Child, SocketAddr) {
    let server = ca.server();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // `KESTREL_INGEST_COLLECTOR` runs another build (a copy of an earlier one, side by side).
    let binary = std::env::var_os("KESTREL_INGEST_COLLECTOR").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_kestrel-collector")),
        PathBuf::from,
    );
    let child = Command::new(binary)
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .arg("--cert")
        .arg(write(dir, "collector.pem", &server.cert_pem))
        .arg("--key")
        .arg(write(dir, "collector-key.pem", &server.key_pem))
        .arg("--client-ca")
        .arg(write(dir, "ca.pem", &ca.cert_pem))
        .arg("--rules")
        .arg(default_rules())
        .arg("--data")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kestrel-collector");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "collector did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us means another bench runs.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"ingest".contains(a.as_str()))
    {
        return;
    }
    let agents = env("KESTREL_INGEST_AGENTS", 4);
    let per_agent = env("KESTREL_INGEST_BATCHES", 100);
    let total = agents * per_agent * BATCH;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("bench CA"));
    let certs: Vec<Arc<Issued>> = (0..agents)
        .map(|i| Arc::new(ca.agent(&format!("bench-{i}"))))
        .collect();
    let batches: Vec<Vec<Vec<Event>>> = (0..agents)
        .map(|a| (0..per_agent).map(|b| events(a, b)).collect())
        .collect();

    let (mut collector, addr) = start_collector(dir.path(), &ca);
    let pid = collector.id();
    let cpu_start = process_cpu(pid);
    let writer_start = threads_cpu(pid, "store-writer");
    let full = runtime.block_on(run_agents(addr, &ca, &certs, &batches));
    let cpu_full = process_cpu(pid) - cpu_start;
    let writer_full = threads_cpu(pid, "store-writer") - writer_start;
    let duplicates = runtime.block_on(run_agents(addr, &ca, &certs, &batches));
    let cpu_duplicates = process_cpu(pid) - cpu_start - cpu_full;
    let _ = collector.kill();
    let _ = collector.wait();
    let db = rusqlite::Connection::open(dir.path().join("data/kestrel.db")).unwrap();
    let (stored, json_bytes): (i64, f64) = db
        .query_row("SELECT COUNT(*), AVG(LENGTH(json)) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let db_bytes: i64 = db
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(db);
    assert_eq!(stored as usize, total, "each event stored exactly once");
    let (base, cpu_base) = baseline(dir.path(), &batches);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / total as f64;
    let (full_rate, dup_rate, base_rate) = (rate(full), rate(duplicates), rate(base));
    println!("ingest: {agents} agents x {per_agent} batches x {BATCH} events = {total} events");
    println!("ingest: load average while measuring: {}", load.trim());
    println!(
        "ingest: stored {json_bytes:.0} bytes of JSON per event, database {:.0} bytes per event",
        db_bytes as f64 / total as f64
    );
    println!(
        "ingest: full path (mTLS + detection + dedup + SQLite commit): {full_rate:>7.0} events/s, \
         collector CPU {:.2} us/event",
        per_event(cpu_full)
    );
    println!(
        "ingest: of which the single store writer thread (dedup, detection, SQLite): {:.2} \
         us/event, a ceiling of {:.0} events/s with a core to itself",
        per_event(writer_full),
        1e6 / per_event(writer_full)
    );
    println!(
        "ingest: duplicates resent (dropped by dedup, acknowledged):   {dup_rate:>7.0} events/s, \
         collector CPU {:.2} us/event",
        per_event(cpu_duplicates)
    );
    println!(
        "ingest: baseline, store only (no TLS, gRPC or detection):     {base_rate:>7.0} events/s, \
         CPU {:.2} us/event",
        per_event(cpu_base)
    );
    println!(
        "ingest: full path vs store-only baseline: {:.2}x the throughput, {:.2}x the CPU per event",
        full_rate / base_rate,
        cpu_full.as_secs_f64() / cpu_base.as_secs_f64()
    );
    println!(
        "ingest: target 100000 events/s {} ({full_rate:.0} measured; the collector's CPU per \
         event allows {:.0} events/s per core)",
        if full_rate >= 100_000.0 {
            "met"
        } else {
            "NOT met"
        },
        1e6 / per_event(cpu_full)
    );
}
