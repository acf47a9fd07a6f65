//! The contract between Kestrel's eBPF programs and the agent: `#[repr(C)]` records written into
//! the ring buffer, the kind constants, and the load-time configuration the agent hands the
//! programs. `no_std`, no `Option`, no `bool`: the same bytes must mean the same thing on both sides.
//!
//! Every record starts with a [`RecordHeader`]; `header.kind` says which struct follows and
//! `header.size` is the size of the whole record. Sizes are asserted at compile time so a layout
//! change is a build error rather than silent corruption.

#![no_std]

pub mod aux;
pub mod linux;
pub mod syscalls;

/// The followed syscalls by their short name: `sys::OPEN`, `sys::kind_of`.
pub use syscalls as sys;

pub use aux::{Aux, BpfAux, CredAux, CredentialSet, DirectoryId, FileAux, NetAux, UringAux};

/// A process replaced its image: [`ExecRecord`].
pub const KIND_EXEC: u32 = 1;
/// A new process (not a thread) was created: [`ForkRecord`].
pub const KIND_FORK: u32 = 2;
/// The last thread of a process exited: [`ExitRecord`].
pub const KIND_EXIT: u32 = 3;
/// A file was opened for write/create/truncate, a sensitive file was read, or a file was
/// renamed, removed, re-permissioned, re-owned, linked, truncated, mounted or timestomped:
/// [`SyscallRecord`].
pub const KIND_FILE: u32 = 4;
/// connect/accept/listen/bind/sendto or an AF_PACKET socket: [`SyscallRecord`].
pub const KIND_NETWORK: u32 = 5;
/// setuid family, setgid family, capset: [`SyscallRecord`] with old and new credentials.
pub const KIND_CREDENTIAL: u32 = 6;
/// ptrace or process_vm_writev: [`SyscallRecord`].
pub const KIND_PTRACE: u32 = 7;
/// kill/tkill/tgkill of another process: [`SyscallRecord`].
pub const KIND_SIGNAL: u32 = 8;
/// init_module/finit_module: [`SyscallRecord`].
pub const KIND_MODULE: u32 = 9;
/// bpf(BPF_PROG_LOAD): [`SyscallRecord`].
pub const KIND_BPF: u32 = 10;
/// memfd_create: [`SyscallRecord`].
pub const KIND_MEMFD: u32 = 11;
/// setns/unshare: [`SyscallRecord`].
pub const KIND_NAMESPACE: u32 = 12;
/// io_uring_setup, and io_uring operations seen by the io_uring tracepoints: [`SyscallRecord`].
pub const KIND_IO_URING: u32 = 13;
/// The main thread of a process renamed it (`prctl(PR_SET_NAME)`): [`SyscallRecord`] with
/// the new name in string slot 0.
pub const KIND_PROCESS_RENAME: u32 = 14;
/// Number of slots in per-kind arrays (index 0 is unused, kinds start at 1).
pub const KIND_SLOTS: u32 = 15;

/// The name of each kind, indexed by kind (index 0, `unknown`, is no kind): the names the
/// agent's configuration, its Gap records and its spool use.
pub const KIND_NAMES: [&str; KIND_SLOTS as usize] = [
    "unknown",
    "exec",
    "fork",
    "exit",
    "file",
    "network",
    "credential",
    "ptrace",
    "signal",
    "module",
    "bpf",
    "memfd",
    "namespace",
    "io_uring",
    "process_rename",
];

/// The name of a kind (`unknown` for a number that is no kind).
pub const fn kind_name(kind: u32) -> &'static str {
    if kind < KIND_SLOTS {
        KIND_NAMES[kind as usize]
    } else {
        KIND_NAMES[0]
    }
}

/// Size of each user-string slot in [`SyscallRecord::strings`].
pub const STR_SLOT: usize = 1024;
/// Total string area: two user-string slots.
pub const STRINGS_SIZE: usize = 2 * STR_SLOT;

/// `SyscallRecord::flags`: string slot 0 was cut.
pub const SYS_STR0_TRUNCATED: u32 = 1 << 0;
/// `SyscallRecord::flags`: string slot 1 was cut.
pub const SYS_STR1_TRUNCATED: u32 = 1 << 1;
/// `SyscallRecord::flags`: the open was read-only and is reported because the path is sensitive.
pub const SYS_SENSITIVE_READ: u32 = 1 << 4;
/// `SyscallRecord::flags`: a read-only open of a directory (`O_DIRECTORY`), not an event: it
/// tells user space the path of the directory identified by [`FileAux::opened_directory`], for
/// calls that later name paths relative to a descriptor of it.
pub const SYS_DIRECTORY_OPEN: u32 = 1 << 5;

