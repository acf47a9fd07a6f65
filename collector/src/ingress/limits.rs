//! What one agent may send and hold: every size, count and time the collector bounds at its
//! doors, in one place.
//!
//! The operator-tunable limits (message size, events per batch, connections, timeouts) are
//! [`IngressLimits`], set from the `[ingress]` table of the configuration file. The limits on
//! the fields inside a message are the constants of [`FIELD_LIMITS`] (kept with the protocol in
//! `kestrel_proto::limits`): generous multiples of what the agent ever sends, so only a broken or
//! hostile peer meets them. The repeated fields among them are counted in the encoded message
//! before it is decoded (`kestrel_proto::codec`); [`check_message`] walks the decoded
//! `AgentMessage` against all of them and names the first field over its limit.
//!
//! A peer over a limit is refused with a gRPC status that names the limit and the value, the
//! refusal is logged by the caller with identity and peer address, and counted here by limit
//! ([`refused`], shown on `/metrics` as `kestrel_collector_ingress_refused_total`).

use std::time::Duration;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::event::Payload;
use kestrel_proto::{AgentMessage, Ancestor, Event, Hello, Process};
use tonic::Status;

use crate::metrics::figures::figures;

/// Limits an operator may tune (`[ingress]` in the configuration file); the defaults are safe.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressLimits {
    /// Largest decoded `AgentMessage`, in bytes.
    pub max_message_bytes: usize,
    /// Most events in one `EventBatch` (the agent sends at most 512).
    pub max_batch_events: usize,
    /// Events of one identity submitted to the store writer and not yet committed; its streams
    /// wait beyond that, so one agent cannot fill the writer's queue.
    pub max_events_in_flight_per_agent: usize,
    /// Concurrent HTTP/2 streams on one connection (an agent needs one).
    pub max_streams_per_connection: u32,
    /// Authenticated connections of one identity at a time.
    pub max_connections_per_agent: usize,
    /// Authenticated connections at a time, from all agents.
    pub max_connections: usize,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_address: usize,
    /// TLS handshakes in progress, from everyone.
    pub max_handshakes: usize,
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a stream may take to send its Hello.
    pub hello_timeout: Duration,
    /// A stream that sends nothing (no batch, no heartbeat) for this many of its heartbeat
    /// intervals is closed.
    pub idle_heartbeats: u32,
    /// A connection without any stream for this long is closed.
    pub idle_connection_timeout: Duration,
}

impl Default for IngressLimits {
    fn default() -> IngressLimits {
        IngressLimits {
            max_message_bytes: 4 * 1024 * 1024,
            max_batch_events: 2048,
            max_events_in_flight_per_agent: 16 * 1024,
            max_streams_per_connection: 2,
            max_connections_per_agent: 4,
            max_connections: 4096,
            max_handshakes_per_address: 64,
            max_handshakes: 1024,
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            idle_heartbeats: 3,
            idle_connection_timeout: Duration::from_secs(60),
        }
    }
}

/// Heartbeat interval assumed when the Hello does not state one (the agent's default).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest and longest heartbeat interval a Hello may claim for idle detection: a peer
/// cannot keep an idle stream open for hours by claiming a long interval.
pub const HEARTBEAT_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));

impl IngressLimits {
    /// How long a stream whose Hello claimed `heartbeat_interval_ms` may stay silent.
    pub fn idle_after(&self, heartbeat_interval_ms: u64) -> Duration {
        let (low, high) = HEARTBEAT_INTERVAL_BOUNDS;
        let interval = match heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            ms => Duration::from_millis(ms).clamp(low, high),
        };
        interval * self.idle_heartbeats.max(1)
    }
}

pub use kestrel_proto::limits::{
    FieldLimit, ANCESTORS, ARGV_ENTRIES, BATCH_EVENTS_CEILING, DNS_ANSWERS, FIELD_LIMITS, HOOKS,
    NAME_BYTES, PATH_BYTES, POD_LABELS, TEXT_BYTES,
};

