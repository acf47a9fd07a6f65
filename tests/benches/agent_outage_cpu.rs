//! Agent CPU while the collector is down versus while it is connected, same run, same workload.
//! Target: no higher during an outage (the spool absorbs events; nothing is read back or sent,
//! and reconnection attempts back off).
//!
//! The real release agent and collector; a steady workload of execs from this process; phases
//! alternate connected / outage (collector killed) three times each. Reported per phase: agent
//! CPU per second and per event (the host's own activity varies, so per event is the fairer
//! comparison), then the outage / connected ratios. Needs root (the agent loads eBPF programs);
//! without root it says so and skips. `KESTREL_BENCH_PHASE_SECS` sets the phase length
//! (default 8).

use std::{
    path::Path,
    process::{Command, ExitCode},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use kestrel_testkit::{bench, procstat::cpu_time, stack::Agent};

const AGENT: &str = "cpu-bench";
/// Execs per second of the workload.
const RATE: u32 = 100;

fn main() -> ExitCode {
    let phase = Duration::from_secs(bench::env_or("KESTREL_BENCH_PHASE_SECS", 8));
    bench::main("agent_outage_cpu", || run(phase))
}

/// Events the agent produced so far (lines of its JSON-lines output).
fn produced(events: &Path) -> u64 {
    std::fs::read(events)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0)
}

struct Phase {
    name: &'static str,
    cpu: Duration,
    events: u64,
    wall: Duration,
}

fn measure(name: &'static str, agent: &Agent, length: Duration) -> Phase {
    let (cpu0, events0, started) = (
        cpu_time(agent.pid()),
        produced(&agent.events),
        Instant::now(),
    );
    std::thread::sleep(length);
    Phase {
        name,
        cpu: cpu_time(agent.pid()) - cpu0,
        events: produced(&agent.events) - events0,
        wall: started.elapsed(),
    }
}

fn run(phase: Duration) -> anyhow::Result<()> {
    let bench::ReleaseStack {
        dir: _dir,
        mut collector,
        agent,
    } = bench::release_stack("agent_outage_cpu", AGENT, &[])?;

    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let interval = Duration::from_secs(1) / RATE;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("/bin/true").arg("cpu-bench").status();
                next += interval;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    let mut phases = Vec::new();
    for round in 0..3 {
        phases.push(measure("connected", &agent, phase));
        collector.kill();
        std::thread::sleep(Duration::from_secs(1));
        phases.push(measure("outage", &agent, phase));
        collector.start();
        // Let the agent reconnect and send its backlog before measuring "connected" again.
        let reconnected = agent.log();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&reconnected)?
            .matches("connected to collector")
            .count()
            < round + 2
        {
            anyhow::ensure!(Instant::now() < deadline, "agent did not reconnect");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    workload.join().unwrap();

    let mut totals = [(Duration::ZERO, 0u64, Duration::ZERO); 2];
    for p in &phases {
        let per_s = p.cpu.as_secs_f64() * 1e3 / p.wall.as_secs_f64();
        let per_event = p.cpu.as_secs_f64() * 1e6 / p.events.max(1) as f64;
        println!(
            "agent_outage_cpu: {:<9} {:>6} events, CPU {:>6.1} ms/s, {:>6.1} us/event",
            p.name, p.events, per_s, per_event
        );
        let t = &mut totals[usize::from(p.name == "outage")];
        t.0 += p.cpu;
        t.1 += p.events;
        t.2 += p.wall;
    }
    let per_s = |t: (Duration, u64, Duration)| t.0.as_secs_f64() / t.2.as_secs_f64();
    let per_event = |t: (Duration, u64, Duration)| t.0.as_secs_f64() / t.1.max(1) as f64;
    let (connected, outage) = (totals[0], totals[1]);
    println!(
        "agent_outage_cpu: connected {:.1} ms/s ({:.1} us/event), outage {:.1} ms/s ({:.1} us/event)",
        per_s(connected) * 1e3,
        per_event(connected) * 1e6,
        per_s(outage) * 1e3,
        per_event(outage) * 1e6
    );
    let ratio = per_event(outage) / per_event(connected);
    println!(
        "agent_outage_cpu: outage / connected CPU: {:.2} per second, {ratio:.2} per event; target <= 1: {}",
        per_s(outage) / per_s(connected),
        bench::verdict(ratio <= 1.0)
    );
    Ok(())
}
