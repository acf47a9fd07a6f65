//! The mapping table: every field Kestrel evaluates, with its Sigma names, value kind and the
//! categories whose events carry it; and the Sigma taxonomy fields Kestrel does not produce.

use crate::logsource::{Category, CategorySet};

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
const RENAME: CategorySet = Category::ProcessRename.bit();
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
    .or(URING)
    .or(RENAME);

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
    /// `process.login_uid`: the audit login uid, who logged in (unchanged by `su`/`sudo`);
    /// absent outside a login. Sysmon for Linux's `LogonId`.
    LogonId: ["LogonId", "LoginUserId"], Number, ALL;
    /// `process.login_user`: the user name of the login uid.
    LoginUser: ["LoginUser"], Text, ALL;
    /// `process.audit_session_id`: the audit session of that login.
    LoginSessionId: ["LoginSessionId"], Number, ALL;
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
    /// `container.pod_labels` as `key=value` pairs in key order joined by single spaces
    /// (`app=web tier=front`); absent when the pod has none or no API server was watched.
    PodLabels: ["PodLabels"], Text, ALL;
    /// `container.workload_kind`: Deployment, DaemonSet, StatefulSet, Job, ReplicaSet, Node, ….
    WorkloadKind: ["WorkloadKind"], Text, ALL;
    /// `container.workload_name`.
    WorkloadName: ["WorkloadName"], Text, ALL;
    /// `container.service_account`: the pod's Kubernetes service account.
    ServiceAccount: ["ServiceAccount"], Text, ALL;
    /// `container.node_name`: the Kubernetes node the pod runs on.
    NodeName: ["NodeName"], Text, ALL;
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
    /// The target's executable, from the agent's process table; absent when unknown.
    TargetImage: ["TargetImage"], Text, TARGET_PROCESS;
    /// The target's argv joined by single spaces; absent when unknown.
    TargetCommandLine: ["TargetCommandLine"], Text, TARGET_PROCESS;
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

    // process_rename.
    /// The name the process gave itself (at most 15 bytes). `ProcessName` is still the old one.
    NewProcessName: ["NewProcessName"], Text, RENAME;
    /// `true` when the new name is the executable's file name (cut to 15 bytes, as the kernel
    /// cuts task names), `false` when the process now goes by another name.
    NewNameMatchesImage: ["NewNameMatchesImage"], Bool, RENAME;
}

/// Number of fields.
pub(crate) const FIELD_COUNT: usize = FIELDS.len();

/// Sysmon / Sigma taxonomy fields Kestrel's events do not carry, with the reason; rules using
/// them are rejected with it.
pub(crate) const NOT_PRODUCED: &[(&str, &str)] = &[
    (
        "LogonGuid",
        "events carry no login GUID (use LoginSessionId or SessionExecId instead)",
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
