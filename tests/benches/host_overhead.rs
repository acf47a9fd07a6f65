//! What watching a host costs the host: four workloads timed without and with a monitor,
//! alternating in one run, for the agent in three configurations and for auditd, the peer a
//! VM fleet uses instead.
//!
//! Workloads (each run in a fresh thread whose audit login uid is 1000, as a logged-in user's
//! work is, so auditd's STIG rules, which filter on `auid>=1000`, apply to it):
//! - `exec`: 4,000 × fork + exec of `/bin/true`, waited for;
//! - `file`: 20,000 × (create + write, rename, chmod, unlink) in a scratch directory;
//! - `tcp`: 5,000 × loopback connect + accept + close;
//! - `build`: a real build, `cargo build --offline -j <cores>` of a throwaway crate depending on
//!   `libgit2-sys` with its vendored libgit2 (about 230 C files compiled by `cc`, plus the
//!   build-script crates), in a fresh target directory each time. The crate is fetched once
//!   from crates.io into `target/host-overhead/` and built once before measuring (warm caches).
//!
//! Configurations, each against `none` (no monitor) measured right before it, per round:
//! - `floor`: the agent's programs attached, user space discarding every record undecoded
//!   (`--discard-records`): what nothing in user space can remove;
//! - `agent`: the agent alone, default settings, `--events-jsonl` to a file on tmpfs, no
//!   collector: its own cost;
//! - `stack`: the agent with default settings streaming to a local collector with the default
//!   rules (`collector/rules`): the headline figure;
//! - `auditd`: Debian's auditd 3 started directly (`auditd -n`, its own configuration and log
//!   in a temporary directory) with Debian's example rules 10-base-config + 30-stig +
//!   71-networking and one exec rule in the STIG's style (the STIG set logs no exec at all),
//!   loaded with `auditctl -R` (rules watching a path this host lacks are left out). No `-e 2` (immutable) or loginuid-immutable line is ever
//!   loaded; on the way out (also on panic) the rules are deleted, auditing is disabled and
//!   auditd stopped. Skipped, saying why, when the kernel has no audit or someone else's audit
//!   is running.
//!
//! Reported per workload × configuration (medians over rounds): the throughput ratio with /
//! without (the time without over the time with), the CPU of each monitor process (µs per
//! event captured, µs per workload operation, seconds per run; auditd with the `kauditd`
//! kernel thread), events delivered, events lost in the kernel and in the agent, the agent's
//! peak RSS (VmHWM), and from BPF statistics (`BPF_ENABLE_STATS`, on only while an agent runs)
//! the kernel's ns per program run and ns per workload operation. Then the targets, with a
//! verdict each (printed, not asserted): storms ≥ 0.90 and the build ≥ 0.98 throughput ratio
//! with the stack; agent CPU ≤ 4 µs per event over the file storm and ≤ 40 µs per exec;
//! cheaper than auditd on every workload; no drop at the default ring size; peak RSS ≤ 48 MiB.
//!
//! Events are counted host-wide over each measurement (what the monitor really handled), so
//! other activity on the machine is in them.
//!
//! Needs root; without it, says so and skips. Environment: `KESTREL_BENCH_ROUNDS` (default 3),
//! `KESTREL_BENCH_SCALE` (default 1.0: multiplies the storms' operation counts, for a smoke
//! run), `KESTREL_BENCH_WORKLOADS` (default `exec,file,tcp,build`), `KESTREL_BENCH_CONFIGS`
//! (default `floor,agent,stack,auditd`), `KESTREL_BENCH_AGENT_ARGS` (added agent flags) and
//! `KESTREL_BENCH_BIN_DIR` (prebuilt release binaries).