/// Limit names of the refusal counter, beyond the field limits.
pub const MESSAGE_BYTES: &str = "message_bytes";
/// Events per batch.
pub const BATCH_EVENTS: &str = BATCH_EVENTS_CEILING.name;
/// Connections of one identity.
pub const CONNECTIONS_PER_AGENT: &str = "connections_per_agent";
/// Connections in total.
pub const CONNECTIONS: &str = "connections";
/// Handshakes from one address.
pub const HANDSHAKES_PER_ADDRESS: &str = "handshakes_per_address";
/// Handshakes in total.
pub const HANDSHAKES: &str = "handshakes";
/// Hello timeout.
pub const HELLO_TIMEOUT: &str = "hello_timeout";
/// Idle stream.
pub const IDLE_STREAM: &str = "idle_stream";
/// Idle connection.
pub const IDLE_CONNECTION: &str = "idle_connection";

/// Every limit the refusal counter is labelled with.
pub const COUNTED: [&str; 16] = [
    ANCESTORS.name,
    ARGV_ENTRIES.name,
    PATH_BYTES.name,
    TEXT_BYTES.name,
    NAME_BYTES.name,
    DNS_ANSWERS.name,
    HOOKS.name,
    MESSAGE_BYTES,
    BATCH_EVENTS,
    CONNECTIONS_PER_AGENT,
    CONNECTIONS,
    HANDSHAKES_PER_ADDRESS,
    HANDSHAKES,
    HELLO_TIMEOUT,
    IDLE_STREAM,
    IDLE_CONNECTION,
];

/// Counts one refusal by `limit` (one of [`COUNTED`]; other names are not counted).
pub fn refused(limit: &str) {
    if let Some(limit) = COUNTED.iter().find(|c| **c == limit) {
        figures()
            .ingress_refused
            .get_or_create(&[("limit", *limit)])
            .inc();
    }
}

/// Refusals by `limit` since the collector started.
pub fn refusals(limit: &str) -> u64 {
    COUNTED
        .iter()
        .find(|c| **c == limit)
        .and_then(|limit| {
            figures()
                .ingress_refused
                .get(&[("limit", *limit)])
                .map(|c| c.get())
        })
        .unwrap_or(0)
}

/// Counts a decoding failure that is a refusal by the wire check of `kestrel_proto::codec`
/// (a status naming one of the repeated fields counted before decoding).
pub fn count_wire_refusal(status: &Status) {
    if status.code() != tonic::Code::ResourceExhausted {
        return;
    }
    let counted = kestrel_proto::limits::COUNTED_ON_THE_WIRE
        .iter()
        .find(|r| status.message().starts_with(&format!("{} has ", r.field)));
    if let Some(repeated) = counted {
        refused(repeated.limit.name);
    }
}

/// A message over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject} has {value} {unit}; the limit is {max}")]
pub struct OverLimit {
    /// The limit's name (metrics label).
    pub limit: &'static str,
    /// Where in the message: `batch`, `event 3 (seq 103): process.argv[1]`.
    pub subject: String,
    /// What was found.
    pub value: usize,
    /// What is counted.
    pub unit: &'static str,
    /// The limit.
    pub max: usize,
}

impl OverLimit {
    /// The status the peer is refused with: `RESOURCE_EXHAUSTED` naming limit and value.
    pub fn status(&self) -> Status {
        Status::resource_exhausted(self.to_string())
    }
}

/// Checks a decoded message against the batch and field limits; the first field over its
/// limit is the error.
pub fn check_message(msg: &AgentMessage, limits: &IngressLimits) -> Result<(), OverLimit> {
    match &msg.msg {
        Some(Msg::Hello(hello)) => check_hello(hello),
        Some(Msg::Batch(batch)) => {
            if batch.events.len() > limits.max_batch_events {
                return Err(OverLimit {
                    limit: BATCH_EVENTS,
                    subject: "batch".into(),
                    value: batch.events.len(),
                    unit: "events",
                    max: limits.max_batch_events,
                });
            }
            for (i, event) in batch.events.iter().enumerate() {
                let seq = batch.first_seq.wrapping_add(i as u64);
                check_event(event).map_err(|mut e| {
                    e.subject = format!("event {i} (seq {seq}): {}", e.subject);
                    e
                })?;
            }
            Ok(())
        }
        Some(Msg::Gap(gap)) => {
            let mut c = Checker;
            c.text("gap.kind", &gap.kind, NAME_BYTES)?;
            c.text("gap.reason", &gap.reason, NAME_BYTES)
        }
        Some(Msg::Heartbeat(_)) | None => Ok(()),
    }
}

