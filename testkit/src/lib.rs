//! What Kestrel's tests share (a dev-only crate): deciding whether a test that needs eBPF may
//! run, locating the built binaries, running children that are killed when the test ends,
//! waiting for a JSON line that matches (with a failure message that shows what did arrive), a
//! throw-away PKI ([`pki`]), a stand-in cluster's token signer ([`cluster`]), an HTTP receiver
//! for sinks ([`receiver`]), a gRPC agent client ([`grpc`]), a stand-in Kubernetes API server
//! ([`kube_api`]), the kernel tests' loader and record stream ([`kernel`]), the release stack of
//! collector and agent ([`stack`]) and benchmark support ([`bench`], [`procstat`], [`pty`]).

use std::{
    fmt::Display,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod bench;
pub mod cluster;
pub mod grpc;
pub mod kernel;
pub mod kube_api;
pub mod net;
pub mod pki;
pub mod podman;
pub mod procstat;
pub mod pty;
pub mod receiver;
pub mod stack;

/// True when the test runs in CI (`CI=true`), where a missing capability must fail the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Decides whether a test needing eBPF (root) can run. In CI a missing capability fails the
/// test; elsewhere the test is skipped with a message saying why.
pub fn require_root_for_ebpf() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail("not root: eBPF programs cannot be loaded")
}

/// Fails the test in CI, otherwise prints why it is skipped and returns false.
pub fn skip_or_fail(reason: impl Display) -> bool {
    if in_ci() {
        panic!("CI=true and this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Path of a workspace binary built by `cargo build --workspace --bins` (as `cargo xtask test`
/// does before running tests), next to this test executable's `deps` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (cargo xtask test does)",
        path.display()
    );
    path
}

/// The Cargo profile (`debug` or `release`) of this test build, once its `kestrel-agent` and
/// `kestrel-collector` are known to be built: what `cargo xtask images|deb --no-build
/// --profile` take to package exactly the binaries under test.
pub fn built_profile() -> String {
    binary("kestrel-collector");
    binary("kestrel-agent")
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .expect("target/<profile>/kestrel-agent")
        .to_owned()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

/// A child process that is killed (SIGTERM, then SIGKILL) when dropped, so a failing test does
/// not leave an agent or collector running.
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Starts `command`; `name` appears in messages.
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
        }
    }

    /// Process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test if the child has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early: {status}", self.name);
        }
    }

    /// Kills the child with SIGKILL (no chance to clean up, like `kill -9`) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (for example SIGSTOP or SIGCONT) to the child.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the child");
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate(Duration::from_secs(3));
        }
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every JSON object in a JSON-lines file so far (a partial last line is ignored).
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits until a line of the JSON-lines file at `path` satisfies `matches`. On timeout the
/// panic message lists what did arrive (the last lines), so a failure explains itself.
pub fn expect_json_line(
    path: &Path,
    timeout: Duration,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let found = poll(timeout, || {
        read_json_lines(path).into_iter().find(|v| matches(v))
    });
    found.unwrap_or_else(|| {
        let lines = read_json_lines(path);
        let tail: Vec<String> = lines.iter().rev().take(15).map(Value::to_string).collect();
        panic!(
            "no line with {what} in {} within {timeout:?}; {} lines arrived, the last ones:\n{}",
            path.display(),
            lines.len(),
            tail.join("\n")
        )
    })
}