use std::{
    collections::BTreeMap,
    ffi::CString,
    io::{BufRead, BufReader, Seek, SeekFrom},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use kestrel_testkit::{
    bench,
    procstat::{bpf_program_ids, cpu_time, resident_bytes, thread_named},
    stack::{certs_with, free_port, http_get, metric, release_binaries, tail, Collector},
    workspace_root, ChildGuard,
};

const BENCH: &str = "host_overhead";
/// The agent's name (its certificate) in the stack configuration.
const AGENT: &str = "host-overhead-bench";
/// The audit login uid the workloads run under: a logged-in user's session.
const LOGIN_UID: &str = "1000";
/// Where Debian's auditd package keeps its example rules.
const AUDIT_RULES: &str = "/usr/share/doc/auditd/examples/rules";
/// The example rule files loaded, in order.
const AUDIT_RULE_FILES: [&str; 3] = [
    "10-base-config.rules",
    "30-stig.rules",
    "71-networking.rules",
];
/// Every exec by a user session, in the STIG's style (its key names it): what makes auditd see
/// the exec storm that the agent sees.
const AUDIT_EXEC_RULE: &str =
    "-a always,exit -F arch=b64 -S execve,execveat -F auid>=1000 -F auid!=unset -F key=exec";

fn main() -> ExitCode {
    let plan = Plan::from_env();
    bench::main(BENCH, || run(&plan))
}

/// What to run, from the environment.
struct Plan {
    rounds: u64,
    scale: f64,
    workloads: Vec<Workload>,
    configs: Vec<Config>,
}

impl Plan {
    fn from_env() -> Plan {
        let scale = std::env::var("KESTREL_BENCH_SCALE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(1.0);
        Plan {
            rounds: bench::env_or("KESTREL_BENCH_ROUNDS", 3),
            scale,
            workloads: selected("KESTREL_BENCH_WORKLOADS", &Workload::ALL, Workload::key),
            configs: selected("KESTREL_BENCH_CONFIGS", &Config::ALL, Config::key),
        }
    }
}

/// The items of `all` named in the comma-separated list in `var` (all when unset).
fn selected<T: Copy>(var: &str, all: &[T], key: fn(&T) -> &'static str) -> Vec<T> {
    match std::env::var(var) {
        Ok(list) => all
            .iter()
            .filter(|item| list.split(',').any(|name| name.trim() == key(item)))
            .copied()
            .collect(),
        Err(_) => all.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// One of the measured workloads.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    Exec,
    File,
    Tcp,
    Build,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Exec,
        Workload::File,
        Workload::Tcp,
        Workload::Build,
    ];

    fn key(&self) -> &'static str {
        match self {
            Workload::Exec => "exec",
            Workload::File => "file",
            Workload::Tcp => "tcp",
            Workload::Build => "build",
        }
    }

    /// Operations per run at scale 1.
    fn full_ops(&self) -> u64 {
        match self {
            Workload::Exec => 4_000,
            Workload::File => 20_000,
            Workload::Tcp => 5_000,
            Workload::Build => 1,
        }
    }

    /// Operations per run at `scale` (the build is always one build).
    fn ops(&self, scale: f64) -> u64 {
        match self {
            Workload::Build => 1,
            _ => ((self.full_ops() as f64 * scale) as u64).max(1),
        }
    }

    fn describe(&self, ops: u64) -> String {
        match self {
            Workload::Exec => format!("exec storm: {ops} × fork + exec /bin/true"),
            Workload::File => {
                format!("file storm: {ops} × (create+write, rename, chmod, unlink)")
            }
            Workload::Tcp => format!("TCP storm: {ops} × loopback connect + accept + close"),
            Workload::Build => "real build: libgit2-sys (vendored libgit2), cargo -j cores".into(),
        }
    }

    /// Runs it once in a fresh login-session thread; returns how long it took.
    fn run(&self, ops: u64, build: Option<&BuildProject>) -> anyhow::Result<Duration> {
        let workload = *self;
        in_login_session(move || match workload {
            Workload::Exec => exec_storm(ops),
            Workload::File => file_storm(ops),
            Workload::Tcp => tcp_storm(ops),
            Workload::Build => build.context("build project not prepared")?.build(),
        })
    }
}

/// Runs `work` on a new thread whose audit login uid is [`LOGIN_UID`] (its children inherit
/// it). A new thread also gets an audit context when auditing is on, which a thread started
/// before auditd would lack.
fn in_login_session<T: Send>(work: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Err(e) = std::fs::write("/proc/thread-self/loginuid", LOGIN_UID) {
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        println!(
                            "{BENCH}: note: cannot set the audit login uid ({e}): auditd's auid rules will not match"
                        );
                    }
                }
                work()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("workload thread panicked"))?
    })
}

/// `ops` × fork, exec `/bin/true` in the child, wait for it.
fn exec_storm(ops: u64) -> anyhow::Result<Duration> {
    let path = CString::new("/bin/true")?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    let started = Instant::now();
    for _ in 0..ops {
        // SAFETY: the child only calls execve and _exit, both async-signal-safe, on data
        // prepared before the fork.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => bail!("fork: {}", std::io::Error::last_os_error()),
            0 => unsafe {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            },
            _ => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
                ensure!(
                    waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "/bin/true failed: status {status}"
                );
            }
        }
    }
    Ok(started.elapsed())
}

/// `ops` × (create and write a file, rename it, chmod it, unlink it) in a scratch directory.
fn file_storm(ops: u64) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    for i in 0..ops {
        let (created, renamed) = (
            dir.path().join(format!("f{i}")),
            dir.path().join(format!("g{i}")),
        );
        std::fs::write(&created, b"kestrel host overhead\n")?;
        std::fs::rename(&created, &renamed)?;
        std::fs::set_permissions(&renamed, std::fs::Permissions::from_mode(0o600))?;
        std::fs::remove_file(&renamed)?;
    }
    Ok(started.elapsed())
}

/// `ops` × (connect to a loopback listener, accept, close both ends), one at a time so the
/// listen backlog never overflows (a dropped SYN costs a 1 s retransmission).
fn tcp_storm(ops: u64) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    for _ in 0..ops {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        drop(client);
        drop(server);
    }
    Ok(started.elapsed())
}

/// The real build: a crate depending on `libgit2-sys` (vendored libgit2), fetched once.
struct BuildProject {
    dir: PathBuf,
    jobs: usize,
}

