//! The one mapping table from Sigma field names to event data ([`FIELDS`]), and the per-event
//! field values that every rule reads (computed once per event into reused buffers).
//!
//! Names follow Sigma and Sysmon for Linux (`Image`, `CommandLine`, `TargetFilename`,
//! `DestinationIp`, …); Kestrel's own fields for the event kinds Sysmon does not have use the same
//! style. Each field says in which categories it exists: a rule reading a field its category
//! does not produce is rejected at load, never silently accepted as matching nothing.

use std::fmt::Write as _;

use kestrel_proto::event::Payload;
use kestrel_proto::{
    Ancestor, Credentials, Event, ExecEvent, FileEvent, FileOp, NetworkEvent, NetworkOp, Process,
};

use super::logsource::{Category, CategorySet};

/// What kind of values a field holds, which decides the modifiers that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// Free text.
    Text,
    /// A decimal integer (`lt`/`lte`/`gt`/`gte` apply).
    Number,
    /// An IPv4 or IPv6 address (`cidr` applies).
    Ip,
    /// `true` or `false`.
    Bool,
    /// A time, `YYYY-MM-DD HH:MM:SS.fff` UTC (the time modifiers apply).
    Time,
}

macro_rules! fields {
    ($( $(#[doc = $doc:literal])* $var:ident: [$($name:literal),+], $kind:ident, $cats:expr; )+) => {
        /// A field Kestrel can evaluate. The variant order is the order of [`FIELDS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub(crate) enum Field {
            $( $(#[doc = $doc])* $var, )+
        }

        /// Every field: its Sigma names (the first is canonical), kind and categories.
        pub(crate) const FIELDS: &[FieldDef] = &[
            $( FieldDef { field: Field::$var, names: &[$($name),+], kind: FieldKind::$kind, categories: $cats }, )+
        ];
    };
}

/// One row of the mapping table.
#[derive(Debug)]
pub(crate) struct FieldDef {
    /// The field.
    pub(crate) field: Field,
    /// Sigma names, canonical first (others are aliases, e.g. Sysmon's `ProcessGuid`).
    pub(crate) names: &'static [&'static str],
    /// Value kind.
    pub(crate) kind: FieldKind,
    /// Categories whose events carry the field.
    pub(crate) categories: CategorySet,
}

const ALL: CategorySet = CategorySet::ALL;
const EXEC: CategorySet = Category::ProcessCreation.bit();
const EXIT: CategorySet = Category::ProcessTermination.bit();
const FILE: CategorySet = Category::FileEvent
    .bit()
    .or(Category::FileChange.bit())
    .or(Category::FileDelete.bit())
    .or(Category::FileRename.bit())
    .or(Category::FileAccess.bit())
    .or(Category::FileLink.bit())
    .or(Category::Mount.bit());
const FILE_TWO_PATHS: CategorySet = Category::FileEvent
    .bit()
    .or(Category::FileRename.bit())
    .or(Category::FileLink.bit())
    .or(Category::Mount.bit());
const NET: CategorySet = Category::NetworkConnection
    .bit()
    .or(Category::NetworkListen.bit())
    .or(Category::PacketSocket.bit());
const DNS: CategorySet = Category::DnsQuery.bit();
const CRED: CategorySet = Category::CredentialChange.bit();
const PTRACE: CategorySet = Category::ProcessAccess.bit();
const SIGNAL: CategorySet = Category::ProcessSignal.bit();
const TARGET_PROCESS: CategorySet = PTRACE.or(SIGNAL);
const MODULE: CategorySet = Category::KernelModuleLoad.bit();
const BPF: CategorySet = Category::BpfProgramLoad.bit();
const MEMFD: CategorySet = Category::MemfdCreate.bit();
const NS: CategorySet = Category::NamespaceChange.bit();
const URING: CategorySet = Category::IoUring.bit();
const SYSCALL: CategorySet = FILE.or(CRED).or(PTRACE).or(SIGNAL).or(MODULE).or(NS);
const RESULT: CategorySet = FILE
    .or(NET)
    .or(CRED)
    .or(PTRACE)
    .or(SIGNAL)
    .or(MODULE)
    .or(BPF)
    .or(MEMFD)
    .or(NS)
    .or(URING);

fields! {
    // Process context: every event.
    /// `process.exe`.
    Image: ["Image"], Text, ALL;
    /// `process.argv` joined by single spaces.
    CommandLine: ["CommandLine"], Text, ALL;
    /// `process.user` (user name of the real uid).
    User: ["User"], Text, ALL;
    /// `process.uid`.
    UserId: ["UserId"], Number, ALL;
    /// `process.euid`.
    EffectiveUserId: ["EffectiveUserId"], Number, ALL;
    /// `process.gid`.
    GroupId: ["GroupId"], Number, ALL;
    /// `process.comm` (kernel task name, at most 15 bytes).
    ProcessName: ["ProcessName", "Comm"], Text, ALL;
    /// `process.cwd`.
    CurrentDirectory: ["CurrentDirectory"], Text, ALL;
    /// `process.tty`: the controlling terminal (`pts/3`); absent when there is none.
    Terminal: ["Terminal"], Text, ALL;
    /// `process.tgid`.
    ProcessId: ["ProcessId"], Number, ALL;
    /// `process.ppid`.
    ParentProcessId: ["ParentProcessId"], Number, ALL;
    /// `process.exec_id`: unique per execution on its host.
    ExecId: ["ExecId", "ProcessGuid"], Text, ALL;
    /// `process.parent_exec_id`.
    ParentExecId: ["ParentExecId", "ParentProcessGuid"], Text, ALL;
    /// The exec id of the process's session root (see `sessions`); absent when unknown.
    SessionExecId: ["SessionExecId"], Text, ALL;
    /// `event.host`: the agent's certificate identity.
    Host: ["Host", "Computer"], Text, ALL;
    /// `event.time_unix_ns` as `YYYY-MM-DD HH:MM:SS.fff` (UTC).
    UtcTime: ["UtcTime"], Time, ALL;
    /// `container.id`; absent outside containers.
    ContainerId: ["ContainerId"], Text, ALL;
    /// `container.name`.
    ContainerName: ["ContainerName"], Text, ALL;
    /// `container.image`.
    ContainerImage: ["ContainerImage"], Text, ALL;
    /// `container.runtime` (docker, containerd, cri-o, podman).
    ContainerRuntime: ["ContainerRuntime"], Text, ALL;
    /// `container.pod_name`.
    PodName: ["PodName"], Text, ALL;
    /// `container.pod_namespace`.
    PodNamespace: ["PodNamespace"], Text, ALL;
    /// The payload's `syscall`.
    Syscall: ["Syscall"], Text, SYSCALL;
    /// The payload's `result` (syscall return value, negative errno on failure).
    Result: ["Result"], Number, RESULT;

    // process_creation.
    /// `exec.ancestors[0].exe`.
    ParentImage: ["ParentImage"], Text, EXEC;
    /// `exec.ancestors[0].argv` joined by single spaces.
    ParentCommandLine: ["ParentCommandLine"], Text, EXEC;
    /// `exec.ancestors[0].user`.
    ParentUser: ["ParentUser"], Text, EXEC;
    /// `exec.ancestors[1].exe`.
    GrandparentImage: ["GrandparentImage"], Text, EXEC;
    /// `exec.ancestors[1].argv` joined by single spaces.
    GrandparentCommandLine: ["GrandparentCommandLine"], Text, EXEC;
    /// `exec.exe_deleted`: the executed file has no link left.
    ImageDeleted: ["ImageDeleted"], Bool, EXEC;
    /// `exec.exe_memfd`: the executed file is a memfd (fileless execution).
    ImageMemfd: ["ImageMemfd"], Bool, EXEC;
    /// `exec.exe_upper_layer`: the executed file is in a container's writable layer (written or
    /// changed since the container started: not part of its image).
    ImageUpperLayer: ["ImageUpperLayer"], Bool, EXEC;
    /// `exec.cap_effective` as capability names (`cap_sys_admin cap_net_raw …`).
    Capabilities: ["Capabilities"], Text, EXEC;

    // process_termination.
    /// `exit.code`.
    ExitCode: ["ExitCode"], Number, EXIT;
    /// `exit.signal` (0 when it exited normally).
    ExitSignal: ["ExitSignal"], Number, EXIT;
    /// `exit.core_dumped`.
    CoreDumped: ["CoreDumped"], Bool, EXIT;

    // File categories.
    /// The file created, written, changed or deleted: `file.path`, or `file.target_path` for
    /// a rename or hard link destination; for mount, the mount point.
    TargetFilename: ["TargetFilename"], Text, FILE;
    /// The other path: rename/link source, symlink target, mount source.
    SourceFilename: ["SourceFilename"], Text, FILE_TWO_PATHS;
    /// `file.op` as a word: open, read, rename, unlink, rmdir, chmod, chown, link, symlink,
    /// truncate, mount, umount, utimes.
    FileOperation: ["FileOperation"], Text, FILE;
    /// `file.mode` as 4 octal digits (`4755`); absent when the operation sets no mode.
    FileMode: ["FileMode"], Text, FILE;
    /// `file.mode` as words: setuid, setgid, sticky, executable, world_writable.
    FileModeFlags: ["FileModeFlags"], Text, FILE;
    /// `file.created` (open with O_CREAT that created the file).
    FileCreated: ["FileCreated"], Bool, FILE;
    /// `file.truncated`.
    FileTruncated: ["FileTruncated"], Bool, FILE;
    /// `file.flags` (open, mount or unlink flags).
    FileFlags: ["FileFlags"], Number, FILE;
    /// chown's new owner uid (absent when unchanged).
    OwnerUid: ["OwnerUid"], Number, FILE;
    /// chown's new group id (absent when unchanged).
    OwnerGid: ["OwnerGid"], Number, FILE;
    /// `file.fs_type` (mount).
    FsType: ["FsType"], Text, FILE;

    // Network categories.
    /// `network.initiated`: the process connected (or sent) rather than accepted.
    Initiated: ["Initiated"], Bool, NET;
    /// `network.local_ip`.
    SourceIp: ["SourceIp"], Ip, NET;
    /// `network.local_port`.
    SourcePort: ["SourcePort"], Number, NET;
    /// `network.remote_ip`.
    DestinationIp: ["DestinationIp"], Ip, NET;
    /// `network.remote_port`.
    DestinationPort: ["DestinationPort"], Number, NET;
    /// `network.protocol`: tcp, udp, or the number.
    Protocol: ["Protocol"], Text, NET;
    /// The local address is IPv6.
    SourceIsIpv6: ["SourceIsIpv6"], Bool, NET;
    /// The remote address is IPv6.
    DestinationIsIpv6: ["DestinationIsIpv6"], Bool, NET;
    /// `network.op` as a word: connect, accept, listen, bind, send, packet_socket.
    NetworkOperation: ["NetworkOperation"], Text, NET;
    /// `network.remote_hostname`: the name the remote address was resolved from, by a DNS
    /// answer the agent saw on this host; absent when none was seen.
    DestinationHostname: ["DestinationHostname"], Text, NET;

    // dns_query.
    /// `network.dns.query`: the name asked for.
    QueryName: ["QueryName"], Text, DNS;
    /// `network.dns.answers` joined by `;` (addresses and CNAME targets).
    QueryResults: ["QueryResults"], Text, DNS;
    /// `network.dns.rcode`: 0 when the name resolved, 3 when it does not exist.
    QueryStatus: ["QueryStatus"], Number, DNS;

    // credential_change.
    /// Real uid before the change.
    OldUserId: ["OldUserId"], Number, CRED;
    /// Real uid after the change.
    NewUserId: ["NewUserId"], Number, CRED;
    /// Effective uid before the change.
    OldEffectiveUserId: ["OldEffectiveUserId"], Number, CRED;
    /// Effective uid after the change.
    NewEffectiveUserId: ["NewEffectiveUserId"], Number, CRED;
    /// Real gid before the change.
    OldGroupId: ["OldGroupId"], Number, CRED;
    /// Real gid after the change.
    NewGroupId: ["NewGroupId"], Number, CRED;
    /// Effective capabilities after the change, as names.
    NewCapabilities: ["NewCapabilities"], Text, CRED;
    /// Effective capabilities gained by the change, as names.
    CapabilitiesGained: ["CapabilitiesGained"], Text, CRED;

    // process_access, process_signal.
    /// The pid acted on.
    TargetProcessId: ["TargetProcessId"], Number, TARGET_PROCESS;
    /// The ptrace request name (`PTRACE_ATTACH`, `PTRACE_POKETEXT`, …) or its number;
    /// `process_vm_writev` for that syscall.
    PtraceRequest: ["PtraceRequest"], Text, PTRACE;
    /// The signal number.
    Signal: ["Signal"], Number, SIGNAL;
    /// The signal name (`SIGKILL`, …).
    SignalName: ["SignalName"], Text, SIGNAL;

    // kernel_module_load.
    /// The module file (finit_module); absent for init_module from memory.
    ImageLoaded: ["ImageLoaded"], Text, MODULE;
    /// Module parameters.
    ModuleParameters: ["ModuleParameters"], Text, MODULE;

    // bpf_program_load.
    /// The bpf() command number.
    BpfCommand: ["BpfCommand"], Number, BPF;
    /// The program type number.
    BpfProgramType: ["BpfProgramType"], Number, BPF;
    /// The program name.
    BpfProgramName: ["BpfProgramName"], Text, BPF;

    // memfd_create.
    /// The memfd's name.
    MemfdName: ["MemfdName"], Text, MEMFD;
    /// memfd_create flags.
    MemfdFlags: ["MemfdFlags"], Number, MEMFD;

    // namespace_change.
    /// The namespaces changed, as words: mnt, pid, net, uts, ipc, user, cgroup, time (`any` for
    /// setns with nstype 0).
    NamespaceTypes: ["NamespaceTypes"], Text, NS;
    /// CLONE_NEW* flags or setns nstype.
    NamespaceFlags: ["NamespaceFlags"], Number, NS;

    // io_uring.
    /// `setup` or the operation submitted.
    IoUringOperation: ["IoUringOperation"], Text, URING;
    /// The io_uring opcode.
    IoUringOpcode: ["IoUringOpcode"], Number, URING;
    /// Ring entries (setup).
    IoUringEntries: ["IoUringEntries"], Number, URING;
}

/// Number of fields.
pub(crate) const FIELD_COUNT: usize = FIELDS.len();

/// Sysmon / Sigma taxonomy fields Kestrel's events do not carry, with the reason; rules using
/// them are rejected with it.
pub(crate) const NOT_PRODUCED: &[(&str, &str)] = &[
    (
        "LogonId",
        "events carry no login session id (group by SessionExecId instead)",
    ),
    (
        "LogonGuid",
        "events carry no login session id (group by SessionExecId instead)",
    ),
    ("TerminalSessionId", "events carry no terminal session id"),
    (
        "SourceHostname",
        "local addresses are not resolved to host names",
    ),
    (
        "DestinationPortName",
        "ports are not resolved to service names",
    ),
    ("SourcePortName", "ports are not resolved to service names"),
    ("Hashes", "executables are not hashed"),
    ("md5", "executables are not hashed"),
    ("sha1", "executables are not hashed"),
    ("sha256", "executables are not hashed"),
    ("Imphash", "executables are not hashed"),
    (
        "OriginalFileName",
        "Linux executables have no version resource",
    ),
    ("Product", "Linux executables have no version resource"),
    ("Company", "Linux executables have no version resource"),
    ("Description", "Linux executables have no version resource"),
    ("FileVersion", "Linux executables have no version resource"),
    (
        "IntegrityLevel",
        "Linux has no integrity levels (see EffectiveUserId, Capabilities)",
    ),
    (
        "EventID",
        "events are routed by logsource category, not event ids",
    ),
];

impl Field {
    /// Looks a Sigma field name (or alias) up in the mapping table; names are case-sensitive.
    pub(crate) fn from_name(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .find(|d| d.names.contains(&name))
            .map(|d| d.field)
    }

    /// The canonical Sigma name of this field.
    pub(crate) fn name(self) -> &'static str {
        self.def().names[0]
    }

    /// The field's row in [`FIELDS`].
    pub(crate) fn def(self) -> &'static FieldDef {
        &FIELDS[self.index()]
    }

    /// The field's value kind.
    pub(crate) fn kind(self) -> FieldKind {
        self.def().kind
    }

    /// Position in [`FIELDS`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// True when the field is derived from the process tree (values are only unique per host).
    pub(crate) fn is_exec_id(self) -> bool {
        matches!(
            self,
            Field::ExecId | Field::ParentExecId | Field::SessionExecId
        )
    }
}

