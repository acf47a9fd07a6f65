//! The frame of Kestrel's end-to-end benchmarks (`harness = false` bench targets run by
//! `cargo xtask bench`): each runs the real release binaries and prints its figures with a
//! verdict against its target.

use std::process::ExitCode;

use crate::stack::{certs_with, release_binaries, Agent, Collector};

/// Runs benchmark `name`: skipped when `cargo bench` was given a filter that does not name it,
/// skipped with a message when not root (the agent loads eBPF programs). An error exits
/// non-zero; a missed target is printed as such by `run` (see [`verdict`]) and does not stop
/// the benchmarks after it.
pub fn main(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    // `cargo bench` passes `--bench`; a filter that does not name us means another bench runs.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !name.contains(a.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("{name}: SKIPPED: needs root (the real eBPF agent loads kernel programs)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A positive number from environment variable `var`, or `default`.
pub fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// "met" or "NOT met".
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// Extra agent arguments from `KESTREL_BENCH_AGENT_ARGS` (split on white space), to measure
/// other settings (`--ring-buffer-bytes 8388608`, say) without rebuilding.
pub fn agent_args() -> Vec<String> {
    std::env::var("KESTREL_BENCH_AGENT_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A running release collector and agent `name` connected to it, in a temporary directory.
pub struct ReleaseStack {
    /// Holds the PKI, the store and the agent's spool and logs; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The collector, started.
    pub collector: Collector,
    /// The agent, started and connected, with [`agent_args`] added.
    pub agent: Agent,
}

/// Builds the release binaries (see [`release_binaries`]), writes a PKI, starts a collector
/// (with `collector_args` added to `serve`) and agent `name`, and waits until the agent is
/// connected.
pub fn release_stack(
    bench: &str,
    name: &str,
    collector_args: &[&str],
) -> anyhow::Result<ReleaseStack> {
    println!("{bench}: building release binaries");
    let bins = Some(release_binaries("bench-binaries")?);
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    certs_with(&bins, &pki, name);
    let mut collector = Collector::new(dir.path(), &pki, collector_args);
    collector.bin_dir = bins.clone();
    let mut agent = Agent::new(dir.path(), &pki, name, collector.port, &[]);
    agent.bin_dir = bins;
    agent.extra = agent_args();
    collector.start();
    agent.start();
    agent.expect_connected();
    Ok(ReleaseStack {
        dir,
        collector,
        agent,
    })
}
