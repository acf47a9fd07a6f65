//! What one message may hold: the bound on every repeated and string field, in one table.
//!
//! The collector refuses a message over any of them (`RESOURCE_EXHAUSTED`, naming the field). The
//! repeated fields whose every element costs a whole struct when decoded also carry their place
//! in the encoding ([`Repeated`]), so [`crate::codec`] counts them on the wire and refuses the
//! message before decoding it: half a million empty events in one 1 MiB message would otherwise
//! take hundreds of MiB to decode only to be refused.

/// One bound on the fields of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimit {
    /// Name in logs and metrics.
    pub name: &'static str,
    /// What is counted, plural (`bytes`, `ancestors`).
    pub unit: &'static str,
    /// The most allowed.
    pub max: usize,
}

/// A repeated field counted in the encoded message: the field numbers of the messages leading
/// to it from `AgentMessage`, and its own number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated {
    /// The field, as messages name it (`exec.ancestors`).
    pub field: &'static str,
    /// Field numbers from `AgentMessage` down to the message holding the repeated field.
    pub path: &'static [u32],
    /// The repeated field's number in that message.
    pub number: u32,
    /// Its bound (per message holding it).
    pub limit: FieldLimit,
}

/// Process ancestors of one exec event (the agent sends at most 16).
pub const ANCESTORS: FieldLimit = FieldLimit {
    name: "ancestors",
    unit: "ancestors",
    max: 64,
};
/// Arguments of one argv (the kernel record holds 1 KiB of them).
pub const ARGV_ENTRIES: FieldLimit = FieldLimit {
    name: "argv_entries",
    unit: "arguments",
    max: 1024,
};
/// Bytes of one path (PATH_MAX).
pub const PATH_BYTES: FieldLimit = FieldLimit {
    name: "path_bytes",
    unit: "bytes",
    max: 4096,
};
/// Bytes of one argument, module parameter string or hook error: free text.
pub const TEXT_BYTES: FieldLimit = FieldLimit {
    name: "text_bytes",
    unit: "bytes",
    max: 4096,
};
/// Bytes of one name or identifier (user, comm, syscall, exec id, container, version, …).
pub const NAME_BYTES: FieldLimit = FieldLimit {
    name: "name_bytes",
    unit: "bytes",
    max: 512,
};
/// Answers of one DNS answer event.
pub const DNS_ANSWERS: FieldLimit = FieldLimit {
    name: "dns_answers",
    unit: "answers",
    max: 64,
};
/// Hooks listed in one Hello.
pub const HOOKS: FieldLimit = FieldLimit {
    name: "hooks",
    unit: "hooks",
    max: 1024,
};
/// Labels of one pod in a container's context (the agent keeps at most
/// `[kubernetes] max_labels_per_pod`, itself at most this).
pub const POD_LABELS: FieldLimit = FieldLimit {
    name: "pod_labels",
    unit: "labels",
    max: 128,
};
/// Events of one batch: the most an operator may allow (`[ingress] max_batch_events` is at most
/// this, and the configured value is checked once the batch is decoded).
pub const BATCH_EVENTS_CEILING: FieldLimit = FieldLimit {
    name: "batch_events",
    unit: "events",
    max: 16_384,
};

/// Every field limit, for documentation and tests.
pub const FIELD_LIMITS: [FieldLimit; 8] = [
    ANCESTORS,
    ARGV_ENTRIES,
    PATH_BYTES,
    TEXT_BYTES,
    NAME_BYTES,
    DNS_ANSWERS,
    HOOKS,
    POD_LABELS,
];

// Field numbers of kestrel.proto along the counted paths.
const HELLO: u32 = 1;
const BATCH: u32 = 2;
const CAPABILITIES: u32 = 3;
const EVENTS: u32 = 2;
const PROCESS: u32 = 4;
const CONTAINER: u32 = 5;
const EXEC: u32 = 10;
const NETWORK: u32 = 14;
const DNS: u32 = 11;
const PTRACE: u32 = 16;
const SIGNAL: u32 = 17;

/// The repeated fields counted before decoding.
pub const COUNTED_ON_THE_WIRE: [Repeated; 9] = [
    Repeated {
        field: "batch.events",
        path: &[BATCH],
        number: EVENTS,
        limit: BATCH_EVENTS_CEILING,
    },
    Repeated {
        field: "hello.capabilities.hooks",
        path: &[HELLO, CAPABILITIES],
        number: 4,
        limit: HOOKS,
    },
    Repeated {
        field: "process.argv",
        path: &[BATCH, EVENTS, PROCESS],
        number: 9,
        limit: ARGV_ENTRIES,
    },
    Repeated {
        field: "exec.ancestors",
        path: &[BATCH, EVENTS, EXEC],
        number: 1,
        limit: ANCESTORS,
    },
    Repeated {
        field: "exec.ancestors.argv",
        path: &[BATCH, EVENTS, EXEC, 1],
        number: 3,
        limit: ARGV_ENTRIES,
    },
    Repeated {
        field: "network.dns.answers",
        path: &[BATCH, EVENTS, NETWORK, DNS],
        number: 4,
        limit: DNS_ANSWERS,
    },
    Repeated {
        field: "ptrace.target_argv",
        path: &[BATCH, EVENTS, PTRACE],
        number: 6,
        limit: ARGV_ENTRIES,
    },
    Repeated {
        field: "signal.target_argv",
        path: &[BATCH, EVENTS, SIGNAL],
        number: 6,
        limit: ARGV_ENTRIES,
    },
    // A map is a repeated entry message on the wire.
    Repeated {
        field: "container.pod_labels",
        path: &[BATCH, EVENTS, CONTAINER],
        number: 8,
        limit: POD_LABELS,
    },
];