/// One field value as seen by matchers: the original text and its lowercase form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Value<'v> {
    /// The value as recorded.
    pub(crate) raw: &'v str,
    /// `raw` lowercased (see [`lowercase_into`]), for case-insensitive matching.
    pub(crate) lower: &'v str,
}

/// Context the event alone does not carry, supplied by the detector.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventContext<'c> {
    /// The process's session root exec id, when the detector knows it.
    pub(crate) session: Option<&'c str>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Serial of the event these buffers hold, 0 for none.
    serial: u64,
    present: bool,
    raw: String,
    lower: String,
    /// `lower` is not filled because lowercasing does not change `raw`.
    lower_is_raw: bool,
}

/// Field values of the current event, in buffers reused from event to event so that filling
/// them allocates nothing once warmed up. Start an event with [`FieldValues::load`], compute
/// the fields rules read with [`FieldValues::fill`], then read them with [`FieldValues::get`].
#[derive(Debug)]
pub(crate) struct FieldValues {
    slots: Vec<Slot>,
    serial: u64,
}

impl Default for FieldValues {
    fn default() -> FieldValues {
        FieldValues {
            slots: (0..FIELD_COUNT).map(|_| Slot::default()).collect(),
            serial: 0,
        }
    }
}

impl FieldValues {
    /// Starts a new event: every value from the previous one becomes unset.
    pub(crate) fn load(&mut self) {
        self.serial += 1;
    }

