//! Rule test fixtures: events a rule must fire on and events it must stay quiet on.
//!
//! Fixtures live in the `fixtures/` directory of a rules directory (the rule loader skips it),
//! one file per rule file, named after it (`fixtures/cred_shadow_read.yml` for
//! `cred_shadow_read.yml`). A fixture file is a YAML list of cases:
//!
//! ```yaml
//! - rule: kestrel-cred-shadow-read-cli     # id of the rule under test
//!   name: cat reads the shadow file        # shown in the report
//!   expect: match                          # or no_match
//!   events:                                # evaluated in order by one detector
//!     - process: { exe: /usr/bin/cat, argv: [cat, /etc/shadow] }
//!       exec: { ancestors: [{ exe: /bin/bash, pid: 100 }] }
//! ```
//!
//! An event is the JSON shape of `--events-jsonl` written as YAML, with defaults for what a
//! case does not care about and words for enums (`file: { op: chmod, path: /tmp/x, mode: 0o4755 }`,
//! `network: { op: connect, protocol: tcp, remote_ip: 10.0.0.1, remote_port: 4444 }`). Exactly
//! one payload key per event: exec, fork, exit, file, network, credential, ptrace, signal,
//! module, bpf, memfd, namespace, io_uring. A process without a `pid` gets one of its own per
//! `exec_id` (4242 without one). `at: 30s` places an event 30 s after the first
//! (default: 1 s after the previous one). A case expecting `match` passes when the rule fires on
//! any of its events; `no_match` when it fires on none. Every rule needs at least one case of
//! each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kestrel_proto as pb;
use kestrel_proto::event::Payload;
use serde::Deserialize;

use crate::{Detector, RuleSet, FIXTURES_DIR};

/// Time of the first event of every case (2023-11-14T22:13:20Z).
const BASE_TIME_NS: u64 = 1_700_000_000_000_000_000;

/// A fixture file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("fixture {}: {reason}", path.display())]
pub struct FixtureError {
    /// The fixture file.
    pub path: PathBuf,
    /// What is wrong (with the position for YAML errors).
    pub reason: String,
}

/// Whether a case expects the rule to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The rule fires on at least one event of the case.
    Match,
    /// The rule fires on no event of the case.
    NoMatch,
}

/// One test case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Id of the rule under test.
    pub rule: String,
    /// What the case shows.
    pub name: String,
    /// Expected outcome.
    pub expect: Expect,
    /// The events, in order.
    pub events: Vec<FixtureEvent>,
}

/// The outcome for one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// Rule id.
    pub id: String,
    /// Rule file.
    pub path: PathBuf,
    /// Cases that passed.
    pub passed: usize,
    /// `match` cases.
    pub positives: usize,
    /// `no_match` cases.
    pub negatives: usize,
    /// Why cases failed (one line each), plus missing positive or negative cases.
    pub failures: Vec<String>,
}

impl RuleReport {
    /// True when every case passed and there is at least one case of each kind.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of `rules test`.
#[derive(Debug, Default)]
pub struct FixtureReport {
    /// One entry per loaded rule (detection and correlation), in load order.
    pub rules: Vec<RuleReport>,
    /// Fixture files that could not be used, and cases naming rules that are not loaded.
    pub errors: Vec<FixtureError>,
}

impl FixtureReport {
    /// True when every rule passed and every fixture file was usable.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.rules.iter().all(RuleReport::ok)
    }
}

/// Reads every fixture file of `rules_dir/fixtures` (sorted); a missing directory has none.
pub fn load_fixtures(rules_dir: &Path) -> (Vec<(PathBuf, Vec<Case>)>, Vec<FixtureError>) {
    let dir = rules_dir.join(FIXTURES_DIR);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_cases(&text));
        match parsed {
            Ok(cases) => out.push((path, cases)),
            Err(reason) => errors.push(FixtureError { path, reason }),
        }
    }
    (out, errors)
}

