//! Agent throughput: the real release agent, shipping to the real collector, under a steady load
//! of kernel events at rising rates. Target: 50,000 events/s with no drop on this machine.
//!
//! A generator thread in this process makes an even mix of three cheap event kinds, paced in
//! 10 ms slices: `kill(pid, 0)` of a sleeping child (signal), `open(O_WRONLY|O_CREAT|O_TRUNC)`
//! of files in a scratch directory (file), and UDP `sendto` to a loopback port (network). Each
//! step runs the generator at one rate, then waits for the agent to drain. Reported per step:
//! the rate achieved, events generated and received (in the agent's `--events-jsonl` output,
//! matched by target pid, directory and port), events lost as Gap records (kernel ring drops,
//! queue or spool shedding), and the agent's CPU per second. "No drop" means received =
//! generated and no Gap at all.
//!
//! Needs root; release binaries as `release_binaries` builds them; `KESTREL_BENCH_AGENT_ARGS`
//! adds agent arguments. `KESTREL_BENCH_STEP_SECS`
//! sets each step's length (default 10), `KESTREL_BENCH_RATES` the rates (default
//! `25000,50000,100000`).

use std::{
    collections::BTreeMap,
    ffi::CString,
    io::{BufRead, BufReader, Seek, SeekFrom},
    net::UdpSocket,
    os::unix::ffi::OsStrExt,
    path::Path,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use kestrel_testkit::{
    bench,
    procstat::{cpu_time, resident_bytes},
};
use serde_json::Value;

const AGENT: &str = "throughput-bench";
/// The rate that must pass with no drop.
const TARGET_RATE: u64 = 50_000;
/// The generator's pacing slice.
const SLICE: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let step = Duration::from_secs(bench::env_or("KESTREL_BENCH_STEP_SECS", 10));
    let rates: Vec<u64> = std::env::var("KESTREL_BENCH_RATES")
        .unwrap_or_else(|_| "25000,50000,100000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    bench::main("agent_throughput", || run(step, &rates))
}

/// What the generator aims its events at, so the agent's output can be matched to them.
struct Targets {
    sleeper: std::process::Child,
    scratch: tempfile::TempDir,
    socket: UdpSocket,
    /// Where the datagrams go (kept open so they have somewhere to arrive).
    _receiver: UdpSocket,
    port: u16,
}

impl Targets {
    fn new() -> anyhow::Result<Targets> {
        let sleeper = Command::new("/bin/sleep").arg("100000").spawn()?;
        let receiver = UdpSocket::bind("127.0.0.1:0")?;
        let port = receiver.local_addr()?.port();
        Ok(Targets {
            sleeper,
            scratch: tempfile::tempdir()?,
            socket: UdpSocket::bind("127.0.0.1:0")?,
            _receiver: receiver,
            port,
        })
    }

    /// Makes event `i` of the mix.
    fn generate(&self, i: u64, files: &[CString]) {
        match i % 3 {
            0 => {
                // SAFETY: signal 0 only checks that the target exists.
                unsafe { libc::kill(self.sleeper.id() as i32, 0) };
            }
            1 => {
                let path = &files[(i / 3) as usize % files.len()];
                // SAFETY: a valid NUL-terminated path; the descriptor is closed at once.
                unsafe {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o600,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                }
            }
            _ => {
                let _ = self.socket.send_to(b"k", ("127.0.0.1", self.port));
            }
        }
    }

    /// Whether an agent event is one of ours, and of which kind.
    fn classify(&self, event: &Value) -> Option<&'static str> {
        let payload = event.get("payload")?;
        if let Some(signal) = payload.get("signal") {
            return (signal["target_pid"].as_u64() == Some(u64::from(self.sleeper.id())))
                .then_some("signal");
        }
        if let Some(file) = payload.get("file") {
            let dir = self.scratch.path().to_str()?;
            return file["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(dir))
                .then_some("file");
        }
        let network = payload.get("network")?;
        (network["remote_port"].as_u64() == Some(u64::from(self.port))).then_some("network")
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

/// Runs the generator at `rate` events/s for `length`; returns events made and time taken.
fn generate(targets: &Targets, rate: u64, length: Duration) -> (u64, Duration) {
    let files: Vec<CString> = (0..64)
        .map(|i| {
            let path = targets.scratch.path().join(format!("f{i}"));
            CString::new(path.as_os_str().as_bytes()).unwrap()
        })
        .collect();
    let per_slice = rate * SLICE.as_nanos() as u64 / 1_000_000_000;
    let started = Instant::now();
    let mut next = started;
    let mut made = 0;
    while started.elapsed() < length {
        for _ in 0..per_slice {
            targets.generate(made, &files);
            made += 1;
        }
        next += SLICE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (made, started.elapsed())
}

/// Reads the agent's JSON lines from `offset` on: our events per kind, and Gap counts per
/// reason. Returns the new offset.
fn tally(
    events: &Path,
    offset: u64,
    targets: &Targets,
    received: &mut BTreeMap<&'static str, u64>,
    lost: &mut BTreeMap<String, u64>,
) -> anyhow::Result<u64> {
    let mut file = std::fs::File::open(events)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut consumed = offset;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        consumed += n as u64;
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(gap) = value.get("gap") {
            let reason = gap["reason"].as_str().unwrap_or("?");
            let kind = gap["kind"].as_str().unwrap_or("?");
            *lost.entry(format!("{reason}/{kind}")).or_default() +=
                gap["count"].as_u64().unwrap_or(0);
        } else if let Some(kind) = targets.classify(&value) {
            *received.entry(kind).or_default() += 1;
        }
    }
    Ok(consumed)
}

struct Step {
    rate: u64,
    made: u64,
    took: Duration,
    received: u64,
    lost: BTreeMap<String, u64>,
    cpu_per_s: f64,
    rss: u64,
}

fn run(length: Duration, rates: &[u64]) -> anyhow::Result<()> {
    let bench::ReleaseStack {
        dir: _dir,
        collector: _collector,
        mut agent,
    } = bench::release_stack("agent_throughput", AGENT, &[])?;
    let targets = Targets::new()?;
    std::thread::sleep(Duration::from_secs(2));
    let mut offset = std::fs::metadata(&agent.events)?.len();

    let mut steps = Vec::new();
    for &rate in rates {
        let cpu0 = cpu_time(agent.pid());
        let (made, took) = generate(&targets, rate, length);
        let cpu = cpu_time(agent.pid()) - cpu0;
        let rss = resident_bytes(agent.pid()).0;
        let (mut received, mut lost) = (BTreeMap::new(), BTreeMap::new());
        // Drain: until everything made has arrived and the once-a-second loss reports are in,
        // or none of our events has arrived for 3 s (the host's own events go on arriving).
        let (mut last_total, mut changed, mut complete) = (0, Instant::now(), None);
        loop {
            offset = tally(&agent.events, offset, &targets, &mut received, &mut lost)?;
            let total: u64 = received.values().sum();
            if total != last_total {
                (last_total, changed) = (total, Instant::now());
            }
            if total >= made && complete.is_none() {
                complete = Some(Instant::now());
            }
            if complete.is_some_and(|t| t.elapsed() > Duration::from_millis(1500))
                || changed.elapsed() > Duration::from_secs(3)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let step = Step {
            rate,
            made,
            took,
            received: received.values().sum(),
            lost,
            cpu_per_s: cpu.as_secs_f64() / took.as_secs_f64(),
            rss,
        };
        println!(
            "agent_throughput: target {:>7}/s achieved {:>7.0}/s: generated {:>8}, received {:>8} {:?}, lost {:?}; agent CPU {:.0} ms/s, RSS {:.1} MiB",
            step.rate,
            step.made as f64 / step.took.as_secs_f64(),
            step.made,
            step.received,
            received,
            step.lost,
            step.cpu_per_s * 1e3,
            step.rss as f64 / (1 << 20) as f64
        );
        steps.push(step);
    }
    agent.stop(Duration::from_secs(20));

    let at_target = steps.iter().find(|s| s.rate == TARGET_RATE);
    match at_target {
        Some(s) => {
            let achieved = s.made as f64 / s.took.as_secs_f64();
            let no_drop = s.received == s.made && s.lost.is_empty();
            println!(
                "agent_throughput: at {TARGET_RATE}/s: achieved {achieved:.0}/s ({:.2} x target), received {} of {} generated, {} lost; target 50,000 events/s with no drop: {}",
                achieved / TARGET_RATE as f64,
                s.received,
                s.made,
                s.lost.values().sum::<u64>(),
                bench::verdict(no_drop && achieved >= 0.98 * TARGET_RATE as f64)
            );
        }
        None => println!("agent_throughput: the {TARGET_RATE}/s step was not run"),
    }
    Ok(())
}
