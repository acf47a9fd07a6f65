//! Agent resident memory with many live processes. Target: at most 64 MiB with 5,000 live
//! processes on this machine.
//!
//! The real release agent, shipping to the real collector. Measured: its resident memory idle;
//! after 5,000 processes were started while it ran (each exec goes through the pipeline into the
//! process table); after a restart with the 5,000 still alive (the table seeded from `/proc`);
//! and after they all exited. Each process is `/bin/sleep` with a distinct argv[0] of a
//! realistic length. Reported: current (VmRSS) and peak (VmHWM) resident memory per phase; the
//! verdict takes the highest peak.
//!
//! Needs root; release binaries as `release_binaries` builds them; `KESTREL_BENCH_AGENT_ARGS`
//! adds agent arguments. `KESTREL_BENCH_PROCESSES`
//! sets the number of processes (default 5000).

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use kestrel_testkit::{bench, procstat::resident_bytes, stack::Agent};

const AGENT: &str = "memory-bench";
const TARGET_BYTES: u64 = 64 << 20;

fn main() -> ExitCode {
    let processes = bench::env_or("KESTREL_BENCH_PROCESSES", 5000) as usize;
    bench::main("agent_memory", || run(processes))
}

/// Live `/bin/sleep` processes, killed when dropped.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn start(n: usize, marker: &str) -> anyhow::Result<Sleepers> {
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let argv0 = format!(
                "/opt/{marker}/bin/worker-{i} --config /etc/{marker}/worker-{i}.toml --log-level info --listen 127.0.0.1:{}",
                10_000 + i
            );
            let child = Command::new("/bin/sleep")
                .arg0(argv0)
                .arg("100000")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            children.push(child);
        }
        Ok(Sleepers(children))
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Exec events of `marker` in the agent's JSON lines so far.
fn execs_seen(agent: &Agent, marker: &str) -> usize {
    std::fs::read_to_string(&agent.events)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(marker) && l.contains("\"exec\""))
        .count()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn run(processes: usize) -> anyhow::Result<()> {
    let bench::ReleaseStack {
        dir: _dir,
        collector: _collector,
        mut agent,
    } = bench::release_stack("agent_memory", AGENT, &[])?;
    let settle = Duration::from_secs(3);
    let mut phases: Vec<(&str, (u64, u64))> = Vec::new();
    std::thread::sleep(settle);
    phases.push(("idle", resident_bytes(agent.pid())));

    let marker = format!("kestrel-mem-bench-{}", std::process::id());
    let started = Instant::now();
    let sleepers = Sleepers::start(processes, &marker)?;
    println!(
        "agent_memory: {processes} processes started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while execs_seen(&agent, &marker) < processes {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent reported {} of {processes} execs",
            execs_seen(&agent, &marker)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(settle);
    phases.push(("started live", resident_bytes(agent.pid())));

    agent.stop(Duration::from_secs(20));
    agent.start();
    std::thread::sleep(settle);
    phases.push(("restarted with them", resident_bytes(agent.pid())));

    drop(sleepers);
    std::thread::sleep(settle);
    phases.push(("after they exited", resident_bytes(agent.pid())));
    agent.stop(Duration::from_secs(20));

    for (name, (rss, peak)) in &phases {
        println!(
            "agent_memory: {name:<20} RSS {:>6.1} MiB, peak {:>6.1} MiB",
            mib(*rss),
            mib(*peak)
        );
    }
    let peak = phases.iter().map(|(_, (_, p))| *p).max().unwrap_or(0);
    println!(
        "agent_memory: highest peak with {processes} live processes {:.1} MiB = {:.2} x the 64 MiB target: {}",
        mib(peak),
        peak as f64 / TARGET_BYTES as f64,
        bench::verdict(peak <= TARGET_BYTES)
    );
    Ok(())
}