/// Checks a Hello's strings and hook list.
pub fn check_hello(hello: &Hello) -> Result<(), OverLimit> {
    let mut c = Checker;
    c.text("hello.agent_version", &hello.agent_version, NAME_BYTES)?;
    c.text("hello.hostname", &hello.hostname, NAME_BYTES)?;
    if let Some(caps) = &hello.capabilities {
        c.text(
            "hello.capabilities.kernel_release",
            &caps.kernel_release,
            NAME_BYTES,
        )?;
        c.count("hello.capabilities.hooks", caps.hooks.len(), HOOKS)?;
        for (i, hook) in caps.hooks.iter().enumerate() {
            c.text_at(
                "hello.capabilities.hooks",
                i,
                "name",
                &hook.name,
                NAME_BYTES,
            )?;
            c.text_at(
                "hello.capabilities.hooks",
                i,
                "error",
                &hook.error,
                TEXT_BYTES,
            )?;
        }
    }
    Ok(())
}

/// Checks one event's strings and lists.
pub fn check_event(event: &Event) -> Result<(), OverLimit> {
    let mut c = Checker;
    c.text("host", &event.host, NAME_BYTES)?;
    if let Some(process) = &event.process {
        c.process(process)?;
    }
    if let Some(k) = &event.container {
        for (field, value) in [
            ("container.id", &k.id),
            ("container.runtime", &k.runtime),
            ("container.name", &k.name),
            ("container.image", &k.image),
            ("container.pod_name", &k.pod_name),
            ("container.pod_namespace", &k.pod_namespace),
            ("container.pod_uid", &k.pod_uid),
            ("container.workload_kind", &k.workload_kind),
            ("container.workload_name", &k.workload_name),
            ("container.service_account", &k.service_account),
            ("container.node_name", &k.node_name),
        ] {
            c.text(field, value, NAME_BYTES)?;
        }
        c.count("container.pod_labels", k.pod_labels.len(), POD_LABELS)?;
        for (key, value) in &k.pod_labels {
            c.text("container.pod_labels key", key, NAME_BYTES)?;
            c.text("container.pod_labels value", value, NAME_BYTES)?;
        }
    }
    let Some(payload) = &event.payload else {
        return Ok(());
    };
    match payload {
        Payload::Exec(exec) => {
            c.count("exec.ancestors", exec.ancestors.len(), ANCESTORS)?;
            for (i, ancestor) in exec.ancestors.iter().enumerate() {
                c.ancestor(i, ancestor)?;
            }
            Ok(())
        }
        Payload::File(f) => {
            c.text("file.path", &f.path, PATH_BYTES)?;
            c.text("file.target_path", &f.target_path, PATH_BYTES)?;
            c.text("file.fs_type", &f.fs_type, NAME_BYTES)?;
            c.text("file.syscall", &f.syscall, NAME_BYTES)
        }
        Payload::Network(n) => {
            c.text("network.local_ip", &n.local_ip, NAME_BYTES)?;
            c.text("network.remote_ip", &n.remote_ip, NAME_BYTES)?;
            c.text("network.remote_hostname", &n.remote_hostname, NAME_BYTES)?;
            if let Some(dns) = &n.dns {
                c.text("network.dns.query", &dns.query, NAME_BYTES)?;
                c.count("network.dns.answers", dns.answers.len(), DNS_ANSWERS)?;
                for (i, answer) in dns.answers.iter().enumerate() {
                    c.text(&format!("network.dns.answers[{i}]"), answer, NAME_BYTES)?;
                }
            }
            Ok(())
        }
        Payload::Credential(e) => c.text("credential.syscall", &e.syscall, NAME_BYTES),
        Payload::Ptrace(e) => {
            c.text("ptrace.syscall", &e.syscall, NAME_BYTES)?;
            c.text("ptrace.target_exe", &e.target_exe, PATH_BYTES)?;
            c.argv("ptrace.target_argv", &e.target_argv)
        }
        Payload::Signal(e) => {
            c.text("signal.syscall", &e.syscall, NAME_BYTES)?;
            c.text("signal.target_exe", &e.target_exe, PATH_BYTES)?;
            c.argv("signal.target_argv", &e.target_argv)
        }
        Payload::Module(e) => {
            c.text("module.syscall", &e.syscall, NAME_BYTES)?;
            c.text("module.path", &e.path, PATH_BYTES)?;
            c.text("module.params", &e.params, TEXT_BYTES)
        }
        Payload::Bpf(e) => c.text("bpf.prog_name", &e.prog_name, NAME_BYTES),
        Payload::Memfd(e) => c.text("memfd.name", &e.name, NAME_BYTES),
        Payload::Namespace(e) => c.text("namespace.syscall", &e.syscall, NAME_BYTES),
        Payload::IoUring(e) => c.text("io_uring.op", &e.op, NAME_BYTES),
        Payload::ProcessRename(e) => c.text("process_rename.name", &e.name, NAME_BYTES),
        Payload::Fork(_) | Payload::Exit(_) => Ok(()),
    }
}