    /// Computes `fields` of `event` that this event has not computed yet.
    pub(crate) fn fill(&mut self, event: &Event, ctx: &EventContext<'_>, fields: &[Field]) {
        // Most calls find every field already computed (each candidate rule fills its own):
        // only this check is inline, so that the setup `compute` needs is not paid per call.
        for &field in fields {
            if self.slots[field.index()].serial != self.serial {
                self.fill_one(field, event, ctx);
            }
        }
    }

    #[inline(never)]
    fn fill_one(&mut self, field: Field, event: &Event, ctx: &EventContext<'_>) {
        let slot = &mut self.slots[field.index()];
        slot.serial = self.serial;
        slot.raw.clear();
        slot.present = compute(field, event, ctx, &mut slot.raw);
        slot.lower_is_raw = !needs_lowercasing(&slot.raw);
        if !slot.lower_is_raw {
            slot.lower.clear();
            lowercase_into(&slot.raw, &mut slot.lower);
        }
    }

    /// The value of `field` for the current event, `None` when the event does not carry it (or
    /// it was not filled: callers fill every field their rules read).
    pub(crate) fn get(&self, field: Field) -> Option<Value<'_>> {
        let slot = &self.slots[field.index()];
        debug_assert!(
            slot.serial == self.serial,
            "field {} read but not filled",
            field.name()
        );
        if slot.serial != self.serial || !slot.present {
            return None;
        }
        let lower = if slot.lower_is_raw {
            &slot.raw
        } else {
            &slot.lower
        };
        Some(Value {
            raw: &slot.raw,
            lower,
        })
    }
}

