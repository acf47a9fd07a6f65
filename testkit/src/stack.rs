//! A collector and agents as real child processes, for end-to-end fault tests: a development
//! PKI from `xtask certs`, a collector that can be killed and restarted on the same port and
//! data directory, agents with a spool that survives them, a workload of marked execs, and
//! `events search` to count exactly what was stored.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::{binary, poll, workspace_root, ChildGuard};

/// Trust domain of the development PKI.
pub const TRUST_DOMAIN: &str = "kestrel.local";

/// The identity `xtask certs` gives agent `name`.
pub fn identity(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/node/{name}")
}

/// Builds release binaries of the agent, the collector and xtask into `target/<subdir>` (a
/// target directory of their own, so a benchmark never waits on the lock of the `cargo bench`
/// that runs it) and returns the directory holding them. `KESTREL_BENCH_BIN_DIR` names a
/// directory with prebuilt ones instead.
pub fn release_binaries(subdir: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KESTREL_BENCH_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = workspace_root();
    let target = root.join("target").join(subdir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--bins"])
        .args([
            "-p",
            "kestrel-agent",
            "-p",
            "kestrel-collector",
            "-p",
            "xtask",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .status()?;
    anyhow::ensure!(status.success(), "cargo build failed: {status}");
    Ok(target.join("release"))
}

/// Where the binaries come from: `None` for those of the test build (`crate::binary`).
fn bin(dir: &Option<PathBuf>, name: &str) -> PathBuf {
    match dir {
        Some(dir) => dir.join(name),
        None => binary(name),
    }
}

/// Writes a development PKI for `agents` (comma-separated) into `out`.
pub fn certs(out: &Path, agents: &str) {
    certs_with(&None, out, agents)
}

/// [`certs`] with the `xtask` in `bin_dir`.
pub fn certs_with(bin_dir: &Option<PathBuf>, out: &Path, agents: &str) {
    let status = Command::new(bin(bin_dir, "xtask"))
        .args(["certs", "--out"])
        .arg(out)
        .args(["--agents", agents])
        .stdout(Stdio::null())
        .status()
        .expect("run xtask certs");
    assert!(status.success(), "xtask certs failed: {status}");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The text of a file (empty when missing).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` contains `needle`; the panic shows the file.
pub fn expect_in_file(path: &Path, needle: &str, timeout: Duration) {
    if poll(timeout, || read(path).contains(needle).then_some(())).is_none() {
        panic!(
            "{} does not mention {needle:?} within {timeout:?}:\n{}",
            path.display(),
            tail(&read(path), 40)
        );
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `kestrel-collector serve` listening on `listen`, with the collector certificate of the PKI
/// in `pki`, the rules in `rules` and the store in `data`; add arguments and run it.
pub fn serve_command(
    bin_dir: &Option<PathBuf>,
    listen: &str,
    pki: &Path,
    rules: &Path,
    data: &Path,
) -> Command {
    let mut command = Command::new(bin(bin_dir, "kestrel-collector"));
    command
        .args(["serve", "--listen", listen])
        .arg("--cert")
        .arg(pki.join("collector.pem"))
        .arg("--key")
        .arg(pki.join("collector-key.pem"))
        .arg("--client-ca")
        .arg(pki.join("ca.pem"))
        .arg("--rules")
        .arg(rules)
        .arg("--data")
        .arg(data);
    command
}

/// A collector process on a fixed port and data directory; it can be killed and started again.
pub struct Collector {
    /// Working directory (logs, alerts).
    pub dir: PathBuf,
    /// The PKI directory.
    pub pki: PathBuf,
    /// The listening port.
    pub port: u16,
    /// The data directory (`kestrel.db`).
    pub data: PathBuf,
    /// Alert lines.
    pub alerts: PathBuf,
    /// Extra `serve` arguments.
    pub extra: Vec<String>,
    /// Directory of the binaries (`None`: the test build's).
    pub bin_dir: Option<PathBuf>,
    /// Loopback address it listens on (default 127.0.0.1).
    pub ip: String,
    starts: usize,
    child: Option<ChildGuard>,
}

impl Collector {
    /// A collector (not started) using `dir` and the PKI in `pki`.
    pub fn new(dir: &Path, pki: &Path, extra: &[&str]) -> Collector {
        Collector {
            dir: dir.to_owned(),
            pki: pki.to_owned(),
            port: free_port(),
            data: dir.join("data"),
            alerts: dir.join("alerts.jsonl"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            bin_dir: None,
            ip: "127.0.0.1".into(),
            starts: 0,
            child: None,
        }
    }

    /// The log of the latest start.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("collector-{}.log", self.starts))
    }

    /// Starts it and waits until it listens.
    pub fn start(&mut self) -> &mut Collector {
        assert!(self.child.is_none(), "collector already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        let child = ChildGuard::spawn(
            "collector",
            serve_command(
                &self.bin_dir,
                &format!("{}:{}", self.ip, self.port),
                &self.pki,
                &workspace_root().join("collector/rules"),
                &self.data,
            )
            .arg("--alerts-jsonl")
            .arg(&self.alerts)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(log)),
        );
        self.child = Some(child);
        let address: SocketAddr = format!("{}:{}", self.ip, self.port).parse().unwrap();
        let listening = poll(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()
        });
        assert!(
            listening.is_some(),
            "collector not listening; log:\n{}",
            tail(&read(&self.log()), 40)
        );
        self
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// The running process.
    pub fn process(&mut self) -> &mut ChildGuard {
        self.child.as_mut().expect("collector running")
    }

    /// Runs `kestrel-collector events search --json --limit 0` with `filters`.
    pub fn search(&self, filters: &[&str]) -> Vec<Value> {
        self.events_command("search", filters)
    }

    /// Runs `kestrel-collector events gaps --json`.
    pub fn gaps(&self) -> Vec<Value> {
        self.events_command("gaps", &[])
    }

    fn events_command(&self, command: &str, filters: &[&str]) -> Vec<Value> {
        if !self.data.join("kestrel.db").exists() {
            return Vec::new();
        }
        let mut cmd = Command::new(bin(&self.bin_dir, "kestrel-collector"));
        cmd.args(["events", command, "--json", "--data"])
            .arg(&self.data)
            .args(filters);
        if command == "search" {
            cmd.args(["--limit", "0"]);
        }
        let output = cmd.output().expect("run events search");
        assert!(
            output.status.success(),
            "events {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("events search prints JSON lines"))
            .collect()
    }
}

/// An agent process with a spool directory that outlives it.
pub struct Agent {
    /// The agent's name (its certificate).
    pub name: String,
    /// Working directory.
    pub dir: PathBuf,
    /// The spool directory.
    pub spool: PathBuf,
    /// Every event it produced, as JSON lines.
    pub events: PathBuf,
    /// Extra arguments.
    pub extra: Vec<String>,
    /// Directory of the binaries (`None`: the test build's).
    pub bin_dir: Option<PathBuf>,
    /// Host name in the collector URL (default `localhost`).
    pub collector_host: String,
    /// Certificate and key files (default: the agent's own from the PKI).
    pub cert: PathBuf,
    /// See `cert`.
    pub key: PathBuf,
    pki: PathBuf,
    port: u16,
    starts: usize,
    child: Option<ChildGuard>,
}

impl Agent {
    /// An agent (not started) named `name` (its certificate in `pki`) for the collector on `port`.
    pub fn new(dir: &Path, pki: &Path, name: &str, port: u16, extra: &[&str]) -> Agent {
        Agent {
            name: name.to_owned(),
            dir: dir.to_owned(),
            spool: dir.join(format!("{name}-spool")),
            events: dir.join(format!("{name}-events.jsonl")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            bin_dir: None,
            collector_host: "localhost".into(),
            cert: pki.join(format!("{name}.pem")),
            key: pki.join(format!("{name}-key.pem")),
            pki: pki.to_owned(),
            port,
            starts: 0,
            child: None,
        }
    }

    /// The log of the latest start.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.starts))
    }

    /// Every log of every start, concatenated.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| read(&self.dir.join(format!("{}-{i}.log", self.name))))
            .collect()
    }

    /// Starts it and waits until its programs are attached.
    pub fn start(&mut self) -> &mut Agent {
        assert!(self.child.is_none(), "agent already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        let mut child = ChildGuard::spawn(
            &self.name,
            Command::new(bin(&self.bin_dir, "kestrel-agent"))
                .args([
                    "--collector",
                    &format!("https://{}:{}", self.collector_host, self.port),
                ])
                .arg("--ca")
                .arg(self.pki.join("ca.pem"))
                .arg("--cert")
                .arg(&self.cert)
                .arg("--key")
                .arg(&self.key)
                .arg("--spool")
                .arg(&self.spool)
                .arg("--events-jsonl")
                .arg(&self.events)
                .args(["--heartbeat-interval", "1s"])
                .args(&self.extra)
                .env("RUST_LOG", "info")
                .stderr(Stdio::from(log)),
        );
        let running = poll(Duration::from_secs(120), || {
            read(&self.log()).contains("agent running").then_some(())
        });
        child.assert_running();
        assert!(
            running.is_some(),
            "{} did not start; log:\n{}",
            self.name,
            tail(&read(&self.log()), 40)
        );
        self.child = Some(child);
        self
    }

    /// Waits until the latest start has connected to the collector.
    pub fn expect_connected(&self) {
        expect_in_file(
            &self.log(),
            "connected to collector",
            Duration::from_secs(20),
        );
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM, and waits up to `timeout` for a clean exit.
    pub fn stop(&mut self, timeout: Duration) {
        if let Some(mut child) = self.child.take() {
            let status = child.terminate(timeout);
            assert!(
                status.is_some_and(|s| s.success()),
                "{} did not stop cleanly ({status:?}); log:\n{}",
                self.name,
                tail(&read(&self.log()), 40)
            );
        }
    }

    /// The running process.
    pub fn process(&mut self) -> &mut ChildGuard {
        self.child.as_mut().expect("agent running")
    }

    /// Process id of the running agent.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// Event kinds in the agent's own JSON-lines output, counted.
    pub fn produced_by_kind(&self) -> BTreeMap<String, u64> {
        let mut kinds = BTreeMap::new();
        for event in crate::read_json_lines(&self.events) {
            if let Some(kind) = event_kind(&event) {
                *kinds.entry(kind).or_default() += 1;
            }
        }
        kinds
    }

    /// The `I`s of the execs of `/bin/true MARKER I` in the agent's own JSON-lines output: which
    /// marks the agent captured, whatever became of them on the way to the store.
    pub fn produced_marks(&self, marker: &str) -> Vec<u32> {
        let mut marks: Vec<u32> = crate::read_json_lines(&self.events)
            .iter()
            .filter(|e| event_kind(e).as_deref() == Some("exec"))
            .filter(|e| e["process"]["argv"][1].as_str() == Some(marker))
            .filter_map(|e| e["process"]["argv"][2].as_str()?.parse().ok())
            .collect();
        marks.sort_unstable();
        marks
    }

    /// How many exec events the agent produced per executable, most first: what filled a spool
    /// or a ring buffer when a test finds less room than it expected.
    pub fn execs_by_image(&self) -> Vec<(String, u64)> {
        let mut images: BTreeMap<String, u64> = BTreeMap::new();
        for event in crate::read_json_lines(&self.events) {
            if event_kind(&event).as_deref() == Some("exec") {
                let exe = event["process"]["exe"].as_str().unwrap_or("?").to_owned();
                *images.entry(exe).or_default() += 1;
            }
        }
        let mut images: Vec<(String, u64)> = images.into_iter().collect();
        images.sort_by_key(|image| std::cmp::Reverse(image.1));
        images
    }
}

/// The kind of an event JSON object (the key of its payload); `None` for other lines.
pub fn event_kind(event: &Value) -> Option<String> {
    event.get("process")?;
    event["payload"]
        .as_object()
        .and_then(|p| p.keys().next().cloned())
}

/// A unique marker for one test's workload.
pub fn marker(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kestrel-{test}-{}-{nanos}", std::process::id())
}

/// Runs `/bin/true MARKER I` for each `I` in `range`, pausing `gap` between them.
pub fn run_marked(marker: &str, range: std::ops::Range<u32>, gap: Duration) {
    for i in range {
        let status = Command::new("/bin/true")
            .arg(marker)
            .arg(i.to_string())
            .status()
            .expect("run /bin/true");
        assert!(status.success());
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
}

/// The `I`s of the stored execs of `/bin/true MARKER I`, each as often as it is stored.
pub fn stored_marks(collector: &Collector, marker: &str) -> Vec<u32> {
    // Only events since the marker was made (its last part is that time in ns), with a minute
    // to spare: the store's time index then keeps the search short on a busy host.
    let made_ns: u128 = marker
        .rsplit('-')
        .next()
        .and_then(|ns| ns.parse().ok())
        .unwrap_or(0);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let since = format!("{}s", (now_ns.saturating_sub(made_ns) / 1_000_000_000) + 60);
    let mut marks: Vec<u32> = collector
        .search(&[
            "--kind",
            "exec",
            "--since",
            &since,
            "--command-line",
            &format!("/bin/true {marker} *"),
        ])
        .iter()
        .filter_map(|e| e["process"]["argv"][2].as_str()?.parse().ok())
        .collect();
    marks.sort_unstable();
    marks
}

/// Waits until exactly the execs `expected` of `marker` are stored, each once (or the
/// deadline passes), and returns what is stored then.
pub fn wait_for_marks(
    collector: &Collector,
    marker: &str,
    expected: &[u32],
    timeout: Duration,
) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let stored = stored_marks(collector, marker);
        if stored == expected || Instant::now() >= deadline {
            return stored;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Describes the difference between `stored` and `expected` marks for a failure message.
pub fn diff_marks(stored: &[u32], expected: &[u32]) -> String {
    let mut counts: BTreeMap<u32, i64> = BTreeMap::new();
    for m in stored {
        *counts.entry(*m).or_default() += 1;
    }
    let missing: Vec<u32> = expected
        .iter()
        .filter(|m| !counts.contains_key(m))
        .copied()
        .collect();
    let duplicated: Vec<u32> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(m, _)| *m)
        .collect();
    format!(
        "{} stored of {} expected; missing {missing:?}; duplicated {duplicated:?}",
        stored.len(),
        expected.len()
    )
}

/// `GET path` from an HTTP/1.1 server at `addr`; returns the whole response (status line,
/// headers, body).
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the unlabelled Prometheus sample `name` in a metrics response.
pub fn metric(response: &str, name: &str) -> Option<f64> {
    response.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}