impl BuildProject {
    /// Writes the crate into `target/host-overhead/`, fetches its dependencies (the only
    /// time the network is used) and builds it once, to warm the caches.
    fn prepare() -> anyhow::Result<BuildProject> {
        let dir = workspace_root().join("target/host-overhead/libgit2-build");
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"kestrel-host-overhead-build\"\nversion = \"0.1.0\"\n\
             edition = \"2021\"\npublish = false\n\n[dependencies]\n\
             libgit2-sys = { version = \"=0.18.8\", features = [\"vendored\"] }\n\n\
             # Not part of the Kestrel workspace around it.\n[workspace]\n",
        )?;
        std::fs::write(
            dir.join("src/main.rs"),
            "fn main() {\n    // SAFETY: libgit2's global init has no preconditions.\n    \
             println!(\"{}\", unsafe { libgit2_sys::git_libgit2_init() });\n}\n",
        )?;
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let project = BuildProject { dir, jobs };
        let fetch = project.cargo().arg("fetch").output()?;
        ensure!(
            fetch.status.success(),
            "cargo fetch in {}: {}",
            project.dir.display(),
            String::from_utf8_lossy(&fetch.stderr)
        );
        let took = project.build()?;
        println!(
            "{BENCH}: real build warmed up: {:.1} s with -j {}",
            took.as_secs_f64(),
            project.jobs
        );
        Ok(project)
    }

    fn cargo(&self) -> Command {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(&self.dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        command
    }

    /// One build from scratch in a fresh target directory; returns how long it took.
    fn build(&self) -> anyhow::Result<Duration> {
        let target = tempfile::tempdir()?;
        let started = Instant::now();
        let output = self
            .cargo()
            .args([
                "build",
                "--offline",
                "--quiet",
                "-j",
                &self.jobs.to_string(),
            ])
            .env("CARGO_TARGET_DIR", target.path())
            .stdout(Stdio::null())
            .output()?;
        let took = started.elapsed();
        ensure!(
            output.status.success(),
            "cargo build in {}: {}",
            self.dir.display(),
            tail(&String::from_utf8_lossy(&output.stderr), 20)
        );
        Ok(took)
    }
}

// ---------------------------------------------------------------------------------------------
// Monitors

/// A monitor configuration measured against none.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    Floor,
    Agent,
    Stack,
    Auditd,
}

impl Config {
    const ALL: [Config; 4] = [Config::Floor, Config::Agent, Config::Stack, Config::Auditd];

    fn key(&self) -> &'static str {
        match self {
            Config::Floor => "floor",
            Config::Agent => "agent",
            Config::Stack => "stack",
            Config::Auditd => "auditd",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Config::Floor => "floor (programs attached, records discarded)",
            Config::Agent => "agent alone (--events-jsonl, no collector)",
            Config::Stack => "agent + collector (default settings and rules)",
            Config::Auditd => "auditd (STIG + networking + exec rules)",
        }
    }
}

/// Counters of a monitor at one moment; a measurement is the difference of two.
#[derive(Clone, Default)]
struct Counters {
    /// CPU time per monitor process, by name.
    cpu: BTreeMap<String, Duration>,
    /// Events the monitor captured and delivered (None: it does not deliver any).
    delivered: Option<u64>,
    /// Events lost in the kernel (ring full, audit backlog).
    lost_kernel: u64,
    /// Events lost in user space (agent queue or spool shedding).
    lost_agent: u64,
    /// The agent's peak resident memory.
    peak_rss: Option<u64>,
    /// Per BPF program id: (name, runs, run time).
    bpf: BTreeMap<u32, (String, u64, Duration)>,
}

/// What a monitor did over one measurement.
#[derive(Clone, Default)]
struct Observed {
    cpu: BTreeMap<String, Duration>,
    delivered: Option<u64>,
    lost_kernel: u64,
    lost_agent: u64,
    peak_rss: Option<u64>,
    /// Per program name: (runs, run time).
    bpf: BTreeMap<String, (u64, Duration)>,
}

impl Observed {
    fn between(before: &Counters, after: &Counters) -> Observed {
        let cpu = after
            .cpu
            .iter()
            .map(|(name, t)| {
                let start = before.cpu.get(name).copied().unwrap_or_default();
                (name.clone(), t.saturating_sub(start))
            })
            .collect();
        let mut bpf: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
        for (id, (name, runs, time)) in &after.bpf {
            let (runs0, time0) = before
                .bpf
                .get(id)
                .map_or((0, Duration::ZERO), |(_, r, t)| (*r, *t));
            let entry = bpf.entry(name.clone()).or_default();
            entry.0 += runs.saturating_sub(runs0);
            entry.1 += time.saturating_sub(time0);
        }
        Observed {
            cpu,
            delivered: after
                .delivered
                .map(|n| n.saturating_sub(before.delivered.unwrap_or(0))),
            lost_kernel: after.lost_kernel.saturating_sub(before.lost_kernel),
            lost_agent: after.lost_agent.saturating_sub(before.lost_agent),
            peak_rss: after.peak_rss,
            bpf,
        }
    }
}

/// A running monitor: counters to read, and a way to wait until it has caught up.
trait Monitor {
    /// Its counters now.
    fn counters(&mut self) -> anyhow::Result<Counters>;
    /// Waits until what the workload made has been handled (delivered, logged).
    fn drain(&mut self) -> anyhow::Result<()>;
}

/// The release binaries and PKI the agent configurations share.
struct Kit {
    bins: PathBuf,
    dir: tempfile::TempDir,
    pki: PathBuf,
    /// Where the agent writes JSON lines: tmpfs when there is one.
    scratch: tempfile::TempDir,
}