/// Parses a fixture file's text.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

/// Runs `fixtures` against `rules` and reports per rule.
pub fn run(rules: &Arc<RuleSet>, fixtures: &[(PathBuf, Vec<Case>)]) -> FixtureReport {
    let mut reports: BTreeMap<String, RuleReport> = BTreeMap::new();
    let mut order = Vec::new();
    for rule in rules.rules() {
        order.push(rule.id.clone());
        reports.insert(
            rule.id.clone(),
            RuleReport {
                id: rule.id.clone(),
                path: rule.path.clone(),
                ..Default::default()
            },
        );
    }
    for c in rules.correlations() {
        order.push(c.info.id.clone());
        reports.insert(
            c.info.id.clone(),
            RuleReport {
                id: c.info.id.clone(),
                path: c.info.path.clone(),
                ..Default::default()
            },
        );
    }
    let mut errors = Vec::new();
    for (path, cases) in fixtures {
        for case in cases {
            let Some(report) = reports.get_mut(&case.rule) else {
                errors.push(FixtureError {
                    path: path.clone(),
                    reason: format!(
                        "case '{}' tests rule '{}', which is not loaded",
                        case.name, case.rule
                    ),
                });
                continue;
            };
            match case.expect {
                Expect::Match => report.positives += 1,
                Expect::NoMatch => report.negatives += 1,
            }
            match run_case(rules, case) {
                Ok(()) => report.passed += 1,
                Err(why) => {
                    report
                        .failures
                        .push(format!("{}: case '{}': {why}", path.display(), case.name))
                }
            }
        }
    }
    let mut out = Vec::new();
    for id in order {
        let mut report = reports.remove(&id).expect("report per rule");
        if report.positives == 0 {
            report.failures.push("no 'match' case".into());
        }
        if report.negatives == 0 {
            report.failures.push("no 'no_match' case".into());
        }
        out.push(report);
    }
    FixtureReport { rules: out, errors }
}

impl Case {
    /// The case's events as proto events (times, defaults and payload filled in).
    pub fn proto_events(&self) -> Result<Vec<pb::Event>, String> {
        let mut time = BASE_TIME_NS;
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.to_event(i, &mut time)
                    .map_err(|why| format!("event {}: {why}", i + 1))
            })
            .collect()
    }
}

fn run_case(rules: &Arc<RuleSet>, case: &Case) -> Result<(), String> {
    if case.events.is_empty() {
        return Err("no events".into());
    }
    let events: Vec<Arc<pb::Event>> = case.proto_events()?.into_iter().map(Arc::new).collect();
    let mut detector = Detector::new(rules.clone()).report_correlation_inputs(true);
    let fired_on: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| detector.evaluate(e).iter().any(|d| d.rule.id == case.rule))
        .map(|(i, _)| i + 1)
        .collect();
    match (case.expect, fired_on.is_empty()) {
        (Expect::Match, true) => Err("expected a match, the rule did not fire".into()),
        (Expect::NoMatch, false) => Err(format!(
            "expected no match, the rule fired on event {}",
            fired_on[0]
        )),
        _ => Ok(()),
    }
}