/// Walks fields, naming the first one over its limit.
struct Checker;

impl Checker {
    fn over(subject: String, value: usize, limit: FieldLimit) -> OverLimit {
        OverLimit {
            limit: limit.name,
            subject,
            value,
            unit: limit.unit,
            max: limit.max,
        }
    }

    fn count(&mut self, field: &str, len: usize, limit: FieldLimit) -> Result<(), OverLimit> {
        if len > limit.max {
            return Err(Self::over(field.to_owned(), len, limit));
        }
        Ok(())
    }

    fn text(&mut self, field: &str, value: &str, limit: FieldLimit) -> Result<(), OverLimit> {
        if value.len() > limit.max {
            return Err(Self::over(field.to_owned(), value.len(), limit));
        }
        Ok(())
    }

    fn text_at(
        &mut self,
        list: &str,
        i: usize,
        field: &str,
        value: &str,
        limit: FieldLimit,
    ) -> Result<(), OverLimit> {
        if value.len() > limit.max {
            return Err(Self::over(
                format!("{list}[{i}].{field}"),
                value.len(),
                limit,
            ));
        }
        Ok(())
    }

    fn argv(&mut self, field: &str, argv: &[String]) -> Result<(), OverLimit> {
        self.count(field, argv.len(), ARGV_ENTRIES)?;
        for (i, arg) in argv.iter().enumerate() {
            if arg.len() > TEXT_BYTES.max {
                return Err(Self::over(format!("{field}[{i}]"), arg.len(), TEXT_BYTES));
            }
        }
        Ok(())
    }

    fn process(&mut self, p: &Process) -> Result<(), OverLimit> {
        self.text("process.exe", &p.exe, PATH_BYTES)?;
        self.text("process.cwd", &p.cwd, PATH_BYTES)?;
        for (field, value) in [
            ("process.user", &p.user),
            ("process.comm", &p.comm),
            ("process.exec_id", &p.exec_id),
            ("process.parent_exec_id", &p.parent_exec_id),
            ("process.container_id", &p.container_id),
            ("process.tty", &p.tty),
        ] {
            self.text(field, value, NAME_BYTES)?;
        }
        self.argv("process.argv", &p.argv)
    }

    fn ancestor(&mut self, i: usize, a: &Ancestor) -> Result<(), OverLimit> {
        let list = "exec.ancestors";
        self.text_at(list, i, "exe", &a.exe, PATH_BYTES)?;
        self.text_at(list, i, "user", &a.user, NAME_BYTES)?;
        self.text_at(list, i, "exec_id", &a.exec_id, NAME_BYTES)?;
        self.argv(&format!("{list}[{i}].argv"), &a.argv)
    }
}