impl Kit {
    fn new() -> anyhow::Result<Kit> {
        println!("{BENCH}: building release binaries");
        let bins = release_binaries("bench-binaries")?;
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        certs_with(&Some(bins.clone()), &pki, AGENT);
        let scratch = if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")?
        } else {
            tempfile::tempdir()?
        };
        Ok(Kit {
            bins,
            dir,
            pki,
            scratch,
        })
    }
}

/// The agent in one of its configurations (and, for the stack, its collector).
struct AgentMonitor {
    config: Config,
    child: ChildGuard,
    log: PathBuf,
    /// JSON lines output (floor and agent alone), read from `offset` on.
    jsonl: Option<PathBuf>,
    offset: u64,
    /// Tally of the JSON lines read so far: events, kernel losses, agent losses.
    tally: (u64, u64, u64),
    metrics: Option<String>,
    collector: Option<(Collector, String)>,
    /// Keeps BPF run-time statistics on while the agent runs.
    _stats: Option<std::os::fd::OwnedFd>,
}

impl AgentMonitor {
    /// Starts the agent in `config` (floor, agent or stack); `collector` for the stack.
    fn start(
        kit: &Kit,
        config: Config,
        start: usize,
        collector: Option<(Collector, String)>,
    ) -> anyhow::Result<AgentMonitor> {
        let stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Some(fd),
            Err(e) => {
                println!("{BENCH}: note: BPF statistics unavailable: {e}");
                None
            }
        };
        let log = kit
            .dir
            .path()
            .join(format!("agent-{}-{start}.log", config.key()));
        let mut command = Command::new(kit.bins.join("kestrel-agent"));
        let mut jsonl = None;
        let mut metrics = None;
        match config {
            Config::Floor | Config::Agent => {
                let path = kit.scratch.path().join(format!("events-{start}.jsonl"));
                command.arg("--events-jsonl").arg(&path);
                if config == Config::Floor {
                    command.arg("--discard-records");
                }
                jsonl = Some(path);
            }
            _ => {
                let (collector, _) = collector.as_ref().context("stack without collector")?;
                let addr = format!("127.0.0.1:{}", free_port());
                command
                    .args([
                        "--collector",
                        &format!("https://localhost:{}", collector.port),
                    ])
                    .arg("--ca")
                    .arg(kit.pki.join("ca.pem"))
                    .arg("--cert")
                    .arg(kit.pki.join(format!("{AGENT}.pem")))
                    .arg("--key")
                    .arg(kit.pki.join(format!("{AGENT}-key.pem")))
                    .arg("--spool")
                    .arg(kit.dir.path().join(format!("spool-{start}")))
                    .args(["--metrics-listen", &addr]);
                metrics = Some(addr);
            }
        }
        command
            .args(bench::agent_args())
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log)?));
        let child = ChildGuard::spawn("kestrel-agent", &mut command);
        let ready = if config == Config::Stack {
            "connected to collector"
        } else {
            "agent running"
        };
        let mut monitor = AgentMonitor {
            config,
            child,
            log,
            jsonl,
            offset: 0,
            tally: (0, 0, 0),
            metrics,
            collector,
            _stats: stats,
        };
        monitor.wait_for_log(ready, Duration::from_secs(120))?;
        // Let its start-up work (reading /proc, connecting) settle.
        std::thread::sleep(Duration::from_secs(2));
        Ok(monitor)
    }

    fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
        {
            self.child.assert_running();
            if Instant::now() > deadline {
                bail!(
                    "agent log has no {needle:?} within {timeout:?}:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the agent (SIGTERM) and hands back the collector for the next start.
    fn stop(mut self) -> anyhow::Result<Option<(Collector, String)>> {
        let status = self.child.terminate(Duration::from_secs(20));
        ensure!(
            status.is_some_and(|s| s.success()),
            "agent did not stop cleanly ({status:?}); log:\n{}",
            tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
        );
        if let Some(path) = &self.jsonl {
            let _ = std::fs::remove_file(path);
        }
        Ok(self.collector.take())
    }

    /// Reads the JSON lines written since the last call into the tally.
    fn read_jsonl(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.jsonl else {
            return Ok(());
        };
        let tally = &mut self.tally;
        read_new_lines(std::fs::File::open(path)?, &mut self.offset, |line| {
            if !line.starts_with("{\"gap\"") {
                tally.0 += 1;
                return;
            }
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                return;
            };
            let count = value["gap"]["count"].as_u64().unwrap_or(0);
            if value["gap"]["reason"].as_str() == Some("kernel") {
                tally.1 += count;
            } else {
                tally.2 += count;
            }
        })
    }

    /// The BPF programs the agent holds, with their statistics.
    fn bpf(&self) -> BTreeMap<u32, (String, u64, Duration)> {
        let ids = bpf_program_ids(self.child.id());
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|info| ids.contains(&info.id()))
            .map(|info| {
                let name = info.name_as_str().unwrap_or("?").to_owned();
                (info.id(), (name, info.run_count(), info.run_time()))
            })
            .collect()
    }
}