/// The event as a flat JSON object of the Sigma fields it carries (numbers and booleans
/// typed), as rules see it: for debugging rules, exporting events to other Sigma tools, and the
/// benchmark against another engine.
pub fn sigma_json(
    event: &Event,
    session: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value as J;
    let categories = super::logsource::categories_of(event);
    let mut values = FieldValues::default();
    values.load();
    let fields: Vec<Field> = FIELDS
        .iter()
        .filter(|d| d.categories.0 & categories.0 != 0)
        .map(|d| d.field)
        .collect();
    values.fill(event, &EventContext { session }, &fields);
    let mut out = serde_json::Map::new();
    for field in fields {
        let Some(v) = values.get(field) else { continue };
        let json = match field.kind() {
            FieldKind::Number => v
                .raw
                .parse::<i64>()
                .map(J::from)
                .unwrap_or_else(|_| J::from(v.raw)),
            FieldKind::Bool => J::Bool(v.raw == "true"),
            _ => J::from(v.raw),
        };
        out.insert(field.name().to_string(), json);
    }
    out
}

/// Appends the lowercase form of `s` to `out`, one character at a time (the same mapping for
/// rule literals and event values, so case-insensitive comparison is consistent).
pub(crate) fn lowercase_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.extend(s.chars().flat_map(char::to_lowercase));
    }
}

/// `s` lowercased with [`lowercase_into`].
pub(crate) fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lowercase_into(s, &mut out);
    out
}

fn needs_lowercasing(s: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut high = 0;
    let mut upper = 0;
    // Eight bytes at a time: for ASCII bytes (high bit clear) adding 0x80 - b'A' sets the high
    // bit exactly for bytes >= b'A', adding 0x80 - b'Z' - 1 for bytes > b'Z', without carries
    // between bytes. Non-ASCII input is answered below character by character.
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        high |= x;
        upper |= x.wrapping_add(ONES * u64::from(0x80 - b'A'))
            & !x.wrapping_add(ONES * u64::from(0x80 - b'Z' - 1));
    }
    let mut tail_upper = false;
    for &b in chunks.remainder() {
        high |= u64::from(b);
        tail_upper |= b.is_ascii_uppercase();
    }
    if high & HIGH == 0 {
        return tail_upper || upper & HIGH != 0;
    }
    s.chars().any(|c| c.to_lowercase().ne(std::iter::once(c)))
}

/// Writes the value of `field` into `out` (empty on entry); false when the event lacks it.
fn compute(field: Field, event: &Event, ctx: &EventContext<'_>, out: &mut String) -> bool {
    use Field as F;
    let process = event.process.as_ref();
    match field {
        F::Image => text(out, process.map(|p| p.exe.as_str())),
        F::CommandLine => process.is_some_and(|p| join_into(out, &p.argv)),
        F::User => text(out, process.map(|p| p.user.as_str())),
        F::UserId => number(out, process.map(|p| p.uid)),
        F::EffectiveUserId => number(out, process.map(|p| p.euid)),
        F::GroupId => number(out, process.map(|p| p.gid)),
        F::ProcessName => text(out, process.map(|p| p.comm.as_str())),
        F::CurrentDirectory => text(out, process.map(|p| p.cwd.as_str())),
        F::Terminal => non_empty(out, process.map(|p| p.tty.as_str())),
        F::ProcessId => number(out, process.map(|p| p.tgid)),
        F::ParentProcessId => number(out, process.map(|p| p.ppid)),
        F::ExecId => non_empty(out, process.map(|p| p.exec_id.as_str())),
        F::ParentExecId => non_empty(out, process.map(|p| p.parent_exec_id.as_str())),
        F::SessionExecId => non_empty(out, ctx.session),
        F::Host => non_empty(out, Some(event.host.as_str())),
        F::UtcTime => {
            utc_time_into(out, event.time_unix_ns);
            true
        }
        F::ContainerId => non_empty(out, container_id(event, process)),
        F::ContainerName => non_empty(out, event.container.as_ref().map(|c| c.name.as_str())),
        F::ContainerImage => non_empty(out, event.container.as_ref().map(|c| c.image.as_str())),
        F::ContainerRuntime => non_empty(out, event.container.as_ref().map(|c| c.runtime.as_str())),
        F::PodName => non_empty(out, event.container.as_ref().map(|c| c.pod_name.as_str())),
        F::PodNamespace => non_empty(
            out,
            event.container.as_ref().map(|c| c.pod_namespace.as_str()),
        ),
        F::Syscall => non_empty(out, syscall(event)),
        F::Result => number(out, result(event)),
        F::ParentImage => text(out, ancestor(event, 0).map(|a| a.exe.as_str())),
        F::ParentCommandLine => ancestor(event, 0).is_some_and(|a| join_into(out, &a.argv)),
        F::ParentUser => text(out, ancestor(event, 0).map(|a| a.user.as_str())),
        F::GrandparentImage => text(out, ancestor(event, 1).map(|a| a.exe.as_str())),
        F::GrandparentCommandLine => ancestor(event, 1).is_some_and(|a| join_into(out, &a.argv)),
        F::ImageDeleted => boolean(out, exec(event).map(|e| e.exe_deleted)),
        F::ImageMemfd => boolean(out, exec(event).map(|e| e.exe_memfd)),
        F::ImageUpperLayer => boolean(out, exec(event).map(|e| e.exe_upper_layer)),
        F::Capabilities => exec(event).is_some_and(|e| {
            capability_names(out, e.cap_effective);
            true
        }),
        F::ExitCode | F::ExitSignal | F::CoreDumped => {
            let Some(Payload::Exit(exit)) = &event.payload else {
                return false;
            };
            match field {
                F::ExitCode => number(out, Some(exit.code)),
                F::ExitSignal => number(out, Some(exit.signal)),
                _ => boolean(out, Some(exit.core_dumped)),
            }
        }
        F::TargetFilename
        | F::SourceFilename
        | F::FileOperation
        | F::FileMode
        | F::FileModeFlags
        | F::FileCreated
        | F::FileTruncated
        | F::FileFlags
        | F::OwnerUid
        | F::OwnerGid
        | F::FsType => match &event.payload {
            Some(Payload::File(file)) => file_field(field, file, out),
            _ => false,
        },
        F::Initiated
        | F::SourceIp
        | F::SourcePort
        | F::DestinationIp
        | F::DestinationPort
        | F::Protocol
        | F::SourceIsIpv6
        | F::DestinationIsIpv6
        | F::NetworkOperation
        | F::DestinationHostname
        | F::QueryName
        | F::QueryResults
        | F::QueryStatus => match &event.payload {
            Some(Payload::Network(net)) => network_field(field, net, out),
            _ => false,
        },
        F::OldUserId
        | F::NewUserId
        | F::OldEffectiveUserId
        | F::NewEffectiveUserId
        | F::OldGroupId
        | F::NewGroupId
        | F::NewCapabilities
        | F::CapabilitiesGained => {
            let Some(Payload::Credential(cred)) = &event.payload else {
                return false;
            };
            let (old, new) = (cred.old.unwrap_or_default(), cred.new.unwrap_or_default());
            credential_field(field, &old, &new, out)
        }
        F::TargetProcessId => match &event.payload {
            Some(Payload::Ptrace(p)) => number(out, Some(p.target_pid)),
            Some(Payload::Signal(s)) => number(out, Some(s.target_pid)),
            _ => false,
        },
        F::PtraceRequest => match &event.payload {
            Some(Payload::Ptrace(p)) => {
                match (p.syscall.as_str(), ptrace_request_name(p.request)) {
                    ("process_vm_writev", _) => out.push_str("process_vm_writev"),
                    (_, Some(name)) => out.push_str(name),
                    (_, None) => {
                        let _ = write!(out, "{}", p.request);
                    }
                }
                true
            }
            _ => false,
        },
        F::Signal | F::SignalName => match &event.payload {
            Some(Payload::Signal(s)) if field == F::Signal => number(out, Some(s.signal)),
            Some(Payload::Signal(s)) => {
                match signal_name(s.signal) {
                    Some(name) => out.push_str(name),
                    None => {
                        let _ = write!(out, "SIG{}", s.signal);
                    }
                }
                true
            }
            _ => false,
        },
        F::ImageLoaded | F::ModuleParameters => match &event.payload {
            Some(Payload::Module(m)) if field == F::ImageLoaded => {
                non_empty(out, Some(m.path.as_str()))
            }
            Some(Payload::Module(m)) => text(out, Some(m.params.as_str())),
            _ => false,
        },
        F::BpfCommand | F::BpfProgramType | F::BpfProgramName => match &event.payload {
            Some(Payload::Bpf(b)) => match field {
                F::BpfCommand => number(out, Some(b.command)),
                F::BpfProgramType => number(out, Some(b.prog_type)),
                _ => text(out, Some(b.prog_name.as_str())),
            },
            _ => false,
        },
        F::MemfdName | F::MemfdFlags => match &event.payload {
            Some(Payload::Memfd(m)) if field == F::MemfdName => text(out, Some(m.name.as_str())),
            Some(Payload::Memfd(m)) => number(out, Some(m.flags)),
            _ => false,
        },
        F::NamespaceTypes | F::NamespaceFlags => match &event.payload {
            Some(Payload::Namespace(n)) if field == F::NamespaceFlags => number(out, Some(n.flags)),
            Some(Payload::Namespace(n)) => {
                namespace_names(out, n.flags);
                true
            }
            _ => false,
        },
        F::IoUringOperation | F::IoUringOpcode | F::IoUringEntries => match &event.payload {
            Some(Payload::IoUring(u)) => match field {
                F::IoUringOperation => text(out, Some(u.op.as_str())),
                F::IoUringOpcode => number(out, Some(u.opcode)),
                _ => number(out, Some(u.entries)),
            },
            _ => false,
        },
    }
}

