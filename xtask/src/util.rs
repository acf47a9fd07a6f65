//! Helpers shared by the tasks: locating the workspace and tools, running commands with echo.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use anyhow::{bail, Context as _, Result};

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `$CARGO_HOME/bin`, or `~/.cargo/bin` when `CARGO_HOME` is unset.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// Whether an executable called `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    env::var_os("PATH").is_some_and(|p| env::split_paths(&p).any(|dir| dir.join(name).is_file()))
}

/// Every executable called `name` on `PATH`, then in the cargo bin directory, first match first.
pub fn find_tools(name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(cargo_bin_dir());
    let mut found = Vec::new();
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() && !found.contains(&candidate) {
            found.push(candidate);
        }
    }
    found
}

/// The first executable called `name` on `PATH` or in the cargo bin directory: its bare name
/// when it is on `PATH` (shorter to echo), else its full path.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if on_path(name) {
        return Some(PathBuf::from(name));
    }
    find_tools(name).into_iter().next()
}

/// A `cargo` command run from the workspace root.
///
/// Prefers `cargo` on `PATH` or in the cargo bin directory (the rustup proxy, so that
/// `cargo fmt` and `cargo clippy` resolve), then the cargo that started xtask (`$CARGO`).
pub fn cargo() -> Command {
    let program = find_tool("cargo")
        .or_else(|| env::var_os("CARGO").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line of `cmd` as a shell-like string, for echoing.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Echoes `cmd` prefixed with `task`, runs it with inherited stdio and returns its status.
pub fn status(task: &str, cmd: &mut Command) -> Result<ExitStatus> {
    let line = display(cmd);
    println!("{task}: $ {line}");
    cmd.status()
        .with_context(|| format!("could not start `{line}`"))
}

/// Like [`status`], but fails unless the command exits successfully.
pub fn run(task: &str, cmd: &mut Command) -> Result<()> {
    let st = status(task, cmd)?;
    if !st.success() {
        bail!("`{}` failed ({st})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly, capturing its output (used for probes such as `--version`).
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Builds `kestrel-agent` and `kestrel-collector` with Cargo profile `profile` (`release` or
/// `debug`), for the task named `task` (images, packages).
pub fn build_binaries(task: &str, profile: &str) -> Result<()> {
    let mut cargo = cargo();
    cargo.args([
        "build",
        "-p",
        "kestrel-agent",
        "-p",
        "kestrel-collector",
        "--bins",
    ]);
    if profile == "release" {
        cargo.arg("--release");
    }
    run(task, &mut cargo)
}
