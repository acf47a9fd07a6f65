//! The detection → alert record → outbox path, driven with hostile events: seeds of every shape
//! an alert draws on, their protobuf bytes mutated by a seeded generator (the same body as the
//! `alert_record` fuzz target), and hand-made worst cases. Every event is either refused by the
//! ingress limits or becomes an alert that is stored, read back, rendered and delivered.

mod alert_record;

use alert_record::{AlertRecordPath, Outcome};
use kestrel_proto::event::Payload;
use kestrel_proto::{
    Ancestor, Container, DnsAnswer, Event, ExecEvent, FileEvent, NetworkEvent, Process, SignalEvent,
};
use prost::Message;

/// Characters an attacker would put in a field: terminal escapes, line breaks, bidi overrides,
/// NUL, quotes and markup the sinks' formats give meaning to.
const HOSTILE: &[&str] = &[
    "\u{1b}[2J\u{1b}[31m",
    "\nfake line\r\n",
    "\u{202e}gnp.exe",
    "\0",
    "\"}],\"x\":{\"",
    "<!channel> *bold* `code` [link](http://x)",
    "%s%n%x",
    "🦀",
];

fn hostile(i: usize) -> String {
    format!("/usr/bin/{}{i}", HOSTILE[i % HOSTILE.len()])
}

fn process(i: usize) -> Process {
    Process {
        pid: 4242 + i as u32,
        tgid: 4242,
        ppid: 4200,
        uid: 1000,
        user: hostile(i + 1),
        exe: hostile(i),
        comm: HOSTILE[i % HOSTILE.len()].into(),
        argv: (0..4).map(|j| hostile(i + j)).collect(),
        cwd: hostile(i + 2),
        exec_id: format!("exec-{i}"),
        parent_exec_id: "exec-4200".into(),
        tty: hostile(i + 3),
        ..Process::default()
    }
}

fn ancestors(n: usize) -> Vec<Ancestor> {
    (0..n)
        .map(|i| Ancestor {
            pid: 100 + i as u32,
            exe: hostile(i),
            argv: vec![hostile(i + 1), HOSTILE[i % HOSTILE.len()].into()],
            user: hostile(i + 2),
            exec_id: format!("exec-a{i}"),
            start_time_unix_ns: 1_700_000_000_000_000_000 + i as u64,
            ..Ancestor::default()
        })
        .collect()
}

/// One event of each shape the alert record draws fields from.
fn seeds() -> Vec<Event> {
    let event = |i: usize, payload| Event {
        time_unix_ns: 1_700_000_000_000_000_000,
        host: "claimed-by-the-agent".into(),
        seq: 7,
        process: Some(process(i)),
        container: Some(Container {
            id: "c".repeat(64),
            runtime: "containerd".into(),
            name: hostile(i),
            image: hostile(i + 1),
            pod_name: hostile(i + 2),
            pod_namespace: hostile(i + 3),
            pod_uid: hostile(i + 4),
            ..Container::default()
        }),
        payload: Some(payload),
        ..Event::default()
    };
    vec![
        event(
            0,
            Payload::Exec(ExecEvent {
                ancestors: ancestors(5),
                ..ExecEvent::default()
            }),
        ),
        event(
            1,
            Payload::File(FileEvent {
                path: hostile(7),
                target_path: hostile(8),
                syscall: "renameat2".into(),
                ..FileEvent::default()
            }),
        ),
        event(
            2,
            Payload::Network(NetworkEvent {
                remote_ip: "203.0.113.9".into(),
                remote_port: 4444,
                remote_hostname: hostile(3),
                dns: Some(DnsAnswer {
                    query: hostile(4),
                    answers: (0..3).map(hostile).collect(),
                    ..DnsAnswer::default()
                }),
                ..NetworkEvent::default()
            }),
        ),
        event(3, Payload::Signal(SignalEvent::default())),
    ]
}

/// Flips, inserts, deletes and repeats bytes of `bytes`, a few times; bytes flipped or
/// inserted stay ASCII, so that most mutations still decode and reach the alert path.
fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..3) {
        if bytes.is_empty() {
            bytes.push(rng.u8(..0x80));
            continue;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..4) {
            0 => bytes[at] ^= 1 << rng.u8(..7),
            1 => bytes.insert(at, rng.u8(..0x80)),
            2 => {
                bytes.remove(at);
            }
            _ => {
                let end = rng.usize(at..=bytes.len().min(at + 64));
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
        }
    }
}

#[test]
fn mutated_events_are_refused_or_delivered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut path = AlertRecordPath::open(dir.path());
    let mut rng = fastrand::Rng::with_seed(0x006b_6573_7472_656c);
    let seeds: Vec<Vec<u8>> = seeds().iter().map(Message::encode_to_vec).collect();
    let (mut delivered, mut refused, mut undecodable) = (0, 0, 0);
    for round in 0..6_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        mutate(&mut rng, &mut bytes);
        // Bytes that are not an Event never get past the gRPC decoder.
        let Ok(event) = Event::decode(bytes.as_slice()) else {
            undecodable += 1;
            continue;
        };
        match path.run("web-1", event) {
            Ok(Outcome::Delivered) => delivered += 1,
            Ok(Outcome::Refused) => refused += 1,
            Err(step) => panic!("round {round}: {step}\nbytes: {bytes:?}"),
        }
    }
    // Not a vacuous run: most mutations still decode and go the whole way.
    eprintln!("{delivered} delivered, {refused} refused, {undecodable} undecodable");
    assert!(delivered > 500, "only {delivered} delivered");
    assert!(
        undecodable > 200,
        "only {undecodable} undecodable: mutations too timid"
    );
}

#[test]
fn seeds_are_delivered_and_worst_cases_at_the_limits_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut path = AlertRecordPath::open(dir.path());
    for seed in seeds() {
        assert_eq!(path.run("web-1", seed), Ok(Outcome::Delivered));
    }
    // Every list and string at its ingress limit at once.
    let limits = kestrel_proto::limits::ANCESTORS.max;
    let mut worst = seeds().remove(0);
    let process = worst.process.as_mut().unwrap();
    process.argv = (0..kestrel_proto::limits::ARGV_ENTRIES.max)
        .map(|i| hostile(i).repeat(2))
        .collect();
    process.exe = "\n".repeat(kestrel_proto::limits::PATH_BYTES.max);
    let Some(Payload::Exec(exec)) = &mut worst.payload else {
        unreachable!()
    };
    exec.ancestors = ancestors(limits);
    assert_eq!(path.run("web-1", worst.clone()), Ok(Outcome::Delivered));
    // One past a limit is refused, never stored.
    let Some(Payload::Exec(exec)) = &mut worst.payload else {
        unreachable!()
    };
    exec.ancestors = ancestors(limits + 1);
    assert_eq!(path.run("web-1", worst), Ok(Outcome::Refused));
}