fn text(out: &mut String, value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        out.push_str(v);
        true
    })
}

fn non_empty(out: &mut String, value: Option<&str>) -> bool {
    text(out, value.filter(|v| !v.is_empty()))
}

fn number(out: &mut String, value: Option<impl std::fmt::Display>) -> bool {
    value.is_some_and(|v| write!(out, "{v}").is_ok())
}

fn boolean(out: &mut String, value: Option<bool>) -> bool {
    value.is_some_and(|v| {
        out.push_str(if v { "true" } else { "false" });
        true
    })
}

/// Appends argv joined by single spaces (an empty argv is an empty, present command line).
fn join_into(out: &mut String, argv: &[String]) -> bool {
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(arg);
    }
    true
}

fn exec(event: &Event) -> Option<&ExecEvent> {
    match &event.payload {
        Some(Payload::Exec(exec)) => Some(exec),
        _ => None,
    }
}

fn ancestor(event: &Event, n: usize) -> Option<&Ancestor> {
    exec(event).and_then(|e| e.ancestors.get(n))
}

fn container_id<'e>(event: &'e Event, process: Option<&'e Process>) -> Option<&'e str> {
    event
        .container
        .as_ref()
        .map(|c| c.id.as_str())
        .filter(|id| !id.is_empty())
        .or_else(|| process.map(|p| p.container_id.as_str()))
}

fn syscall(event: &Event) -> Option<&str> {
    match &event.payload {
        Some(Payload::File(f)) => Some(f.syscall.as_str()),
        Some(Payload::Credential(c)) => Some(c.syscall.as_str()),
        Some(Payload::Ptrace(p)) => Some(p.syscall.as_str()),
        Some(Payload::Signal(s)) => Some(s.syscall.as_str()),
        Some(Payload::Module(m)) => Some(m.syscall.as_str()),
        Some(Payload::Namespace(n)) => Some(n.syscall.as_str()),
        _ => None,
    }
}

fn result(event: &Event) -> Option<i64> {
    match &event.payload {
        Some(Payload::File(f)) => Some(f.result),
        Some(Payload::Network(n)) => Some(n.result),
        Some(Payload::Credential(c)) => Some(c.result),
        Some(Payload::Ptrace(p)) => Some(p.result),
        Some(Payload::Signal(s)) => Some(s.result),
        Some(Payload::Module(m)) => Some(m.result),
        Some(Payload::Bpf(b)) => Some(b.result),
        Some(Payload::Memfd(m)) => Some(m.result),
        Some(Payload::Namespace(n)) => Some(n.result),
        Some(Payload::IoUring(u)) => Some(u.result),
        _ => None,
    }
}

/// The word for a file operation, as `FileOperation` shows it.
pub(crate) fn file_op_name(op: FileOp) -> &'static str {
    match op {
        FileOp::Unspecified => "unspecified",
        FileOp::FileOpen => "open",
        FileOp::FileReadSensitive => "read",
        FileOp::FileRename => "rename",
        FileOp::FileUnlink => "unlink",
        FileOp::FileRmdir => "rmdir",
        FileOp::FileChmod => "chmod",
        FileOp::FileChown => "chown",
        FileOp::FileLink => "link",
        FileOp::FileSymlink => "symlink",
        FileOp::FileTruncate => "truncate",
        FileOp::FileMount => "mount",
        FileOp::FileUmount => "umount",
        FileOp::FileUtimes => "utimes",
    }
}

/// The word for a network operation, as `NetworkOperation` shows it.
pub(crate) fn network_op_name(op: NetworkOp) -> &'static str {
    match op {
        NetworkOp::Unspecified => "unspecified",
        NetworkOp::NetworkConnect => "connect",
        NetworkOp::NetworkAccept => "accept",
        NetworkOp::NetworkListen => "listen",
        NetworkOp::NetworkBind => "bind",
        NetworkOp::NetworkSend => "send",
        NetworkOp::NetworkPacketSocket => "packet_socket",
        NetworkOp::NetworkDnsAnswer => "dns_answer",
    }
}

