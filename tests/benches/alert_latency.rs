//! Alert latency: from the kernel event (the exec's timestamp, taken in the kernel) to the
//! signed webhook arriving at an HTTP receiver, through the real agent, the real collector and
//! its outbox. Target: p99 at most 1 s on this machine.
//!
//! Needs root (the agent loads its eBPF programs); without root it says so and skips. Release
//! binaries and the running stack as `bench::release_stack` makes them. Iterations:
//! `KESTREL_BENCH_ITERATIONS` (default 200).

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kestrel_testkit::{bench, receiver::Receiver};

const TARGET: Duration = Duration::from_secs(1);
const AGENT: &str = "bench-agent";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn main() -> ExitCode {
    let iterations = bench::env_or("KESTREL_BENCH_ITERATIONS", 200) as usize;
    bench::main("alert_latency", || run(iterations))
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn run(iterations: usize) -> anyhow::Result<()> {
    let receiver = Receiver::spawn();
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\ndedup_window = \"0s\"\nrate_limit_per_rule = 0\n\n[delivery]\n\
             initial_backoff = \"100ms\"\n\n[[sinks]]\nkind = \"webhook\"\nurl = \"{}/hook\"\n\
             secret = \"{SECRET}\"\n",
            receiver.url
        ),
    )?;
    let config = config.display().to_string();
    let _stack = bench::release_stack("alert_latency", AGENT, &["--config", &config])?;

    let warmup = 5;
    let mut from_kernel = Vec::new();
    let mut from_spawn = Vec::new();
    for i in 0..warmup + iterations {
        let marker = format!("/nonexistent/kestrel-bench-{}-{i}", std::process::id());
        let spawned = SystemTime::now();
        let status = Command::new("/bin/cat")
            .args(["/etc/shadow", &marker])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(!status.success(), "cat of a missing file must fail");
        let request = receiver.expect(Duration::from_secs(10), &marker, |body| {
            body["data"]["process"]["command_line"]
                .as_str()
                .is_some_and(|c| c.ends_with(&marker))
        });
        let kernel_ns = request.json()["data"]["time_unix_ns"].as_u64().unwrap_or(0);
        let arrived = unix_ns(request.arrived);
        if i >= warmup {
            from_kernel.push(Duration::from_nanos(arrived.saturating_sub(kernel_ns)));
            from_spawn.push(Duration::from_nanos(
                arrived.saturating_sub(unix_ns(spawned)),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let kernel = Summary::of(&mut from_kernel);
    let spawn = Summary::of(&mut from_spawn);
    println!("\nalert_latency: {iterations} alerts, each waited for before the next exec");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p90", "p99", "max"
    );
    kernel.print("kernel event -> webhook receiver");
    spawn.print("spawn of cat -> webhook receiver");
    let ratio = kernel.p99.as_secs_f64() / TARGET.as_secs_f64();
    let pass = kernel.p99 <= TARGET;
    println!(
        "p99 kernel event -> webhook: {:.1} ms = {ratio:.3} x the {} ms target: {}",
        kernel.p99.as_secs_f64() * 1e3,
        TARGET.as_millis(),
        bench::verdict(pass)
    );
    Ok(())
}

struct Summary {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(samples: &mut [Duration]) -> Summary {
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index]
        };
        Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: *samples.last().unwrap(),
        }
    }

    fn print(&self, label: &str) {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{label:<34} {:>9} {:>9} {:>9} {:>9}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        );
    }
}