impl Monitor for AgentMonitor {
    fn counters(&mut self) -> anyhow::Result<Counters> {
        let pid = self.child.id();
        let mut counters = Counters {
            cpu: BTreeMap::from([("kestrel-agent".to_string(), cpu_time(pid))]),
            peak_rss: Some(resident_bytes(pid).1),
            bpf: self.bpf(),
            ..Counters::default()
        };
        if self.jsonl.is_some() {
            self.read_jsonl()?;
            counters.delivered = (self.config != Config::Floor).then_some(self.tally.0);
            counters.lost_kernel = self.tally.1;
            counters.lost_agent = self.tally.2;
        }
        if let Some(addr) = &self.metrics {
            let text = http_get(addr, "/metrics");
            let value = |name| metric(&text, name).unwrap_or(0.0) as u64;
            counters.lost_kernel = value("kestrel_agent_kernel_drops_total");
            counters.lost_agent = value("kestrel_agent_events_shed_total");
        }
        if let Some((collector, addr)) = &mut self.collector {
            let text = http_get(addr, "/metrics");
            counters.delivered =
                Some(metric(&text, "kestrel_collector_events_stored").unwrap_or(0.0) as u64);
            counters.cpu.insert(
                "kestrel-collector".into(),
                cpu_time(collector.process().id()),
            );
        }
        Ok(counters)
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        if let Some(addr) = self.metrics.clone() {
            // Until the spool is acknowledged and the queue empty (host noise aside).
            while Instant::now() < deadline {
                let text = http_get(&addr, "/metrics");
                let unacked = metric(&text, "kestrel_agent_spool_unacked").unwrap_or(0.0);
                let queued = metric(&text, "kestrel_agent_queue_depth").unwrap_or(0.0);
                if unacked == 0.0 && queued == 0.0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else if let Some(path) = self.jsonl.clone() {
            // Until the output stops growing for half a second.
            let mut last = (u64::MAX, Instant::now());
            while Instant::now() < deadline {
                let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                if len != last.0 {
                    last = (len, Instant::now());
                } else if last.1.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Loss reports come once a second.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(())
    }
}

/// Starts the stack's collector (default rules, metrics on a free port).
fn start_collector(kit: &Kit) -> anyhow::Result<(Collector, String)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut collector = Collector::new(kit.dir.path(), &kit.pki, &["--metrics-listen", &addr]);
    collector.bin_dir = Some(kit.bins.clone());
    collector.start();
    Ok((collector, addr))
}

/// auditd started directly, with the rules loaded; torn down when dropped.
struct Auditd {
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
    log: PathBuf,
    offset: u64,
    /// Records and distinct events (by serial) read from the log so far.
    tally: (u64, u64),
    last_serial: String,
    kauditd: Option<u32>,
}

impl Auditd {
    /// Why auditd cannot be measured here, if it cannot.
    fn unavailable() -> Option<String> {
        if !Path::new("/usr/sbin/auditd").exists() {
            return Some("auditd is not installed (cargo xtask setup installs it)".into());
        }
        let status = match audit_status() {
            Ok(s) => s,
            Err(e) => return Some(format!("the kernel has no audit: auditctl -s: {e:#}")),
        };
        if status.get("enabled") == Some(&2) {
            return Some("the audit configuration is immutable (enabled 2)".into());
        }
        if status.get("pid").is_some_and(|p| *p != 0) {
            return Some("another audit daemon is running".into());
        }
        match auditctl(&["-l"]) {
            Ok(rules) if rules.trim() != "No rules" && !rules.trim().is_empty() => {
                Some(format!("audit rules are already loaded: {}", rules.trim()))
            }
            Ok(_) => None,
            Err(e) => Some(format!("auditctl -l: {e:#}")),
        }
    }

    /// Writes its configuration and rules, starts `auditd -n` and loads the rules.
    fn start() -> anyhow::Result<Auditd> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("audit.log");
        std::fs::create_dir_all(dir.path().join("plugins.d"))?;
        std::fs::write(
            dir.path().join("auditd.conf"),
            format!(
                "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = ENRICHED\n\
                 flush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 0\n\
                 max_log_file_action = IGNORE\nspace_left = 75\nspace_left_action = IGNORE\n\
                 admin_space_left = 50\nadmin_space_left_action = IGNORE\n\
                 disk_full_action = IGNORE\ndisk_error_action = IGNORE\npriority_boost = 4\n\
                 name_format = NONE\nq_depth = 2000\noverflow_action = SYSLOG\n\
                 plugin_dir = {}\nend_of_event_timeout = 2\n",
                log.display(),
                dir.path().join("plugins.d").display()
            ),
        )?;
        let rules = dir.path().join("bench.rules");
        std::fs::write(&rules, audit_rules()?)?;
        let stderr = std::fs::File::create(dir.path().join("auditd.stderr"))?;
        let child = ChildGuard::spawn(
            "auditd",
            Command::new("/usr/sbin/auditd")
                .arg("-n")
                .arg("-c")
                .arg(dir.path())
                .stderr(Stdio::from(stderr)),
        );
        let auditd = Auditd {
            child: Some(child),
            dir,
            log,
            offset: 0,
            tally: (0, 0),
            last_serial: String::new(),
            kauditd: thread_named("kauditd"),
        };
        let started = Instant::now();
        while audit_status()?.get("pid").copied() != Some(u64::from(auditd.pid())) {
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "auditd did not register with the kernel: {}",
                std::fs::read_to_string(auditd.dir.path().join("auditd.stderr"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        auditctl(&["-R", rules.to_str().context("rules path")?])?;
        auditctl(&["-e", "1"])?;
        let loaded = auditctl(&["-l"])?.lines().count();
        println!(
            "{BENCH}: auditd {} started, {loaded} rules loaded",
            auditd.pid()
        );
        std::thread::sleep(Duration::from_secs(2));
        Ok(auditd)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildGuard::id)
    }

    /// Reads the log written since the last call: records, and events by serial.
    fn read_log(&mut self) -> anyhow::Result<()> {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return Ok(());
        };
        let (tally, last_serial) = (&mut self.tally, &mut self.last_serial);
        read_new_lines(file, &mut self.offset, |line| {
            tally.0 += 1;
            // msg=audit(1700000000.123:4567): the serial after the colon.
            let serial = line
                .split_once("msg=audit(")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(stamp, _)| stamp)
                .unwrap_or_default();
            if serial != *last_serial {
                tally.1 += 1;
                *last_serial = serial.to_owned();
            }
        })
    }
}

impl Monitor for Auditd {
    fn counters(&mut self) -> anyhow::Result<Counters> {
        self.read_log()?;
        let mut cpu = BTreeMap::from([("auditd".to_string(), cpu_time(self.pid()))]);
        if let Some(pid) = self.kauditd {
            cpu.insert("kauditd".into(), cpu_time(pid));
        }
        Ok(Counters {
            cpu,
            delivered: Some(self.tally.1),
            lost_kernel: audit_status()?.get("lost").copied().unwrap_or(0),
            ..Counters::default()
        })
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        // Until the kernel's backlog is empty and the log stops growing for half a second.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = (u64::MAX, Instant::now());
        while Instant::now() < deadline {
            let backlog = audit_status()?.get("backlog").copied().unwrap_or(0);
            let len = std::fs::metadata(&self.log).map_or(0, |m| m.len());
            if len != last.0 || backlog != 0 {
                last = (len, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(500) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        for args in [&["-D"][..], &["-e", "0"][..]] {
            if let Err(e) = auditctl(args) {
                eprintln!("{BENCH}: auditctl {args:?} while tearing down: {e:#}");
            }
        }
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(10));
        }
    }
}

/// The rule file: Debian's example rules ([`AUDIT_RULE_FILES`], gunzipped when compressed)
/// plus [`AUDIT_EXEC_RULE`], without any line that would make the configuration immutable
/// (`-e 2`) or lock login uids.
fn audit_rules() -> anyhow::Result<String> {
    let mut rules = String::new();
    for name in AUDIT_RULE_FILES {
        let path = Path::new(AUDIT_RULES).join(name);
        let text = if path.exists() {
            std::fs::read_to_string(&path)?
        } else {
            let gz = path.with_extension("rules.gz");
            let out = Command::new("gunzip").arg("-c").arg(&gz).output()?;
            ensure!(
                out.status.success(),
                "gunzip {}: {}",
                gz.display(),
                out.status
            );
            String::from_utf8(out.stdout)?
        };
        rules.push_str(&format!("## {name}\n"));
        for line in text.lines().filter(|l| safe_audit_rule(l)) {
            rules.push_str(line);
            rules.push('\n');
        }
    }
    rules.push_str("## the bench's exec rule\n");
    rules.push_str(AUDIT_EXEC_RULE);
    rules.push('\n');
    Ok(rules)
}

/// False for a rule line that would lock the audit configuration until reboot, and for one
/// watching a path this host lacks (the kernel refuses it, and auditctl stops there).
fn safe_audit_rule(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let immutable = words.windows(2).any(|w| w[0] == "-e" && w[1] == "2");
    let watched = words.windows(2).find_map(|w| match (w[0], w[1]) {
        ("-w", path) => Some(path),
        ("-F", field) => field
            .strip_prefix("dir=")
            .or_else(|| field.strip_prefix("path=")),
        _ => None,
    });
    !immutable
        && !words.contains(&"--loginuid-immutable")
        && watched.is_none_or(|path| Path::new(path).exists())
}

/// Runs `auditctl ARGS`; its standard output.
fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("/usr/sbin/auditctl").args(args).output()?;
    ensure!(
        out.status.success(),
        "auditctl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `auditctl -s` as numbers by name (enabled, pid, lost, backlog, ...).
fn audit_status() -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(auditctl(&["-s"])?
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// One round of one workload under one configuration.
#[derive(Clone)]
struct Sample {
    without: Duration,
    with: Duration,
    observed: Observed,
}

/// All samples, per workload and configuration.
type Results = BTreeMap<(Workload, Config), Vec<Sample>>;

/// Lets the host quiet down before a measurement: the dirty pages of the workload before
/// (a build's target directory) written back, a few seconds idle. Without it the first
/// workload of a pass pays for the build that ended the previous one.
fn settle() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(3));
}

/// Times every workload with no monitor.
fn run_without(plan: &Plan, build: Option<&BuildProject>) -> anyhow::Result<Vec<Duration>> {
    plan.workloads
        .iter()
        .map(|w| {
            settle();
            w.run(w.ops(plan.scale), build)
        })
        .collect()
}

/// Times every workload with `monitor` running, reading its counters around each.
fn run_with(
    plan: &Plan,
    build: Option<&BuildProject>,
    monitor: &mut dyn Monitor,
) -> anyhow::Result<Vec<(Duration, Observed)>> {
    let mut out = Vec::new();
    for workload in &plan.workloads {
        settle();
        monitor.drain()?;
        let before = monitor.counters()?;
        let took = workload.run(workload.ops(plan.scale), build)?;
        monitor.drain()?;
        let after = monitor.counters()?;
        out.push((took, Observed::between(&before, &after)));
    }
    Ok(out)
}

/// One round of `config`: the workloads without, then with the monitor.
fn round(
    plan: &Plan,
    kit: &Kit,
    config: Config,
    round: usize,
    build: Option<&BuildProject>,
    collector: &mut Option<(Collector, String)>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let without = run_without(plan, build)?;
    let with = match config {
        Config::Auditd => {
            let mut auditd = Auditd::start()?;
            run_with(plan, build, &mut auditd)?
        }
        _ => {
            if config == Config::Stack && collector.is_none() {
                *collector = Some(start_collector(kit)?);
            }
            let handed = if config == Config::Stack {
                collector.take()
            } else {
                None
            };
            let mut agent = AgentMonitor::start(kit, config, round, handed)?;
            let with = run_with(plan, build, &mut agent);
            *collector = agent.stop()?.or(collector.take());
            with?
        }
    };
    for ((workload, without), (with, observed)) in plan.workloads.iter().zip(without).zip(with) {
        println!(
            "{BENCH}: round {round} {:<6} {:<5} without {:>8.3} s, with {:>8.3} s: ratio {:.3}",
            config.key(),
            workload.key(),
            without.as_secs_f64(),
            with.as_secs_f64(),
            without.as_secs_f64() / with.as_secs_f64()
        );
        results
            .entry((*workload, config))
            .or_default()
            .push(Sample {
                without,
                with,
                observed,
            });
    }
    Ok(())
}

fn run(plan: &Plan) -> anyhow::Result<()> {
    println!(
        "{BENCH}: {} rounds, scale {}, workloads {}, configurations {}",
        plan.rounds,
        plan.scale,
        plan.workloads
            .iter()
            .map(Workload::key)
            .collect::<Vec<_>>()
            .join(","),
        plan.configs
            .iter()
            .map(Config::key)
            .collect::<Vec<_>>()
            .join(",")
    );
    let kit = Kit::new()?;
    let build = if plan.workloads.contains(&Workload::Build) {
        Some(BuildProject::prepare()?)
    } else {
        None
    };
    let mut configs = plan.configs.clone();
    if configs.contains(&Config::Auditd) {
        if let Some(why) = Auditd::unavailable() {
            println!("{BENCH}: auditd SKIPPED: {why}");
            configs.retain(|c| *c != Config::Auditd);
        }
    }
    let mut results = Results::new();
    let mut collector = None;
    for r in 0..plan.rounds as usize {
        for &config in &configs {
            round(
                plan,
                &kit,
                config,
                r,
                build.as_ref(),
                &mut collector,
                &mut results,
            )?;
        }
    }
    drop(collector);
    report(plan, &results);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The medians of one workload × configuration that the targets look at.
struct Summary {
    ratio: f64,
    /// CPU of all the monitor's processes, seconds per run.
    cpu_s: f64,
    /// The agent's CPU alone, seconds per run.
    agent_cpu_s: f64,
    delivered: Option<f64>,
    lost: u64,
    peak_rss: Option<u64>,
}

fn summarize(plan: &Plan, workload: Workload, config: Config, samples: &[Sample]) -> Summary {
    let ops = workload.ops(plan.scale) as f64;
    let ratios: Vec<f64> = samples
        .iter()
        .map(|s| s.without.as_secs_f64() / s.with.as_secs_f64())
        .collect();
    let per = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    println!(
        "\n{BENCH}: {} × {}, {} rounds",
        workload.describe(workload.ops(plan.scale)),
        config.describe(),
        samples.len()
    );
    println!(
        "  throughput ratio with / without: {:.3} (rounds: {}); time without {:.3} s, with {:.3} s",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
        per(&|s| s.without.as_secs_f64()),
        per(&|s| s.with.as_secs_f64())
    );
    let delivered = samples[0]
        .observed
        .delivered
        .map(|_| per(&|s| s.observed.delivered.unwrap_or(0) as f64));
    let names: Vec<String> = samples[0].observed.cpu.keys().cloned().collect();
    for name in &names {
        let cpu = per(&|s| s.observed.cpu.get(name).map_or(0.0, Duration::as_secs_f64));
        let per_event = delivered
            .filter(|d| *d > 0.0)
            .map_or("n/a".to_string(), |d| format!("{:.2}", cpu * 1e6 / d));
        println!(
            "  CPU {name}: {cpu:.3} s per run, {per_event} µs per event, {:.2} µs per operation",
            cpu * 1e6 / ops
        );
    }
    let lost_kernel: u64 = samples.iter().map(|s| s.observed.lost_kernel).sum();
    let lost_agent: u64 = samples.iter().map(|s| s.observed.lost_agent).sum();
    println!(
        "  events delivered: {} per run ({} per operation); lost over all rounds: kernel {lost_kernel}, agent {lost_agent}",
        delivered.map_or("n/a (discarded)".into(), |d| format!("{d:.0}")),
        delivered.map_or("n/a".into(), |d| format!("{:.2}", d / ops)),
    );
    let peak_rss = samples.iter().filter_map(|s| s.observed.peak_rss).max();
    if let Some(rss) = peak_rss {
        println!(
            "  agent peak RSS: {:.1} MiB",
            rss as f64 / f64::from(1 << 20)
        );
    }
    print_bpf(samples, ops);
    let cpu_of = |s: &Sample, only: Option<&str>| -> f64 {
        s.observed
            .cpu
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(_, t)| t.as_secs_f64())
            .sum()
    };
    Summary {
        ratio: median(ratios),
        cpu_s: per(&|s| cpu_of(s, None)),
        agent_cpu_s: per(&|s| cpu_of(s, Some("kestrel-agent"))),
        delivered,
        lost: lost_kernel + lost_agent,
        peak_rss,
    }
}

/// The kernel's cost from BPF statistics: total ns per operation and the top programs.
fn print_bpf(samples: &[Sample], ops: f64) {
    if samples.iter().all(|s| s.observed.bpf.is_empty()) {
        return;
    }
    let total = median(
        samples
            .iter()
            .map(|s| {
                s.observed
                    .bpf
                    .values()
                    .map(|(_, t)| t.as_nanos() as f64)
                    .sum()
            })
            .collect(),
    );
    let mut programs: BTreeMap<&str, (u64, u128)> = BTreeMap::new();
    for s in samples {
        for (name, (runs, time)) in &s.observed.bpf {
            let entry = programs.entry(name.as_str()).or_default();
            entry.0 += runs;
            entry.1 += time.as_nanos();
        }
    }
    let mut top: Vec<(&str, (u64, u128))> = programs.into_iter().collect();
    top.sort_by_key(|(_, (_, ns))| std::cmp::Reverse(*ns));
    let rounds = samples.len() as f64;
    let listed: Vec<String> = top
        .iter()
        .filter(|(_, (runs, _))| *runs > 0)
        .take(6)
        .map(|(name, (runs, ns))| {
            format!(
                "{name} {:.0} ns × {:.0}",
                *ns as f64 / *runs as f64,
                *runs as f64 / rounds
            )
        })
        .collect();
    println!(
        "  kernel (BPF stats): {:.0} ns per operation, {:.3} s per run; per program (ns per run × runs per run): {}",
        total / ops,
        total / 1e9,
        listed.join(", ")
    );
}

fn report(plan: &Plan, results: &Results) {
    let mut summaries = BTreeMap::new();
    for ((workload, config), samples) in results {
        summaries.insert(
            (*workload, *config),
            summarize(plan, *workload, *config, samples),
        );
    }
    println!("\n{BENCH}: targets (scale {}):", plan.scale);
    for workload in &plan.workloads {
        verdicts(*workload, &summaries, plan.scale);
    }
}

/// Prints the targets for `workload` with their verdicts.
fn verdicts(workload: Workload, summaries: &BTreeMap<(Workload, Config), Summary>, scale: f64) {
    let key = workload.key();
    let ops = workload.ops(scale) as f64;
    if let Some(stack) = summaries.get(&(workload, Config::Stack)) {
        let target = if workload == Workload::Build {
            0.98
        } else {
            0.90
        };
        println!(
            "  {key}: throughput ratio with agent + collector {:.3} ≥ {target}: {}",
            stack.ratio,
            bench::verdict(stack.ratio >= target)
        );
        match workload {
            Workload::File => {
                let per_event = stack
                    .delivered
                    .filter(|d| *d > 0.0)
                    .map_or(f64::NAN, |d| stack.agent_cpu_s * 1e6 / d);
                println!(
                    "  {key}: agent CPU {per_event:.2} µs per event ≤ 4: {}",
                    bench::verdict(per_event <= 4.0)
                );
            }
            Workload::Exec => {
                let per_exec = stack.agent_cpu_s * 1e6 / ops;
                println!(
                    "  {key}: agent CPU {per_exec:.1} µs per exec ≤ 40: {}",
                    bench::verdict(per_exec <= 40.0)
                );
            }
            _ => {}
        }
        println!(
            "  {key}: no drop at the default ring size: {} lost: {}",
            stack.lost,
            bench::verdict(stack.lost == 0)
        );
        if let Some(rss) = stack.peak_rss {
            let mib = rss as f64 / f64::from(1 << 20);
            println!(
                "  {key}: agent peak RSS {mib:.1} MiB ≤ 48: {}",
                bench::verdict(mib <= 48.0)
            );
        }
        if let Some(auditd) = summaries.get(&(workload, Config::Auditd)) {
            println!(
                "  {key}: cheaper than auditd: ratio {:.3} vs {:.3}, monitor CPU {:.3} s vs {:.3} s per run: {}",
                stack.ratio,
                auditd.ratio,
                stack.cpu_s,
                auditd.cpu_s,
                bench::verdict(stack.ratio >= auditd.ratio && stack.cpu_s <= auditd.cpu_s)
            );
        } else {
            println!("  {key}: cheaper than auditd: not measured");
        }
    } else {
        println!("  {key}: the agent + collector configuration was not run");
    }
}

/// Calls `each` with every whole line of `file` after `offset` and moves `offset` past them;
/// a last line still being written (no newline yet) is left for the next call.
fn read_new_lines(
    mut file: std::fs::File,
    offset: &mut u64,
    mut each: impl FnMut(&str),
) -> anyhow::Result<()> {
    file.seek(SeekFrom::Start(*offset))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(());
        }
        *offset += n as u64;
        each(&line);
    }
}