/// One followed syscall (or io_uring operation). `args` are the raw syscall arguments; `aux`
/// holds kind-specific values, read through the view of the kind ([`Aux`]). A DNS answer
/// received (`recvfrom`, `recvmsg` from port 53) has its first bytes in string slot 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallRecord {
    /// Common header; `kind` is one of the `KIND_*` syscall kinds.
    pub header: RecordHeader,
    /// Which call, from [`sys`].
    pub syscall: u32,
    /// `SYS_*` flags.
    pub flags: u32,
    /// Return value (negative errno on failure).
    pub result: i64,
    /// Raw arguments.
    pub args: [u64; 6],
    /// Kind-specific values, through the view of the record's kind.
    pub aux: Aux,
    /// Bytes in use in each string slot: 0 = first path, 1 = second path.
    pub str_len: [u32; 2],
    /// Padding to keep `strings` 8-byte aligned.
    pub reserved: u32,
    /// Effective uid of the caller.
    pub euid: u32,
    /// The strings: `[0, STR_SLOT)` first path, `[STR_SLOT, 2*STR_SLOT)` second path. Only the
    /// used prefix of the record is sent; see `header.size`.
    pub strings: [u8; STRINGS_SIZE],
}

/// Bytes of a [`SyscallRecord`] before its string area.
pub const SYSCALL_FIXED_SIZE: usize = core::mem::size_of::<SyscallRecord>() - STRINGS_SIZE;

/// Bytes of the executable path the exec record can hold (including the NUL).
pub const FILENAME_MAX: usize = 256;
/// Bytes of the NUL-separated argument vector the exec record can hold. A power of two, so the
/// programs can bound a length with a mask the verifier understands.
pub const ARGV_MAX: usize = 1024;
/// Length of the kernel's `comm` (task name) field.
pub const COMM_LEN: usize = 16;

/// `ExecRecord::flags`: the argument vector was longer than [`ARGV_MAX`] and was cut.
pub const EXEC_ARGV_TRUNCATED: u32 = 1 << 0;
/// `ExecRecord::flags`: the executable path was longer than [`FILENAME_MAX`] and was cut.
pub const EXEC_FILENAME_TRUNCATED: u32 = 1 << 1;
/// `ExecRecord::flags`: the argument vector could not be read from the new process memory.
pub const EXEC_ARGV_UNREADABLE: u32 = 1 << 2;
/// `ExecRecord::flags`: the executed file is a memfd (its name starts with `memfd:`).
pub const EXEC_MEMFD: u32 = 1 << 3;
/// `ExecRecord::flags`: the executed file is on an overlay file system (a container's root)
/// and has a copy in the writable upper layer: it was written, or changed, after the
/// container started, so it is not (as it was) part of the image.
pub const EXEC_UPPER_LAYER: u32 = 1 << 4;

/// Name of the global [`ProbeConfig`] in the eBPF object, set by the agent at load time.
pub const CONFIG_GLOBAL: &str = "KESTREL_CONFIG";
/// Name of the ring buffer map the programs write records into.
pub const EVENTS_MAP: &str = "KESTREL_EVENTS";
/// Size of the event ring buffer unless the agent sets another at load time.
pub const DEFAULT_RING_BYTES: u32 = 8 * 1024 * 1024;
/// The agent is woken when this fraction of the ring is waiting (1/32: 256 KiB of the
/// default 8 MiB), far from full, so a wake-up per batch costs no drop.
pub const RING_WAKEUP_DIVISOR: u32 = 32;
/// Name of the per-CPU array (indexed by kind) of `u64` counting every record the programs lost:
/// the ring buffer was full, or a read or map update the record could not do without failed.
/// The agent turns increases into Gap records.
pub const DROPS_MAP: &str = "KESTREL_DROPS";

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    /// Size in bytes of the whole record, header included.
    pub size: u32,
    /// Time of the event, nanoseconds since boot (`bpf_ktime_get_boot_ns`).
    pub boot_ns: u64,
    /// Thread id of the task the event happened in (kernel `pid`).
    pub pid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
}