fn file_field(field: Field, file: &FileEvent, out: &mut String) -> bool {
    use Field as F;
    let op = FileOp::try_from(file.op).unwrap_or(FileOp::Unspecified);
    // Rename and hard link name the new file in target_path; everything else in path.
    let new_file_is_target = matches!(op, FileOp::FileRename | FileOp::FileLink);
    let mode_applies = matches!(op, FileOp::FileChmod) || (op == FileOp::FileOpen && file.created);
    match field {
        F::TargetFilename if new_file_is_target => text(out, Some(file.target_path.as_str())),
        F::TargetFilename => text(out, Some(file.path.as_str())),
        F::SourceFilename if new_file_is_target => non_empty(out, Some(file.path.as_str())),
        F::SourceFilename => non_empty(out, Some(file.target_path.as_str())),
        F::FileOperation => text(out, Some(file_op_name(op))),
        F::FileMode => mode_applies && write!(out, "{:04o}", file.mode & 0o7777).is_ok(),
        F::FileModeFlags => {
            if !mode_applies {
                return false;
            }
            let mode = file.mode;
            let words = [
                (mode & 0o4000 != 0, "setuid"),
                (mode & 0o2000 != 0, "setgid"),
                (mode & 0o1000 != 0, "sticky"),
                (mode & 0o111 != 0, "executable"),
                (mode & 0o002 != 0, "world_writable"),
            ];
            push_words(out, words.iter().filter(|(on, _)| *on).map(|(_, w)| *w));
            true
        }
        F::FileCreated => boolean(out, Some(file.created)),
        F::FileTruncated => boolean(out, Some(file.truncated)),
        F::FileFlags => number(out, Some(file.flags)),
        F::OwnerUid => op == FileOp::FileChown && file.uid >= 0 && number(out, Some(file.uid)),
        F::OwnerGid => op == FileOp::FileChown && file.gid >= 0 && number(out, Some(file.gid)),
        F::FsType => non_empty(out, Some(file.fs_type.as_str())),
        _ => false,
    }
}

fn network_field(field: Field, net: &NetworkEvent, out: &mut String) -> bool {
    use Field as F;
    let op = NetworkOp::try_from(net.op).unwrap_or(NetworkOp::Unspecified);
    match field {
        F::Initiated => boolean(out, Some(net.initiated)),
        F::SourceIp => non_empty(out, Some(net.local_ip.as_str())),
        F::SourcePort => !net.local_ip.is_empty() && number(out, Some(net.local_port)),
        F::DestinationIp => non_empty(out, Some(net.remote_ip.as_str())),
        F::DestinationPort => !net.remote_ip.is_empty() && number(out, Some(net.remote_port)),
        F::Protocol => {
            match net.protocol {
                6 => out.push_str("tcp"),
                17 => out.push_str("udp"),
                n => {
                    let _ = write!(out, "{n}");
                }
            }
            true
        }
        F::SourceIsIpv6 => {
            !net.local_ip.is_empty() && boolean(out, Some(net.local_ip.contains(':')))
        }
        F::DestinationIsIpv6 => {
            !net.remote_ip.is_empty() && boolean(out, Some(net.remote_ip.contains(':')))
        }
        F::NetworkOperation => text(out, Some(network_op_name(op))),
        F::DestinationHostname => non_empty(out, Some(net.remote_hostname.as_str())),
        F::QueryName => non_empty(out, net.dns.as_ref().map(|d| d.query.as_str())),
        F::QueryResults => net.dns.as_ref().is_some_and(|d| {
            out.push_str(&d.answers.join(";"));
            true
        }),
        F::QueryStatus => number(out, net.dns.as_ref().map(|d| d.rcode)),
        _ => false,
    }
}

fn credential_field(field: Field, old: &Credentials, new: &Credentials, out: &mut String) -> bool {
    use Field as F;
    match field {
        F::OldUserId => number(out, Some(old.ruid)),
        F::NewUserId => number(out, Some(new.ruid)),
        F::OldEffectiveUserId => number(out, Some(old.euid)),
        F::NewEffectiveUserId => number(out, Some(new.euid)),
        F::OldGroupId => number(out, Some(old.rgid)),
        F::NewGroupId => number(out, Some(new.rgid)),
        F::NewCapabilities => {
            capability_names(out, new.cap_effective);
            true
        }
        F::CapabilitiesGained => {
            capability_names(out, new.cap_effective & !old.cap_effective);
            true
        }
        _ => false,
    }
}

fn push_words<'w>(out: &mut String, words: impl Iterator<Item = &'w str>) {
    for (i, w) in words.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
}

/// Linux capability names by number (include/uapi/linux/capability.h).
const CAPABILITIES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

fn capability_names(out: &mut String, caps: u64) {
    let mut first = true;
    for bit in 0..64u32 {
        if caps & (1 << bit) == 0 {
            continue;
        }
        if !first {
            out.push(' ');
        }
        first = false;
        match CAPABILITIES.get(bit as usize) {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "cap_{bit}");
            }
        }
    }
}

fn namespace_names(out: &mut String, flags: u64) {
    const NAMES: [(u64, &str); 8] = [
        (0x0002_0000, "mnt"),
        (0x2000_0000, "pid"),
        (0x4000_0000, "net"),
        (0x0400_0000, "uts"),
        (0x0800_0000, "ipc"),
        (0x1000_0000, "user"),
        (0x0200_0000, "cgroup"),
        (0x0000_0080, "time"),
    ];
    if flags == 0 {
        out.push_str("any");
        return;
    }
    push_words(
        out,
        NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, n)| *n),
    );
}

fn ptrace_request_name(request: i64) -> Option<&'static str> {
    Some(match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        _ => return None,
    })
}

fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i).copied())
}

/// Civil UTC date and time of a Unix time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcParts {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) millis: u32,
    /// ISO week number (1..=53).
    pub(crate) week: u32,
}

/// Splits a Unix time into UTC calendar parts (proleptic Gregorian, days-from-civil inverse).
pub(crate) fn utc_parts(unix_ns: u64) -> UtcParts {
    let secs = unix_ns / 1_000_000_000;
    let millis = ((unix_ns / 1_000_000) % 1000) as u32;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    // ISO week: weekday (Monday = 1) of this day, and the ordinal day of the year.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let ordinal = days - days_from_civil(year, 1, 1) + 1;
    let mut week = (ordinal - weekday + 10) / 7;
    if week < 1 {
        week = iso_weeks_in_year(year - 1);
    } else if week > iso_weeks_in_year(year) {
        week = 1;
    }
    UtcParts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis,
        week: week as u32,
    }
}

pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn iso_weeks_in_year(year: i64) -> i64 {
    // A year has 53 ISO weeks when Jan 1 is a Thursday, or a Wednesday in a leap year.
    let jan1 = (days_from_civil(year, 1, 1) + 3).rem_euclid(7) + 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if jan1 == 4 || (leap && jan1 == 3) {
        53
    } else {
        52
    }
}

fn utc_time_into(out: &mut String, unix_ns: u64) {
    let p = utc_parts(unix_ns);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_proto::{Container, CredentialEvent, ExitEvent};

    fn exec_event(argv: &[&str], ancestors: Vec<Ancestor>) -> Event {
        Event {
            process: Some(Process {
                tgid: 4242,
                ppid: 7,
                user: "Alice".into(),
                exe: "/usr/bin/Cat".into(),
                cwd: "/home/alice".into(),
                argv: argv.iter().map(|s| s.to_string()).collect(),
                exec_id: "e-1".into(),
                tty: "pts/3".into(),
                ..Default::default()
            }),
            payload: Some(Payload::Exec(ExecEvent {
                ancestors,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn values(event: &Event) -> FieldValues {
        let mut values = FieldValues::default();
        values.load();
        let all: Vec<Field> = FIELDS.iter().map(|d| d.field).collect();
        values.fill(event, &EventContext::default(), &all);
        values
    }

    fn raw(values: &FieldValues, field: Field) -> Option<String> {
        values.get(field).map(|v| v.raw.to_string())
    }

    #[test]
    fn table_is_in_variant_order_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (i, def) in FIELDS.iter().enumerate() {
            assert_eq!(def.field.index(), i, "{}", def.names[0]);
            for name in def.names {
                assert!(seen.insert(*name), "{name} is in the table twice");
                assert_eq!(Field::from_name(name), Some(def.field));
            }
        }
        assert_eq!(Field::from_name("commandline"), None);
        for (name, _) in NOT_PRODUCED {
            assert_eq!(Field::from_name(name), None, "{name} is produced after all");
        }
        assert_eq!(Field::from_name("ProcessGuid"), Some(Field::ExecId));
    }

    #[test]
    fn exec_fields_map_to_process_and_first_ancestor() {
        let parent = Ancestor {
            exe: "/bin/bash".into(),
            argv: vec!["bash".into(), "-i".into()],
            user: "root".into(),
            ..Default::default()
        };
        let grandparent = Ancestor {
            exe: "/usr/sbin/sshd".into(),
            ..Default::default()
        };
        let event = exec_event(&["cat", "/etc/Shadow"], vec![parent, grandparent]);
        let v = values(&event);
        assert_eq!(raw(&v, Field::Image).as_deref(), Some("/usr/bin/Cat"));
        assert_eq!(
            raw(&v, Field::CommandLine).as_deref(),
            Some("cat /etc/Shadow")
        );
        assert_eq!(raw(&v, Field::ParentImage).as_deref(), Some("/bin/bash"));
        assert_eq!(
            raw(&v, Field::ParentCommandLine).as_deref(),
            Some("bash -i")
        );
        assert_eq!(
            raw(&v, Field::GrandparentImage).as_deref(),
            Some("/usr/sbin/sshd")
        );
        assert_eq!(raw(&v, Field::User).as_deref(), Some("Alice"));
        assert_eq!(
            raw(&v, Field::CurrentDirectory).as_deref(),
            Some("/home/alice")
        );
        assert_eq!(raw(&v, Field::ProcessId).as_deref(), Some("4242"));
        assert_eq!(raw(&v, Field::ParentProcessId).as_deref(), Some("7"));
        assert_eq!(raw(&v, Field::ParentUser).as_deref(), Some("root"));
        assert_eq!(raw(&v, Field::ExecId).as_deref(), Some("e-1"));
        assert_eq!(raw(&v, Field::Terminal).as_deref(), Some("pts/3"));
        assert_eq!(v.get(Field::CommandLine).unwrap().lower, "cat /etc/shadow");
        assert_eq!(raw(&v, Field::TargetFilename), None);
        assert_eq!(raw(&v, Field::ContainerId), None);
        assert_eq!(raw(&v, Field::SessionExecId), None);
    }

    #[test]
    fn parent_fields_are_absent_without_ancestors() {
        let v = values(&exec_event(&["ls"], Vec::new()));
        assert!(v.get(Field::ParentImage).is_none());
        assert!(v.get(Field::ParentUser).is_none());
        assert!(v.get(Field::Image).is_some());
    }

    fn file_event(op: FileOp, path: &str, target: &str, mode: u32) -> Event {
        Event {
            process: Some(Process::default()),
            payload: Some(Payload::File(FileEvent {
                op: op as i32,
                path: path.into(),
                target_path: target.into(),
                mode,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn rename_and_link_name_the_new_file_target() {
        let v = values(&file_event(
            FileOp::FileRename,
            "/tmp/a",
            "/etc/cron.d/a",
            0,
        ));
        assert_eq!(
            raw(&v, Field::TargetFilename).as_deref(),
            Some("/etc/cron.d/a")
        );
        assert_eq!(raw(&v, Field::SourceFilename).as_deref(), Some("/tmp/a"));
        assert_eq!(raw(&v, Field::FileOperation).as_deref(), Some("rename"));
        let v = values(&file_event(FileOp::FileSymlink, "/tmp/l", "/etc/shadow", 0));
        assert_eq!(raw(&v, Field::TargetFilename).as_deref(), Some("/tmp/l"));
        assert_eq!(
            raw(&v, Field::SourceFilename).as_deref(),
            Some("/etc/shadow")
        );
        let v = values(&file_event(FileOp::FileUnlink, "/var/log/wtmp", "", 0));
        assert_eq!(raw(&v, Field::SourceFilename), None);
    }

    #[test]
    fn chmod_mode_is_octal_with_flag_words() {
        let v = values(&file_event(FileOp::FileChmod, "/tmp/x", "", 0o104755));
        assert_eq!(raw(&v, Field::FileMode).as_deref(), Some("4755"));
        assert_eq!(
            raw(&v, Field::FileModeFlags).as_deref(),
            Some("setuid executable")
        );
        let v = values(&file_event(FileOp::FileChmod, "/tmp/x", "", 0o644));
        assert_eq!(raw(&v, Field::FileModeFlags).as_deref(), Some(""));
        let v = values(&file_event(FileOp::FileUnlink, "/tmp/x", "", 0o755));
        assert_eq!(raw(&v, Field::FileMode), None, "unlink sets no mode");
    }

    #[test]
    fn network_fields_follow_sysmon_direction() {
        let event = Event {
            payload: Some(Payload::Network(NetworkEvent {
                op: NetworkOp::NetworkConnect as i32,
                protocol: 6,
                local_ip: "10.0.0.2".into(),
                local_port: 40000,
                remote_ip: "2001:db8::1".into(),
                remote_port: 443,
                initiated: true,
                ..Default::default()
            })),
            ..Default::default()
        };
        let v = values(&event);
        assert_eq!(raw(&v, Field::SourceIp).as_deref(), Some("10.0.0.2"));
        assert_eq!(raw(&v, Field::SourcePort).as_deref(), Some("40000"));
        assert_eq!(
            raw(&v, Field::DestinationIp).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(raw(&v, Field::DestinationPort).as_deref(), Some("443"));
        assert_eq!(raw(&v, Field::Protocol).as_deref(), Some("tcp"));
        assert_eq!(raw(&v, Field::Initiated).as_deref(), Some("true"));
        assert_eq!(raw(&v, Field::DestinationIsIpv6).as_deref(), Some("true"));
        assert_eq!(raw(&v, Field::SourceIsIpv6).as_deref(), Some("false"));
        assert_eq!(raw(&v, Field::NetworkOperation).as_deref(), Some("connect"));
        assert_eq!(raw(&v, Field::Image), None, "no process context");
        assert_eq!(raw(&v, Field::DestinationHostname), None, "not resolved");
    }

    #[test]
    fn dns_answers_and_resolved_destinations_have_their_fields() {
        let answer = Event {
            payload: Some(Payload::Network(NetworkEvent {
                op: NetworkOp::NetworkDnsAnswer as i32,
                remote_ip: "127.0.0.53".into(),
                remote_port: 53,
                dns: Some(kestrel_proto::DnsAnswer {
                    query: "tunnel.us.ngrok.com".into(),
                    query_type: 1,
                    rcode: 0,
                    answers: vec!["edge.ngrok.example".into(), "3.20.1.5".into()],
                    truncated: false,
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let v = values(&answer);
        assert_eq!(
            raw(&v, Field::QueryName).as_deref(),
            Some("tunnel.us.ngrok.com")
        );
        assert_eq!(
            raw(&v, Field::QueryResults).as_deref(),
            Some("edge.ngrok.example;3.20.1.5")
        );
        assert_eq!(raw(&v, Field::QueryStatus).as_deref(), Some("0"));
        assert_eq!(
            raw(&v, Field::NetworkOperation).as_deref(),
            Some("dns_answer")
        );
        let connect = Event {
            payload: Some(Payload::Network(NetworkEvent {
                op: NetworkOp::NetworkConnect as i32,
                remote_ip: "3.20.1.5".into(),
                remote_port: 443,
                remote_hostname: "tunnel.us.ngrok.com".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let v = values(&connect);
        assert_eq!(
            raw(&v, Field::DestinationHostname).as_deref(),
            Some("tunnel.us.ngrok.com")
        );
        assert_eq!(raw(&v, Field::QueryName), None);
    }

    #[test]
    fn credential_change_reports_gained_capabilities() {
        let event = Event {
            payload: Some(Payload::Credential(CredentialEvent {
                syscall: "capset".into(),
                old: Some(Credentials {
                    cap_effective: 1 << 13,
                    ..Default::default()
                }),
                new: Some(Credentials {
                    cap_effective: (1 << 13) | (1 << 21),
                    euid: 0,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let v = values(&event);
        assert_eq!(
            raw(&v, Field::CapabilitiesGained).as_deref(),
            Some("cap_sys_admin")
        );
        assert_eq!(
            raw(&v, Field::NewCapabilities).as_deref(),
            Some("cap_net_raw cap_sys_admin")
        );
        assert_eq!(raw(&v, Field::Syscall).as_deref(), Some("capset"));
    }

    #[test]
    fn container_fields_come_from_the_container_context() {
        let mut event = exec_event(&["sh"], Vec::new());
        event.container = Some(Container {
            id: "abc".into(),
            name: "web".into(),
            ..Default::default()
        });
        let v = values(&event);
        assert_eq!(raw(&v, Field::ContainerId).as_deref(), Some("abc"));
        assert_eq!(raw(&v, Field::ContainerName).as_deref(), Some("web"));
        assert_eq!(raw(&v, Field::PodName), None);
    }

    #[test]
    fn exit_fields() {
        let event = Event {
            payload: Some(Payload::Exit(ExitEvent {
                code: 0,
                signal: 9,
                core_dumped: false,
            })),
            ..Default::default()
        };
        let v = values(&event);
        assert_eq!(raw(&v, Field::ExitSignal).as_deref(), Some("9"));
        assert_eq!(raw(&v, Field::CoreDumped).as_deref(), Some("false"));
    }

    #[test]
    fn utc_time_is_civil_time() {
        // 2023-11-14T22:13:20.123Z, a Tuesday in ISO week 46.
        let p = utc_parts(1_700_000_000_123_456_789);
        assert_eq!(
            (p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis, p.week),
            (2023, 11, 14, 22, 13, 20, 123, 46)
        );
        let mut s = String::new();
        utc_time_into(&mut s, 1_700_000_000_123_456_789);
        assert_eq!(s, "2023-11-14 22:13:20.123");
        assert_eq!(utc_parts(0).week, 1, "1970-01-01 is in ISO week 1");
        // 2021-01-03 (Sunday) belongs to ISO week 53 of 2020.
        assert_eq!(utc_parts(1_609_632_000_000_000_000).week, 53);
    }

    #[test]
    fn values_from_the_previous_event_are_not_reused() {
        let mut values = FieldValues::default();
        values.load();
        values.fill(
            &exec_event(&["a"], Vec::new()),
            &EventContext::default(),
            &[Field::CommandLine],
        );
        assert_eq!(values.get(Field::CommandLine).unwrap().raw, "a");
        values.load();
        values.fill(
            &exec_event(&["b", "C"], Vec::new()),
            &EventContext::default(),
            &[Field::CommandLine],
        );
        let v = values.get(Field::CommandLine).unwrap();
        assert_eq!((v.raw, v.lower), ("b C", "b c"));
    }

    #[test]
    fn lowercasing_handles_non_ascii() {
        assert!(needs_lowercasing("ÄBC"));
        assert!(!needs_lowercasing("äbc/ß"));
        assert!(!needs_lowercasing("/usr/bin/cat"));
        assert!(!needs_lowercasing(
            "/usr/bin/python3.11 -m pip list --outdated @[`{"
        ));
        assert!(needs_lowercasing(
            "/usr/bin/python3.11 -m pip list --outdatedZ"
        ));
        assert!(needs_lowercasing(
            "/usr/bin/python3.11 -m pip liSt --outdated"
        ));
        assert!(needs_lowercasing("/usr/bin/A"));
        assert!(needs_lowercasing("/usr/bin/python3.11 ÄBC"));
        assert!(!needs_lowercasing("/usr/bin/python3.11 äbc"));
        assert_eq!(lowercase("ÄBC/X"), "äbc/x");
    }
}