/// An event as written in a fixture.
///
/// The process, file and network parts have fixture defaults of their own (below); every other
/// part is the proto message itself, whose absent fields are zero or empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEvent {
    /// Offset from the case's first event (`30s`, `2m`); default: 1 s after the previous one.
    at: Option<String>,
    /// Host identity (default `fixture-host`).
    host: Option<String>,
    #[serde(default)]
    process: FixtureProcess,
    container: Option<pb::Container>,
    exec: Option<pb::ExecEvent>,
    fork: Option<pb::ForkEvent>,
    exit: Option<pb::ExitEvent>,
    file: Option<FixtureFile>,
    network: Option<FixtureNetwork>,
    credential: Option<pb::CredentialEvent>,
    ptrace: Option<pb::PtraceEvent>,
    signal: Option<pb::SignalEvent>,
    module: Option<pb::ModuleEvent>,
    bpf: Option<pb::BpfEvent>,
    memfd: Option<pb::MemfdEvent>,
    namespace: Option<pb::NamespaceEvent>,
    io_uring: Option<pb::IoUringEvent>,
    process_rename: Option<pb::ProcessRenameEvent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureProcess {
    pid: Option<u32>,
    tgid: Option<u32>,
    #[serde(default)]
    ppid: u32,
    uid: Option<u32>,
    #[serde(default)]
    gid: u32,
    euid: Option<u32>,
    user: Option<String>,
    exe: Option<String>,
    comm: Option<String>,
    argv: Option<Vec<String>>,
    cwd: Option<String>,
    #[serde(default)]
    exec_id: String,
    #[serde(default)]
    parent_exec_id: String,
    #[serde(default)]
    container_id: String,
    #[serde(default)]
    tty: String,
}

/// An integer, or octal digits in a string (`"4755"`) for modes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Mode {
    Number(u32),
    Octal(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    op: String,
    path: String,
    #[serde(default)]
    target_path: String,
    #[serde(default)]
    flags: u64,
    mode: Option<Mode>,
    #[serde(default = "minus_one")]
    uid: i64,
    #[serde(default = "minus_one")]
    gid: i64,
    #[serde(default)]
    fs_type: String,
    #[serde(default)]
    result: i64,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    syscall: String,
}

