//! `cargo xtask run`: collector and agent on this host with a dev PKI, live alerts in the terminal.

use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{certs, setup, util};

/// Where the collector listens.
const LISTEN: &str = "127.0.0.1:50051";
/// What the agent connects to (the collector certificate has SAN `localhost`).
const COLLECTOR_URL: &str = "https://localhost:50051";
/// How long the collector may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it gets SIGKILL: more than the 5 s
/// the agent gives the collector to acknowledge what it still holds.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often children and the alerts file are polled.
const POLL: Duration = Duration::from_millis(200);

/// Builds the binaries, writes the dev PKI, starts collector and agent, and prints alerts until
/// Ctrl-C (exit 0) or until a child exits on its own (non-zero exit).
pub fn run() -> Result<ExitCode> {
    setup::setup()?;
    let root = util::workspace_root();
    util::run(
        "run",
        util::cargo().args(["build", "--workspace", "--bins"]),
    )?;

    // Relative to the workspace root, which is the children's working directory.
    let pki = Path::new(".kestrel/dev/pki");
    let data = Path::new(".kestrel/dev/data");
    let alerts = Path::new(".kestrel/dev/alerts.jsonl");
    let name = agent_name();
    println!("run: dev PKI in {} for agent {name}", pki.display());
    let written = certs::generate(&root.join(pki), std::slice::from_ref(&name))?;
    if written.ca_reused {
        println!("run: reused the CA in {}", pki.display());
    }
    fs::create_dir_all(root.join(data)).with_context(|| format!("creating {}", data.display()))?;

    let addr: SocketAddr = LISTEN.parse()?;
    if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
        bail!("run: {LISTEN} is already in use; stop whatever listens there first");
    }
    if !util::is_root() {
        println!("run: note: not root; kestrel-agent needs root to load its eBPF programs");
    }

    // From here on Ctrl-C and SIGTERM stop the children instead of killing xtask; a second
    // one exits at once (the children then get SIGTERM from the kernel, see `Named::spawn`).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }

    let mut follower = AlertFollower::new(root.join(alerts));
    let mut collector = Command::new(root.join("target/debug/kestrel-collector"));
    collector
        .current_dir(&root)
        .arg("serve")
        .args(["--listen", LISTEN])
        .arg("--cert")
        .arg(pki.join("collector.pem"))
        .arg("--key")
        .arg(pki.join("collector-key.pem"))
        .arg("--client-ca")
        .arg(pki.join("ca.pem"))
        .args(["--rules", "collector/rules"])
        .arg("--data")
        .arg(data)
        .arg("--alerts-jsonl")
        .arg(alerts);
    let mut children = vec![Named::spawn("collector", collector)?];

    match wait_for_port(&addr, &mut children[0], &stop)? {
        Startup::Ready => println!("run: collector accepts connections on {LISTEN}"),
        Startup::Stopped => {
            println!("\nrun: stopping");
            stop_all(&mut children);
            return Ok(ExitCode::SUCCESS);
        }
        Startup::Exited(status) => {
            println!("run: collector exited during startup ({status})");
            return Ok(exit_code(status));
        }
    }

    let mut agent = Command::new(root.join("target/debug/kestrel-agent"));
    agent
        .current_dir(&root)
        .args(["--collector", COLLECTOR_URL])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join(format!("{name}.pem")))
        .arg("--key")
        .arg(pki.join(format!("{name}-key.pem")));
    match Named::spawn("agent", agent) {
        Ok(child) => children.push(child),
        Err(err) => {
            stop_all(&mut children);
            return Err(err);
        }
    }
    println!(
        "run: following {} (Ctrl-C stops collector and agent)",
        alerts.display()
    );

    loop {
        follower.poll();
        if stop.load(Ordering::Relaxed) {
            println!("\nrun: stopping");
            stop_all(&mut children);
            follower.poll();
            return Ok(ExitCode::SUCCESS);
        }
        for index in 0..children.len() {
            if let Some(status) = children[index].child.try_wait()? {
                let who = children[index].name;
                println!("run: {who} exited on its own ({status}); stopping the rest");
                children.remove(index);
                stop_all(&mut children);
                follower.poll();
                return Ok(if status.success() {
                    ExitCode::FAILURE
                } else {
                    exit_code(status)
                });
            }
        }
        thread::sleep(POLL);
    }
}

