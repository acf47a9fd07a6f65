//! Output hygiene of the real collector binary, attacked through its real inputs: sink secrets
//! never leave the sink (logs, store, CLI, other sinks), sinks do not follow redirects unless
//! told to, hostile Gap records cannot forge or break `/metrics`, terminal escapes in event and
//! agent fields never reach the terminal raw, and the store and key files are owner-only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kestrel_proto::agent_message::Msg;
use kestrel_proto::event::Payload;
use kestrel_proto::{AgentMessage, Ancestor, Event, ExecEvent, Gap, Hello, Process};
use kestrel_testkit::grpc::{batch, connect_from_pki, hello, open_stream, AgentStream};
use kestrel_testkit::receiver::Receiver;
use kestrel_testkit::stack::{certs, free_port, http_get, read, serve_command, tail, Collector};
use kestrel_testkit::{binary, workspace_root, ChildGuard};
use serde_json::Value;

const AGENT: &str = "hygiene-agent";

/// Secret parts of the sink URLs: none of them may show anywhere outside the sink.
const SECRETS: &[&str] = &[
    "T0SECRET500",
    "XOXB-SECRET-500",
    "T1SECRETREF",
    "XOXB-SECRET-REFUSED",
];

/// `kestrel-collector ARGS --data DATA`; its stdout (it must succeed).
fn cli(args: &[&str], data: &Path) -> String {
    let output = Command::new(binary("kestrel-collector"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kestrel-collector {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Waits (without blocking the runtime) until `check` gives a value.
async fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "no {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A collector with the development PKI in `dir/pki`, `config` as its `--config` and `extra`
/// arguments, started.
fn collector(dir: &Path, config: &str, extra: &[&str]) -> Collector {
    let pki = dir.join("pki");
    certs(&pki, AGENT);
    let path = dir.join("collector.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    let mut collector = Collector::new(dir, &pki, &args);
    collector.start();
    collector
}

/// An agent stream to `collector` that said Hello with `hello`.
async fn agent(collector: &Collector, hello: AgentMessage) -> AgentStream {
    let mut client = connect_from_pki(&collector.pki, AGENT, collector.port)
        .await
        .unwrap();
    open_stream(&mut client, hello).await.unwrap()
}

/// An exec of `cat /etc/shadow` (the default rules alert on it) with `argv` appended.
fn shadow_read(extra_argv: &[&str], cwd: &str) -> Event {
    let mut argv = vec!["cat".to_owned(), "/etc/shadow".to_owned()];
    argv.extend(extra_argv.iter().map(|s| s.to_string()));
    Event {
        time_unix_ns: 1_700_000_000_123_456_789,
        process: Some(Process {
            pid: 4242,
            tgid: 4242,
            ppid: 4200,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            exe: "/usr/bin/cat".into(),
            comm: "cat".into(),
            argv,
            cwd: cwd.into(),
            exec_id: "exec-4242".into(),
            parent_exec_id: "exec-4200".into(),
            ..Process::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors: vec![Ancestor {
                pid: 4200,
                exe: "/usr/bin/bash".into(),
                argv: vec!["-bash".into(), "\u{1b}]0;owned\u{7}".into()],
                uid: 1000,
                user: "alice".into(),
                exec_id: "exec-4200".into(),
                start_time_unix_ns: 1_699_999_000_000_000_000,
            }],
            ..ExecEvent::default()
        })),
        ..Event::default()
    }
}

/// Every file of the store (database, WAL, shared memory) as bytes.
fn store_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_secrets_stay_out_of_logs_store_cli_and_other_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Receiver::start(500).await;
    let sirt = Receiver::start(200).await;
    let refused = free_port();
    let config = format!(
        "[delivery]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmeta_alert_after = 2\n\n\
         [[sinks]]\nkind = \"slack\"\nname = \"slack-500\"\n\
         url = \"{}/services/T0SECRET500/B0/XOXB-SECRET-500?token=XOXB-SECRET-500\"\n\n\
         [[sinks]]\nkind = \"slack\"\nname = \"slack-refused\"\n\
         url = \"http://127.0.0.1:{refused}/services/T1SECRETREF/B1/XOXB-SECRET-REFUSED\"\n\n\
         [[sinks]]\nkind = \"webhook\"\nname = \"sirt\"\nurl = \"{}/kestrel\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        failing.url, sirt.url
    );
    let collector = collector(dir.path(), &config, &[]);
    let mut stream = agent(&collector, hello(1)).await;
    stream
        .send(batch(1, vec![shadow_read(&[], "/home/alice")]))
        .await;
    assert_eq!(stream.ack().await, 1);

    // The other sink hears that both Slack sinks keep failing.
    let failing_alerts = wait_for(Duration::from_secs(30), "sink-failing alerts", || {
        let sinks: Vec<String> = sirt
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["data"]["rule"]["id"] == "kestrel.system.sink-failing")
            .map(|b| b["data"]["group"].as_str().unwrap_or("").to_owned())
            .collect();
        (sinks.iter().any(|s| s == "slack-500") && sinks.iter().any(|s| s == "slack-refused"))
            .then_some(sinks)
    })
    .await;
    assert!(failing.requests().len() >= 2, "the 500 receiver was tried");

    let mut outputs = vec![("collector log", read(&collector.log()))];
    let listed = cli(&["alerts", "list"], &collector.data);
    outputs.push((
        "alerts list --json",
        cli(&["alerts", "list", "--json"], &collector.data),
    ));
    for line in cli(&["alerts", "list", "--json"], &collector.data).lines() {
        let id = serde_json::from_str::<Value>(line).unwrap()["id"].to_string();
        outputs.push((
            "alerts show",
            cli(&["alerts", "show", &id], &collector.data),
        ));
        outputs.push((
            "alerts show --json",
            cli(&["alerts", "show", &id, "--json"], &collector.data),
        ));
    }
    outputs.push(("alerts list", listed));
    for request in sirt.requests() {
        outputs.push((
            "the other sink",
            String::from_utf8_lossy(&request.body).into(),
        ));
    }
    let shown = outputs
        .iter()
        .filter(|(what, _)| *what == "alerts show")
        .map(|(_, text)| text.as_str())
        .collect::<String>();
    // Not vacuous: the failures themselves are reported, by sink name and redacted address.
    assert!(shown.contains("HTTP 500"), "{shown}");
    assert!(shown.contains("slack-refused"), "{shown}");
    assert!(
        shown.contains(&format!("http://127.0.0.1:{refused}/…")),
        "{shown}"
    );
    let store = store_bytes(&collector.data);
    for secret in SECRETS {
        for (what, text) in &outputs {
            assert!(
                !text.contains(secret),
                "{what} shows {secret}:\n{}",
                tail(text, 30)
            );
        }
        assert!(!contains(&store, secret), "the store holds {secret}");
    }
    assert_eq!(failing_alerts.len(), 2, "{failing_alerts:?}");
}

/// A one-endpoint HTTP server answering every request `302 Found` to `location`; counts them.
fn redirector(location: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers and the (small) body: read until the client pauses.
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_follow_redirects_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let target = Receiver::start(200).await;
    let (strict, strict_hits) = redirector(format!("{}/strict-landed", target.url));
    let (lenient, lenient_hits) = redirector(format!("{}/lenient-landed", target.url));
    let config = format!(
        "[delivery]\ninitial_backoff = \"50ms\"\n\n\
         [[sinks]]\nkind = \"slack\"\nname = \"strict\"\nurl = \"{strict}/hook\"\n\n\
         [[sinks]]\nkind = \"slack\"\nname = \"lenient\"\nurl = \"{lenient}/hook\"\n\
         follow_redirects = true\n"
    );
    let collector = collector(dir.path(), &config, &[]);
    let mut stream = agent(&collector, hello(1)).await;
    stream.send(batch(1, vec![shadow_read(&[], "/")])).await;
    assert_eq!(stream.ack().await, 1);

    wait_for(Duration::from_secs(20), "the redirected delivery", || {
        target
            .requests()
            .iter()
            .any(|r| r.path == "/lenient-landed")
            .then_some(())
    })
    .await;
    let show = wait_for(Duration::from_secs(20), "the refused redirect", || {
        let shown = cli(&["alerts", "show", "1"], &collector.data);
        shown
            .lines()
            .any(|l| l.contains("strict") && l.contains("dead-lettered"))
            .then_some(shown)
    })
    .await;
    assert!(show.contains("redirect"), "{show}");
    assert!(strict_hits.load(Ordering::SeqCst) >= 1);
    assert!(lenient_hits.load(Ordering::SeqCst) >= 1);
    assert!(
        target.requests().iter().all(|r| r.path != "/strict-landed"),
        "the strict sink followed the redirect"
    );
}

/// A Gap record.
fn gap(reason: &str, kind: &str, count: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Gap(Gap {
            kind: kind.into(),
            reason: reason.into(),
            count,
            ..Gap::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_gaps_neither_forge_nor_break_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let collector = collector(dir.path(), "", &["--metrics-listen", &metrics]);
    let mut stream = agent(&collector, hello(1)).await;
    let injected = "kernel\"} 1\nkestrel_forged_total{x=\"y";
    stream.send(gap(injected, "exec\n# forged", 5)).await;
    stream.send(gap("kernel", "exec", u64::MAX)).await;
    stream.send(gap("kernel", "exec", i64::MAX as u64)).await;
    stream.send(gap("kernel", "exec", i64::MAX as u64)).await;
    for i in 0..50 {
        stream.send(gap(&format!("made-up-{i}"), "x", 1)).await;
    }
    stream.send(batch(1, vec![shadow_read(&[], "/")])).await;
    assert_eq!(stream.ack().await, 1);
    wait_for(Duration::from_secs(10), "the stored gaps", || {
        (collector.gaps().len() == 54).then_some(())
    })
    .await;

    let response = http_get(&metrics, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    for line in body.lines() {
        assert!(
            line.starts_with("# HELP kestrel_collector_")
                || line.starts_with("# TYPE kestrel_collector_")
                || line.starts_with("kestrel_collector_"),
            "a line nobody wrote: {line:?}\n{body}"
        );
    }
    let lost: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("kestrel_collector_events_lost_total"))
        .collect();
    assert!(
        lost.contains(
            &"kestrel_collector_events_lost_total{reason=\"kernel\"} 18446744073709551615"
        ),
        "{lost:?}"
    );
    assert!(
        lost.contains(&"kestrel_collector_events_lost_total{reason=\"other\"} 55"),
        "{lost:?}"
    );
    assert_eq!(lost.len(), 2, "peer strings fold into `other`: {lost:?}");
}

/// Characters a terminal acts on; none may reach it raw.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_escapes_in_peer_fields_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path(), "", &[]);
    let hostile_hello = AgentMessage {
        msg: Some(Msg::Hello(Hello {
            agent_version: "1.0\u{9b}31m".into(),
            hostname: "web\u{1b}[2J\u{1b}[31mowned".into(),
            spool_epoch: 1,
            ..Hello::default()
        })),
    };
    let mut stream = agent(&collector, hostile_hello).await;
    let argv = ["\u{1b}[2K\rfake line", "evil\u{202e}txt.sh", "x\u{7f}y"];
    let cwd = "/tmp/\u{1b}]52;c;cGF5bG9hZA==\u{7}";
    stream.send(batch(1, vec![shadow_read(&argv, cwd)])).await;
    assert_eq!(stream.ack().await, 1);
    stream
        .send(gap("kernel\u{1b}[8m", "exec\u{1b}[0m", 3))
        .await;
    stream.send(batch(2, vec![shadow_read(&[], "/")])).await;
    assert_eq!(stream.ack().await, 2);
    wait_for(Duration::from_secs(10), "the alert", || {
        cli(&["alerts", "list", "--json"], &collector.data)
            .lines()
            .next()
            .map(drop)
    })
    .await;

    let data = &collector.data;
    for args in [
        &["events", "search"][..],
        &["events", "gaps"],
        &["agents", "list"],
        &["alerts", "list"],
        &["alerts", "show", "1"],
    ] {
        let out = cli(args, data);
        assert_eq!(raw_controls(&out), Vec::<char>::new(), "{args:?}:\n{out:?}");
        assert!(out.contains("\\x1b"), "{args:?} shows the escape:\n{out}");
    }
    let search = cli(&["events", "search"], data);
    assert!(search.contains("\\x1b[2K\\rfake line"), "{search}");
    assert!(search.contains("evil\\u{202e}txt.sh"), "{search}");
    assert!(search.contains("x\\x7fy"), "{search}");
    assert!(cli(&["agents", "list"], data).contains("1.0\\u{9b}31m"));
    // JSON output is exact JSON: the same strings come back, and nothing raw is printed.
    for args in [
        &["events", "search", "--json"][..],
        &["agents", "list", "--json"],
        &["alerts", "list", "--json"],
        &["alerts", "show", "1", "--json"],
    ] {
        let out = cli(args, data);
        assert_eq!(raw_controls(&out), Vec::<char>::new(), "{args:?}:\n{out:?}");
    }
    let event: Value = serde_json::from_str(
        cli(&["events", "search", "--json"], data)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["process"]["argv"][2], argv[0]);
    assert_eq!(event["process"]["argv"][3], argv[1]);
    assert_eq!(event["process"]["cwd"], cwd);
    let agent: Value =
        serde_json::from_str(cli(&["agents", "list", "--json"], data).trim()).unwrap();
    assert_eq!(agent["agent_version"], "1.0\u{9b}31m");
}

/// `kestrel-collector serve` on the PKI in `pki` and data `data`, run with umask 000.
fn serve_with_umask_000(pki: &Path, data: &Path, log: &Path) -> Command {
    let mut command = serve_command(
        &None,
        &format!("127.0.0.1:{}", free_port()),
        pki,
        &workspace_root().join("collector/rules"),
        data,
    );
    command
        .arg("--alerts-jsonl")
        .arg(data.with_file_name("alerts.jsonl"));
    command.stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    // SAFETY: umask is async-signal-safe and touches nothing but the child's file mode mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    command
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_files_are_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let data: PathBuf = dir.path().join("data");
    let log = dir.path().join("collector.log");
    let _collector = ChildGuard::spawn("collector", &mut serve_with_umask_000(&pki, &data, &log));
    let wal = data.join("kestrel.db-wal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(wal.exists() && data.join("kestrel.db-shm").exists()) {
        assert!(Instant::now() < deadline, "no WAL; log:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mode(&data), 0o700, "data directory");
    for file in ["kestrel.db", "kestrel.db-wal", "kestrel.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let alerts = dir.path().join("alerts.jsonl");
    if alerts.exists() {
        assert_eq!(mode(&alerts), 0o600, "alerts.jsonl");
    }
}

#[test]
fn a_private_key_others_can_read_is_refused_naming_file_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let key = pki.join("collector-key.pem");
    for loose in [0o644, 0o640] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
        let log = dir.path().join("collector.log");
        let mut child = serve_with_umask_000(&pki, &dir.path().join("data"), &log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = read(&log);
        assert!(
            status.is_some_and(|s| !s.success()),
            "still running with a {loose:o} key:\n{stderr}"
        );
        assert!(
            stderr.contains(&key.display().to_string()) && stderr.contains(&format!("{loose:o}")),
            "{stderr}"
        );
    }
}