fn minus_one() -> i64 {
    -1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureNetwork {
    op: String,
    protocol: Option<serde_yaml::Value>,
    family: Option<u32>,
    #[serde(default)]
    local_ip: String,
    #[serde(default)]
    local_port: u32,
    #[serde(default)]
    remote_ip: String,
    #[serde(default)]
    remote_port: u32,
    #[serde(default)]
    result: i64,
    initiated: Option<bool>,
    #[serde(default)]
    remote_hostname: String,
    dns: Option<FixtureDns>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureDns {
    query: String,
    #[serde(default = "a_record")]
    query_type: u32,
    #[serde(default)]
    rcode: u32,
    #[serde(default)]
    answers: Vec<String>,
}

fn a_record() -> u32 {
    1
}

/// The pid a fixture process gets when the case names none: 4242 without an exec id, else a
/// stable number derived from the exec id (FNV-1a), in 10000..60000.
fn default_pid(exec_id: &str) -> u32 {
    if exec_id.is_empty() {
        return 4242;
    }
    let hash = exec_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    10_000 + hash % 50_000
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn file_op(word: &str) -> Result<pb::FileOp, String> {
    use pb::FileOp as F;
    Ok(match word {
        "open" => F::FileOpen,
        "read" | "read_sensitive" => F::FileReadSensitive,
        "rename" => F::FileRename,
        "unlink" => F::FileUnlink,
        "rmdir" => F::FileRmdir,
        "chmod" => F::FileChmod,
        "chown" => F::FileChown,
        "link" => F::FileLink,
        "symlink" => F::FileSymlink,
        "truncate" => F::FileTruncate,
        "mount" => F::FileMount,
        "umount" => F::FileUmount,
        "utimes" => F::FileUtimes,
        other => return Err(format!("unknown file op '{other}'")),
    })
}

fn network_op(word: &str) -> Result<pb::NetworkOp, String> {
    use pb::NetworkOp as N;
    Ok(match word {
        "connect" => N::NetworkConnect,
        "accept" => N::NetworkAccept,
        "listen" => N::NetworkListen,
        "bind" => N::NetworkBind,
        "send" => N::NetworkSend,
        "packet_socket" => N::NetworkPacketSocket,
        "dns_answer" => N::NetworkDnsAnswer,
        other => return Err(format!("unknown network op '{other}'")),
    })
}

impl FixtureEvent {
    /// The proto event; `index` is the event's position, `time` the previous event's time (and
    /// is advanced to this one's).
    fn to_event(&self, index: usize, time: &mut u64) -> Result<pb::Event, String> {
        *time = match &self.at {
            Some(at) => {
                BASE_TIME_NS
                    + u64::try_from(
                        humantime::parse_duration(at)
                            .map_err(|e| format!("at '{at}': {e}"))?
                            .as_nanos(),
                    )
                    .map_err(|_| format!("at '{at}' is too far"))?
            }
            None if index == 0 => BASE_TIME_NS,
            None => *time + 1_000_000_000,
        };
        let p = &self.process;
        let exe = p.exe.clone().unwrap_or_else(|| "/usr/bin/true".into());
        let argv = p
            .argv
            .clone()
            .unwrap_or_else(|| vec![basename(&exe).to_string()]);
        // Default pid: 4242, or one of its own per exec id, so that distinct executions are
        // distinct processes (the session table follows a process across its execs by pid).
        let pid = p.pid.or(p.tgid).unwrap_or_else(|| default_pid(&p.exec_id));
        let uid = p.uid.unwrap_or(1000);
        let process = pb::Process {
            pid,
            tgid: p.tgid.unwrap_or(pid),
            ppid: p.ppid,
            uid,
            gid: p.gid,
            euid: p.euid.unwrap_or(uid),
            egid: p.gid,
            user: p
                .user
                .clone()
                .unwrap_or_else(|| if uid == 0 { "root" } else { "alice" }.into()),
            comm: p
                .comm
                .clone()
                .unwrap_or_else(|| basename(&exe).chars().take(15).collect()),
            exe,
            argv,
            cwd: p.cwd.clone().unwrap_or_else(|| "/home/alice".into()),
            exec_id: p.exec_id.clone(),
            parent_exec_id: p.parent_exec_id.clone(),
            container_id: p.container_id.clone(),
            tty: p.tty.clone(),
            start_time_unix_ns: *time,
            ..Default::default()
        };
        let mut payloads = Vec::new();
        if let Some(e) = &self.exec {
            let mut exec = e.clone();
            for a in &mut exec.ancestors {
                if a.argv.is_empty() {
                    a.argv = vec![basename(&a.exe).to_string()];
                }
                if a.user.is_empty() && a.uid == 0 {
                    a.user = "root".into();
                }
            }
            payloads.push(Payload::Exec(exec));
        }
        if let Some(f) = &self.file {
            let mode = match &f.mode {
                None => 0,
                Some(Mode::Number(n)) => *n,
                Some(Mode::Octal(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("mode '{s}' is not octal"))?,
            };
            payloads.push(Payload::File(pb::FileEvent {
                op: file_op(&f.op)? as i32,
                path: f.path.clone(),
                target_path: f.target_path.clone(),
                flags: f.flags,
                mode,
                uid: f.uid,
                gid: f.gid,
                fs_type: f.fs_type.clone(),
                result: f.result,
                created: f.created,
                truncated: f.truncated,
                path_truncated: false,
                syscall: f.syscall.clone(),
            }));
        }
        if let Some(n) = &self.network {
            let op = network_op(&n.op)?;
            let protocol = match &n.protocol {
                None => 6,
                Some(serde_yaml::Value::String(s)) if s == "tcp" => 6,
                Some(serde_yaml::Value::String(s)) if s == "udp" => 17,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("protocol {v:?}: expected tcp, udp or a number"))?,
            };
            let v6 = n.remote_ip.contains(':') || n.local_ip.contains(':');
            payloads.push(Payload::Network(pb::NetworkEvent {
                op: op as i32,
                protocol,
                family: n.family.unwrap_or(match op {
                    pb::NetworkOp::NetworkPacketSocket => 17,
                    _ if v6 => 10,
                    _ => 2,
                }),
                local_ip: n.local_ip.clone(),
                local_port: n.local_port,
                remote_ip: n.remote_ip.clone(),
                remote_port: n.remote_port,
                result: n.result,
                initiated: n.initiated.unwrap_or(matches!(
                    op,
                    pb::NetworkOp::NetworkConnect | pb::NetworkOp::NetworkSend
                )),
                remote_hostname: n.remote_hostname.clone(),
                dns: n.dns.as_ref().map(|d| pb::DnsAnswer {
                    query: d.query.clone(),
                    query_type: d.query_type,
                    rcode: d.rcode,
                    answers: d.answers.clone(),
                    truncated: false,
                }),
            }));
        }
        if let Some(c) = &self.credential {
            // Both credential sets are always present, as the agent sends them.
            payloads.push(Payload::Credential(pb::CredentialEvent {
                old: Some(c.old.unwrap_or_default()),
                new: Some(c.new.unwrap_or_default()),
                ..c.clone()
            }));
        }
        // The other payloads are written as the proto messages themselves.
        let as_written = [
            self.fork.map(Payload::Fork),
            self.exit.map(Payload::Exit),
            self.ptrace.clone().map(Payload::Ptrace),
            self.signal.clone().map(Payload::Signal),
            self.module.clone().map(Payload::Module),
            self.bpf.clone().map(Payload::Bpf),
            self.memfd.clone().map(Payload::Memfd),
            self.namespace.clone().map(Payload::Namespace),
            self.io_uring.clone().map(Payload::IoUring),
            self.process_rename.clone().map(Payload::ProcessRename),
        ];
        payloads.extend(as_written.into_iter().flatten());
        if payloads.len() != 1 {
            return Err(format!(
                "needs exactly one payload (exec, fork, exit, file, network, credential, ptrace, \
                 signal, module, bpf, memfd, namespace, io_uring, process_rename), has {}",
                payloads.len()
            ));
        }
        Ok(pb::Event {
            time_unix_ns: *time,
            host: self.host.clone().unwrap_or_else(|| "fixture-host".into()),
            seq: index as u64,
            process: Some(process),
            enrichment: if self.container.is_some() {
                pb::Enrichment::Complete as i32
            } else {
                pb::Enrichment::None as i32
            },
            container: self.container.clone(),
            payload: payloads.pop(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_events_get_defaults_and_one_payload() {
        let cases = parse_cases(
            "- rule: r\n  name: n\n  expect: match\n  events:\n    - process: { exe: /usr/bin/cat }\n      exec: {}\n    - at: 30s\n      file: { op: chmod, path: /tmp/x, mode: '4755' }\n",
        )
        .unwrap();
        let mut time = 0;
        let exec = cases[0].events[0].to_event(0, &mut time).unwrap();
        let p = exec.process.unwrap();
        assert_eq!(
            (p.argv, p.comm.as_str(), p.user.as_str()),
            (vec!["cat".to_string()], "cat", "alice")
        );
        let file = cases[0].events[1].to_event(1, &mut time).unwrap();
        assert_eq!(file.time_unix_ns, BASE_TIME_NS + 30_000_000_000);
        let Some(Payload::File(f)) = file.payload else {
            panic!()
        };
        assert_eq!(f.mode, 0o4755);
        assert_eq!(f.op, pb::FileOp::FileChmod as i32);
    }

    #[test]
    fn events_without_or_with_two_payloads_are_errors() {
        let none = FixtureEvent::default();
        assert!(none
            .to_event(0, &mut 0)
            .unwrap_err()
            .contains("exactly one payload"));
        let cases = parse_cases(
            "- rule: r\n  name: n\n  expect: match\n  events:\n    - exec: {}\n      fork: {}\n",
        )
        .unwrap();
        assert!(cases[0].events[0].to_event(0, &mut 0).is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse_cases("- rule: r\n  name: n\n  expect: match\n  events:\n    - exce: {}\n")
            .unwrap_err();
        assert!(err.contains("exce"), "{err}");
    }
}