/// An `execve`/`execveat` that succeeded (`sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    /// Common header; `kind` is [`KIND_EXEC`].
    pub header: RecordHeader,
    /// Process id of the parent (`real_parent->tgid`), 0 if it could not be read.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `EXEC_*` flags.
    pub flags: u32,
    /// Bytes of `filename` in use, without the NUL.
    pub filename_len: u32,
    /// Bytes of `argv` in use: the arguments, each followed by a NUL.
    pub argv_len: u32,
    /// Task name after the exec.
    pub comm: [u8; COMM_LEN],
    /// Path of the executed file as the kernel resolved it for the exec.
    pub filename: [u8; FILENAME_MAX],
    /// The new argument vector, NUL-separated.
    pub argv: [u8; ARGV_MAX],
    /// Effective uid and gid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Effective capabilities.
    pub cap_effective: u64,
    /// Device (`s_dev`) of the executed file.
    pub exe_dev: u64,
    /// Inode number of the executed file.
    pub exe_inode: u64,
    /// Link count of the executed file (0: deleted or never linked).
    pub exe_nlink: u32,
    /// Controlling terminal, encoded like `tty_nr` in `/proc/PID/stat` (0: none).
    pub tty: u32,
    /// Audit login uid (`task->loginuid`): who logged in, kept across `su` and `sudo`;
    /// [`NO_LOGIN_ID`] for processes started outside a login (daemons) or without audit.
    pub loginuid: u32,
    /// Audit session id (`task->sessionid`), [`NO_LOGIN_ID`] when unset.
    pub sessionid: u32,
}

/// `loginuid` and `sessionid` of a task that never logged in (the kernel's `(uid_t)-1`,
/// `AUDIT_SID_UNSET`), and of every task on a kernel built without audit.
pub const NO_LOGIN_ID: u32 = u32::MAX;

/// A new process was created (`sched_process_fork` with a new thread group).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    /// Common header for the parent task; `kind` is [`KIND_FORK`].
    pub header: RecordHeader,
    /// Thread id of the child.
    pub child_pid: u32,
    /// Process id of the child.
    pub child_tgid: u32,
    /// Real user id of the parent.
    pub uid: u32,
    /// Real group id of the parent.
    pub gid: u32,
    /// Task name of the parent (and so of the child).
    pub comm: [u8; COMM_LEN],
}

/// The last thread of a process exited (`sched_process_exit` with `group_dead`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    /// Common header; `kind` is [`KIND_EXIT`].
    pub header: RecordHeader,
    /// Process id of the parent at exit time.
    pub ppid: u32,
    /// Raw `task->exit_code`: status in bits 8..16, signal in bits 0..7, core dump in bit 7.
    pub exit_code: u32,
    /// Task name.
    pub comm: [u8; COMM_LEN],
}