/// The agent name for this host: its hostname reduced to `[A-Za-z0-9._-]`, or `dev`.
fn agent_name() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sanitized = sanitize_name(&host);
    if certs::validate_agent_name(&sanitized).is_ok() {
        sanitized
    } else {
        "dev".to_string()
    }
}

fn sanitize_name(host: &str) -> String {
    let replaced: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// A child process with a name for messages.
struct Named {
    name: &'static str,
    child: Child,
}

impl Named {
    fn spawn(name: &'static str, mut cmd: Command) -> Result<Self> {
        println!("run: starting {name}: $ {}", util::display(&cmd));
        // Own process group: the terminal's Ctrl-C reaches only xtask, which then stops the
        // children in order. If xtask dies anyway, the kernel sends them SIGTERM.
        cmd.process_group(0);
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "run: could not start {name} ({}); did `cargo build --workspace --bins` succeed?",
                cmd.get_program().to_string_lossy()
            )
        })?;
        Ok(Named { name, child })
    }
}

enum Startup {
    Ready,
    Stopped,
    Exited(ExitStatus),
}

fn wait_for_port(addr: &SocketAddr, collector: &mut Named, stop: &AtomicBool) -> Result<Startup> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Startup::Stopped);
        }
        if let Some(status) = collector.child.try_wait()? {
            return Ok(Startup::Exited(status));
        }
        if TcpStream::connect_timeout(addr, POLL).is_ok() {
            return Ok(Startup::Ready);
        }
        if Instant::now() > deadline {
            stop_all(std::slice::from_mut(collector));
            bail!(
                "run: collector did not accept connections on {addr} within {}s",
                STARTUP_TIMEOUT.as_secs()
            );
        }
        thread::sleep(POLL);
    }
}

/// Stops the children one at a time, the last started first: the agent goes while the
/// collector still runs, so it can hand over what it holds and have it acknowledged. Each gets
/// SIGTERM, then SIGKILL if it is still running after [`STOP_TIMEOUT`].
fn stop_all(children: &mut [Named]) {
    for named in children.iter_mut().rev() {
        if let Ok(Some(_)) = named.child.try_wait() {
            continue;
        }
        println!("run: sending SIGTERM to {}", named.name);
        let pid = Pid::from_raw(named.child.id() as i32);
        if let Err(err) = kill(pid, Signal::SIGTERM) {
            println!("run: SIGTERM to {} failed: {err}", named.name);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match named.child.try_wait() {
                Ok(Some(status)) => {
                    println!("run: {} stopped ({status})", named.name);
                    break;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Ok(None) | Err(_) => {
                    println!(
                        "run: {} still running after {}s; sending SIGKILL",
                        named.name,
                        STOP_TIMEOUT.as_secs()
                    );
                    let _ = named.child.kill();
                    match named.child.wait() {
                        Ok(status) => println!("run: {} killed ({status})", named.name),
                        Err(err) => println!("run: waiting for {} failed: {err}", named.name),
                    }
                    break;
                }
            }
        }
    }
}

/// The exit code that reports a child's status: its code, or 128 + signal.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    match u8::try_from(code) {
        Ok(0) | Err(_) => ExitCode::FAILURE,
        Ok(code) => ExitCode::from(code),
    }
}

/// Follows a JSON-lines file from its current end, like `tail -F`.
struct AlertFollower {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl AlertFollower {
    /// Starts at the current end of `path`, so only alerts written from now on are shown.
    fn new(path: PathBuf) -> Self {
        let offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AlertFollower {
            path,
            offset,
            partial: Vec::new(),
        }
    }

    /// Prints every complete line added since the last call.
    fn poll(&mut self) {
        for line in self.read_new_lines() {
            println!("{}", format_alert(&line));
        }
    }

