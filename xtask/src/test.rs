//! `cargo xtask test` and `cargo xtask bench`: the whole check suite, as CI runs it.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{setup, util};

/// One step of the suite.
enum Step {
    /// `cargo xtask setup`.
    Setup,
    /// A cargo invocation with these arguments.
    Cargo(Vec<String>),
}

impl Step {
    fn cargo(args: &[&str]) -> Self {
        Step::Cargo(args.iter().map(|s| s.to_string()).collect())
    }

    fn title(&self) -> String {
        match self {
            Step::Setup => "setup".to_string(),
            Step::Cargo(args) => util::display(util::cargo().args(args)),
        }
    }
}

/// Runs setup, rustfmt, clippy, the binaries' build and the test suite, stopping at the first
/// failure. `extra` is passed on to `cargo test --workspace`.
pub fn test(extra: &[String]) -> Result<()> {
    let mut test = vec!["test".to_string(), "--workspace".to_string()];
    test.extend(extra.iter().cloned());
    let steps = [
        Step::Setup,
        Step::cargo(&["fmt", "--all", "--", "--check"]),
        // The eBPF crate is its own workspace (nightly, bpf target): check its format too.
        Step::cargo(&[
            "+nightly",
            "fmt",
            "--manifest-path",
            "agent-ebpf/programs/Cargo.toml",
            "--",
            "--check",
        ]),
        Step::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        // End-to-end tests spawn the binaries from target/debug.
        Step::cargo(&["build", "--workspace", "--bins"]),
        Step::Cargo(test),
    ];
    run_steps("test", &steps)?;
    println!("test: all steps passed");
    Ok(())
}

/// Runs setup, then `cargo bench --workspace` with `extra` passed on.
pub fn bench(extra: &[String]) -> Result<()> {
    let mut bench = vec!["bench".to_string(), "--workspace".to_string()];
    bench.extend(extra.iter().cloned());
    run_steps("bench", &[Step::Setup, Step::Cargo(bench)])
}

fn run_steps(task: &str, steps: &[Step]) -> Result<()> {
    let total = steps.len();
    for (index, step) in steps.iter().enumerate() {
        let title = step.title();
        println!("\n==> {task} [{}/{total}]: {title}", index + 1);
        let result = match step {
            Step::Setup => setup::setup(),
            Step::Cargo(args) => cargo_step(task, args),
        };
        if let Err(err) = result {
            bail!("{task}: step {}/{total} failed: {err:#}", index + 1);
        }
    }
    Ok(())
}

fn cargo_step(task: &str, args: &[String]) -> Result<()> {
    let mut cmd: Command = util::cargo();
    cmd.args(args);
    util::run(task, &mut cmd)
}
