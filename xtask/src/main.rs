//! `cargo xtask`: set-up, development PKI, local run, and the full check suite for Kestrel.

mod certs;
mod deb;
mod helm;
mod images;
mod run;
mod setup;
mod test;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Developer tasks for Kestrel.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks: llvm-22-dev, nightly rust-src, bpf-linker 0.13.0,
    /// tracefs and bpffs mounts, the container test packages, auditd (for the host_overhead
    /// benchmark), Helm 3 and kubernetes-validate (for the chart tests), debootstrap, cargo-deb
    /// and a Debian root with systemd (for the package and systemd-unit tests). Idempotent.
    Setup,
    /// Write a development PKI: CA (reused if present), collector and agent certificates.
    Certs {
        /// Directory for the PEM files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Agent names, comma-separated; each gets NAME.pem with SAN
        /// spiffe://kestrel.local/node/NAME.
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
    },
    /// Run collector and agent on this host with a dev PKI and print alerts live.
    Run,
    /// Regenerate deploy/kubernetes/*.yaml from the Helm chart (`helm template`, default values).
    HelmManifests {
        /// Compare with the files instead of writing them; fail when they differ.
        #[arg(long)]
        check: bool,
    },
    /// Build the kestrel-agent and kestrel-collector images (Podman, FROM scratch) tagged with
    /// the workspace version.
    Images {
        /// Cargo profile of the binaries put in the images.
        #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
        profile: String,
        /// Use the binaries already built instead of running `cargo build` first.
        #[arg(long)]
        no_build: bool,
    },
    /// Build the Debian packages kestrel-agent and kestrel-collector (cargo-deb) into
    /// target/debian/: binary, systemd unit, default configuration, and the collector's rules.
    Deb {
        /// Cargo profile of the binaries put in the packages.
        #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
        profile: String,
        /// Use the binaries already built instead of running `cargo build` first.
        #[arg(long)]
        no_build: bool,
    },
    /// Setup, rustfmt, clippy, build the binaries, then `cargo test --workspace`.
    Test {
        /// Passed on to `cargo test --workspace` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, then `cargo bench --workspace`.
    Bench {
        /// Passed on to `cargo bench --workspace` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> Result<ExitCode> {
    match task {
        Task::Setup => setup::setup()?,
        Task::Certs { out, agents } => {
            let pki = certs::generate(&out, &agents)?;
            if pki.ca_reused {
                println!("certs: reused the CA in {}", out.display());
            }
            for file in &pki.written {
                println!("certs: wrote {}", file.display());
            }
        }
        Task::Run => return run::run(),
        Task::HelmManifests { check } => helm::manifests(check)?,
        Task::Images { profile, no_build } => images::images(&profile, !no_build)?,
        Task::Deb { profile, no_build } => {
            deb::packages(&profile, !no_build)?;
        }
        Task::Test { args } => test::test(&args)?,
        Task::Bench { args } => test::bench(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Task {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn test_passes_everything_after_the_separator_to_cargo_test() {
        let Task::Test { args } = parse(&["test", "--", "-p", "x", "--", "--nocapture"]) else {
            panic!("not the test task");
        };
        assert_eq!(args, ["-p", "x", "--", "--nocapture"]);
        let Task::Test { args } = parse(&["test"]) else {
            panic!("not the test task");
        };
        assert!(args.is_empty());
    }

    #[test]
    fn certs_takes_comma_separated_agents() {
        let Task::Certs { out, agents } = parse(&["certs", "--out", "d", "--agents", "a,b.c"])
        else {
            panic!("not the certs task");
        };
        assert_eq!(out, PathBuf::from("d"));
        assert_eq!(agents, ["a", "b.c"]);
    }
}