/// Kernel layout facts the programs need, resolved by the agent at load time from the running
/// kernel's BTF and tracepoint formats (Rust eBPF has no CO-RE relocations), plus filter settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Byte offset of `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// Byte offset of `task_struct.tgid`.
    pub task_tgid: u32,
    /// Byte offset of `task_struct.pid`.
    pub task_pid: u32,
    /// Byte offset of `task_struct.mm`.
    pub task_mm: u32,
    /// Byte offset of `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// Byte offset of `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// Byte offset of `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// Offset of the `__data_loc filename` field in the `sched_process_exec` record.
    pub tp_exec_filename: u32,
    /// Offset of the `group_dead` field in the `sched_process_exit` record.
    pub tp_exit_group_dead: u32,
    /// Process id of the agent itself: its own events are not reported (0: report everything).
    pub agent_tgid: u32,
    /// When non-zero, only this process is reported (diagnostics and exact-count tests).
    pub only_tgid: u32,
    /// Bit n set: kind n is reported.
    pub kinds_enabled: u32,
    /// Byte offset of `task_struct.cred`.
    pub task_cred: u32,
    /// Byte offset of `task_struct.fs`.
    pub task_fs: u32,
    /// Byte offset of `task_struct.files`.
    pub task_files: u32,
    /// Byte offsets in `struct cred`: uid, euid, suid, fsuid, gid, egid, sgid, fsgid.
    pub cred_ids: [u32; 8],
    /// Byte offsets in `struct cred`: cap_effective, cap_permitted, cap_inheritable.
    pub cred_caps: [u32; 3],
    /// Byte offset of `fs_struct.pwd` (a `struct path`).
    pub fs_pwd: u32,
    /// Byte offsets of `path.mnt` and `path.dentry`.
    pub path_mnt: u32,
    /// Byte offset of `path.dentry`.
    pub path_dentry: u32,
    /// Byte offset of `dentry.d_parent`.
    pub dentry_parent: u32,
    /// Byte offset of `dentry.d_name.name` (the `qstr` name pointer).
    pub dentry_name: u32,
    /// Byte offset of `vfsmount.mnt_root`.
    pub vfsmount_root: u32,
    /// Byte offset of the `vfsmount` embedded in `struct mount`.
    pub mount_mnt: u32,
    /// Byte offset of `mount.mnt_parent`.
    pub mount_parent: u32,
    /// Byte offset of `mount.mnt_mountpoint`.
    pub mount_mountpoint: u32,
    /// Byte offset of `files_struct.fdt`.
    pub files_fdt: u32,
    /// Byte offset of `fdtable.max_fds`.
    pub fdt_max_fds: u32,
    /// Byte offset of `fdtable.fd`.
    pub fdt_fd: u32,
    /// Byte offset of `file.f_path`.
    pub file_path: u32,
    /// Byte offset of `file.f_inode`.
    pub file_inode: u32,
    /// Byte offset of `file.private_data`.
    pub file_private: u32,
    /// Byte offset of `inode.i_ino`.
    pub inode_ino: u32,
    /// Byte offset of `inode.i_sb`.
    pub inode_sb: u32,
    /// Byte offset of `inode.i_nlink` (`__i_nlink`).
    pub inode_nlink: u32,
    /// Byte offset of `super_block.s_dev`.
    pub sb_dev: u32,
    /// Byte offset of `mm_struct.exe_file`.
    pub mm_exe_file: u32,
    /// Byte offset of `socket.sk`.
    pub socket_sk: u32,
    /// Byte offsets in `sock_common`: skc_daddr, skc_rcv_saddr, skc_dport, skc_num, skc_family,
    /// skc_v6_daddr, skc_v6_rcv_saddr.
    pub skc: [u32; 7],
    /// Byte offsets of `sock.sk_protocol` and `sock.sk_type`.
    pub sk_protocol: u32,
    /// Byte offset of `sock.sk_type`.
    pub sk_type: u32,
    /// Offsets in the `io_uring_submit_req` tracepoint record: opcode.
    pub tp_uring_opcode: u32,
    /// Number of entries in use in the sensitive-path prefix map.
    pub sensitive_count: u32,
    /// Number of entries in use in the muted-path prefix map.
    pub muted_count: u32,
    /// Number of entries in the muted-executable map (0: skip the lookup).
    pub muted_exe_count: u32,
    /// Number of entries in use in the sensitive file-name prefix map.
    pub sensitive_name_count: u32,
    /// Byte offset of `task_struct.signal` (0: the kernel has no terminals; none is read).
    pub task_signal: u32,
    /// Byte offset of `signal_struct.tty`.
    pub signal_tty: u32,
    /// Byte offsets of `tty_struct.driver` and `tty_struct.index`.
    pub tty_driver_index: [u32; 2],
    /// Byte offsets of `tty_driver.major` and `tty_driver.minor_start`.
    pub driver_major_minor: [u32; 2],
    /// Byte offset of `super_block.s_magic`.
    pub sb_magic: u32,
    /// Byte offsets of `ovl_inode.vfs_inode` and `ovl_inode.__upperdentry` (both 0: the
    /// kernel has no overlay file system; the flag is never set).
    pub ovl_inode_upper: [u32; 2],
    /// Byte offset of `inode.i_generation` (with device and inode number, a directory's
    /// identity that a reused inode number does not repeat).
    pub inode_generation: u32,
    /// Byte offsets of `task_struct.loginuid` and `task_struct.sessionid` (both 0: the kernel
    /// is built without audit; [`NO_LOGIN_ID`] is reported).
    pub task_login: [u32; 2],
    /// Wake the agent once this many bytes wait in the ring (0: on every record that finds
    /// the agent caught up, the kernel's default). Below it records are written without a
    /// wake-up and the agent reads them on its poll interval: one wake-up per batch instead of
    /// an interrupt per record on a busy host.
    pub ring_wakeup_bytes: u32,
}

/// A path prefix for in-kernel matching (sensitive reads, muted paths).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathPrefix {
    /// Bytes of `bytes` in use.
    pub len: u32,
    /// The prefix.
    pub bytes: [u8; PREFIX_MAX],
}

/// Longest path prefix matched in the kernel.
pub const PREFIX_MAX: usize = 64;
/// Most prefixes of each list.
pub const PREFIX_SLOTS: u32 = 16;
/// Name of the array of sensitive-path prefixes.
pub const SENSITIVE_MAP: &str = "KESTREL_SENSITIVE";
/// Name of the array of sensitive file-name prefixes (matched against the last component).
pub const SENSITIVE_NAMES_MAP: &str = "KESTREL_SENSITIVE_NAMES";
/// Name of the array of muted-path prefixes.
pub const MUTED_MAP: &str = "KESTREL_MUTED";
/// Name of the hash map of muted executables, keyed by [`FileKey`].
pub const MUTED_EXES_MAP: &str = "KESTREL_MUTED_EXES";

/// A file by device and inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// `super_block.s_dev`.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == 32);
const _: () = assert!(core::mem::size_of::<ExecRecord>() == 1400);
const _: () = assert!(core::mem::size_of::<SyscallRecord>() == 240 + STRINGS_SIZE);
const _: () = assert!(core::mem::size_of::<ForkRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ExitRecord>() == 56);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 296);
const _: () = assert!(ARGV_MAX.is_power_of_two() && FILENAME_MAX.is_power_of_two());

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers without padding (sizes asserted above).
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PathPrefix {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FileKey {}
}
