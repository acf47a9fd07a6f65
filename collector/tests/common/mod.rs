//! Shared test helpers: rule files and synthetic events; the test PKI and the gRPC client come
//! from `kestrel_testkit`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event, ExecEvent, Process};
// Each test binary that includes this module uses some of these (as with the dead code above).
#[allow(unused_imports)]
pub use kestrel_testkit::grpc::connect_ingest;
#[allow(unused_imports)]
pub use kestrel_testkit::pki::{dns, spiffe, uri, Issued, TestCa};

/// Writes `contents` to `dir/name` and returns the path; owner-only (the collector refuses a
/// private key others can read).
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()))
        .unwrap();
    path
}

/// A process_creation rule matching `cat` reading `/etc/shadow`.
pub const SHADOW_RULE: &str = r#"title: Shadow file read with cat
id: 0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10
status: test
description: A shell utility read the shadow password file.
level: high
tags:
  - attack.credential-access
  - attack.t1003.008
logsource:
  category: process_creation
  product: linux
detection:
  selection:
    Image|endswith: /cat
    CommandLine|contains: /etc/shadow
  condition: selection
"#;

/// An exec of `/usr/bin/cat /etc/shadow` from bash under sshd, claiming host `liar`.
pub fn shadow_exec_event() -> Event {
    Event {
        time_unix_ns: 1_700_000_000_123_456_789,
        host: "liar".into(),
        seq: 999,
        process: Some(Process {
            pid: 4242,
            tgid: 4242,
            ppid: 4200,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            exe: "/usr/bin/cat".into(),
            comm: "cat".into(),
            argv: vec!["cat".into(), "/etc/shadow".into()],
            cwd: "/home/alice".into(),
            exec_id: "exec-4242".into(),
            parent_exec_id: "exec-4200".into(),
            ..Process::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors: vec![
                Ancestor {
                    pid: 4200,
                    exe: "/usr/bin/bash".into(),
                    argv: vec!["-bash".into()],
                    uid: 1000,
                    user: "alice".into(),
                    exec_id: "exec-4200".into(),
                    start_time_unix_ns: 1_699_999_000_000_000_000,
                },
                Ancestor {
                    pid: 4100,
                    exe: "/usr/sbin/sshd".into(),
                    argv: vec!["sshd:".into(), "alice".into()],
                    uid: 0,
                    user: "root".into(),
                    exec_id: "exec-4100".into(),
                    start_time_unix_ns: 1_699_998_000_000_000_000,
                },
            ],
            filename_truncated: false,
            ..ExecEvent::default()
        })),
        ..Event::default()
    }
}

/// An exec of `/usr/bin/ls` that no rule matches.
pub fn harmless_exec_event() -> Event {
    let mut event = shadow_exec_event();
    let process = event.process.as_mut().unwrap();
    process.exe = "/usr/bin/ls".into();
    process.comm = "ls".into();
    process.argv = vec!["ls".into(), "-l".into()];
    process.exec_id = "exec-4243".into();
    event
}