    fn read_new_lines(&mut self) -> Vec<String> {
        let Ok(len) = fs::metadata(&self.path).map(|m| m.len()) else {
            return Vec::new();
        };
        if len < self.offset {
            // Truncated or replaced: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let read = File::open(&self.path).and_then(|mut file| {
            file.seek(SeekFrom::Start(self.offset))?;
            file.read_to_end(&mut buf)
        });
        let Ok(n) = read else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        split_lines(&mut self.partial)
    }
}

/// Takes the complete lines out of `buf`, leaving an unfinished last line in it.
fn split_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let Some(last_newline) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last_newline + 1);
    let complete = std::mem::replace(buf, rest);
    complete
        .split(|&b| b == b'\n')
        .map(|line| String::from_utf8_lossy(line).trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// One alert as a readable line; missing fields are left out, unparsable lines shown raw.
fn format_alert(line: &str) -> String {
    let Ok(alert) = serde_json::from_str::<Value>(line) else {
        return format!("ALERT (not JSON) {line}");
    };
    let level = field(&alert, "rule.level").unwrap_or_else(|| "?".to_string());
    let title = field(&alert, "rule.title").unwrap_or_else(|| "(untitled rule)".to_string());
    let mut out = format!("ALERT [{level}] {title}");
    for (label, path) in [
        ("host", "host"),
        ("exe", "process.exe"),
        ("user", "process.user"),
        ("cmd", "process.command_line"),
    ] {
        if let Some(value) = field(&alert, path) {
            out.push_str(&format!("  {label}={value}"));
        }
    }
    out
}

/// The value at a dotted `path` (nested objects, or a literal dotted key) as text.
fn field(value: &Value, path: &str) -> Option<String> {
    let found = value
        .get(path)
        .or_else(|| path.split('.').try_fold(value, |cur, key| cur.get(key)))?;
    text(found)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(text).collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        }
        // An object such as a user {name, uid}: prefer its name.
        Value::Object(map) => map
            .get("name")
            .and_then(text)
            .or_else(|| Some(value.to_string())),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_alert_fields_make_one_readable_line() {
        let line = r#"{"rule":{"id":"r1","title":"Shell spawned","level":"high"},
            "host":"spiffe://kestrel.local/node/n1",
            "process":{"exe":"/bin/sh","command_line":"sh -c id","user":{"name":"root","uid":0}}}"#
            .replace('\n', "");
        assert_eq!(
            format_alert(&line),
            "ALERT [high] Shell spawned  host=spiffe://kestrel.local/node/n1  exe=/bin/sh  \
             user=root  cmd=sh -c id"
        );
    }

    #[test]
    fn missing_fields_are_left_out() {
        assert_eq!(
            format_alert(r#"{"rule":{"title":"T"},"process":{"command_line":["ls","-l"]}}"#),
            "ALERT [?] T  cmd=ls -l"
        );
        assert_eq!(format_alert("{}"), "ALERT [?] (untitled rule)");
        assert_eq!(format_alert("oops"), "ALERT (not JSON) oops");
    }

    #[test]
    fn flat_dotted_keys_are_understood() {
        assert_eq!(
            format_alert(r#"{"rule.title":"T","rule.level":"low","host":"h"}"#),
            "ALERT [low] T  host=h"
        );
    }

    #[test]
    fn follower_prints_only_complete_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        fs::write(&path, "{\"old\":1}\n").unwrap();
        let mut follower = AlertFollower::new(path.clone());
        assert!(follower.read_new_lines().is_empty());

        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        use std::io::Write as _;
        file.write_all(b"{\"a\":1}\n{\"b\":").unwrap();
        assert_eq!(follower.read_new_lines(), vec!["{\"a\":1}".to_string()]);
        file.write_all(b"2}\n").unwrap();
        assert_eq!(follower.read_new_lines(), vec!["{\"b\":2}".to_string()]);

        fs::write(&path, "{\"c\":3}\n").unwrap();
        assert_eq!(follower.read_new_lines(), vec!["{\"c\":3}".to_string()]);
    }

    #[test]
    fn hostnames_become_valid_agent_names() {
        assert_eq!(sanitize_name("web-1.example.com"), "web-1.example.com");
        assert_eq!(sanitize_name("my host!"), "my-host");
        assert_eq!(sanitize_name("--x--"), "x");
        assert_eq!(sanitize_name(""), "");
    }
}