#[cfg(test)]
mod tests {
    use kestrel_proto::{EventBatch, ExecEvent};

    use super::*;

    fn batch(events: Vec<Event>) -> AgentMessage {
        AgentMessage {
            msg: Some(Msg::Batch(EventBatch {
                first_seq: 100,
                events,
            })),
        }
    }

    fn exec_with_ancestors(n: usize) -> Event {
        Event {
            payload: Some(Payload::Exec(ExecEvent {
                ancestors: vec![Ancestor::default(); n],
                ..ExecEvent::default()
            })),
            ..Event::default()
        }
    }

    #[test]
    fn batch_over_the_event_limit_names_count_and_limit() {
        let limits = IngressLimits::default();
        let err = check_message(&batch(vec![Event::default(); 5000]), &limits).unwrap_err();
        assert_eq!(err.to_string(), "batch has 5000 events; the limit is 2048");
        assert_eq!(err.status().code(), tonic::Code::ResourceExhausted);
        assert!(check_message(&batch(vec![Event::default(); 2048]), &limits).is_ok());
    }

    #[test]
    fn deep_ancestry_is_refused_at_the_ancestor_limit() {
        let limits = IngressLimits::default();
        let events = vec![exec_with_ancestors(16), exec_with_ancestors(4000)];
        let err = check_message(&batch(events), &limits).unwrap_err();
        assert_eq!(err.limit, "ancestors");
        assert_eq!(
            err.to_string(),
            "event 1 (seq 101): exec.ancestors has 4000 ancestors; the limit is 64"
        );
    }

    #[test]
    fn long_strings_anywhere_are_refused_naming_the_field() {
        let mut event = exec_with_ancestors(2);
        if let Some(Payload::Exec(exec)) = &mut event.payload {
            exec.ancestors[1].argv = vec!["a".into(), "x".repeat(5000)];
        }
        let err = check_event(&event).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec.ancestors[1].argv[1] has 5000 bytes; the limit is 4096"
        );
        let hello = Hello {
            hostname: "h".repeat(600),
            ..Hello::default()
        };
        assert_eq!(check_hello(&hello).unwrap_err().limit, "name_bytes");
    }

    #[test]
    fn pod_labels_are_bounded_in_number_and_in_bytes() {
        let labelled = |labels: Vec<(String, String)>| Event {
            container: Some(kestrel_proto::Container {
                pod_labels: labels.into_iter().collect(),
                ..kestrel_proto::Container::default()
            }),
            ..Event::default()
        };
        let many = (0..200).map(|i| (format!("k{i}"), "v".into())).collect();
        let err = check_event(&labelled(many)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container.pod_labels has 200 labels; the limit is 128"
        );
        let long = vec![("app".into(), "x".repeat(600))];
        let err = check_event(&labelled(long)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container.pod_labels value has 600 bytes; the limit is 512"
        );
        let fine = vec![("app.kubernetes.io/name".into(), "web".into())];
        assert!(check_event(&labelled(fine)).is_ok());
    }

    #[test]
    fn idle_time_follows_the_claimed_heartbeat_within_bounds() {
        let limits = IngressLimits::default();
        assert_eq!(limits.idle_after(0), Duration::from_secs(30));
        assert_eq!(limits.idle_after(500), Duration::from_millis(1500));
        assert_eq!(limits.idle_after(u64::MAX), Duration::from_secs(900));
    }

    #[test]
    fn refusals_are_counted_by_limit_and_exposed() {
        let before = refusals(BATCH_EVENTS);
        refused(BATCH_EVENTS);
        assert_eq!(refusals(BATCH_EVENTS), before + 1);
        let mut registry = prometheus_client::registry::Registry::default();
        figures().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("kestrel_collector_ingress_refused_total{limit=\"batch_events\"}"));
        // Every limit is shown, refused or not, so a rate over it starts at 0.
        assert!(text.contains("kestrel_collector_ingress_refused_total{limit=\"idle_connection\"}"));
    }
}
