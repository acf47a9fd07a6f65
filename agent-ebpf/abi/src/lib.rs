//! The contract between Kestrel's eBPF programs and the agent: `#[repr(C)]` records written into
//! the ring buffer, the kind constants, and the load-time configuration the agent hands the
//! programs. `no_std`, no `Option`, no `bool`: the same bytes must mean the same thing on both sides.
//!
//! Every record starts with a [`RecordHeader`]; `header.kind` says which struct follows and
//! `header.size` is the size of the whole record. Sizes are asserted at compile time so a layout
//! change is a build error rather than silent corruption.

#![no_std]

/// A process replaced its image: [`ExecRecord`].
pub const KIND_EXEC: u32 = 1;
/// A new process (not a thread) was created: [`ForkRecord`].
pub const KIND_FORK: u32 = 2;
/// The last thread of a process exited: [`ExitRecord`].
pub const KIND_EXIT: u32 = 3;
/// Number of slots in per-kind arrays (index 0 is unused, kinds start at 1).
pub const KIND_SLOTS: u32 = 4;

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

/// Name of the global [`ProbeConfig`] in the eBPF object, set by the agent at load time.
pub const CONFIG_GLOBAL: &str = "KESTREL_CONFIG";
/// Name of the ring buffer map the programs write records into.
pub const EVENTS_MAP: &str = "KESTREL_EVENTS";
/// Name of the per-CPU array (indexed by kind) counting records lost because the ring buffer was full.
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
}

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
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == 32);
const _: () = assert!(core::mem::size_of::<ExecRecord>() == 1352);
const _: () = assert!(core::mem::size_of::<ForkRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ExitRecord>() == 56);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 40);
const _: () = assert!(ARGV_MAX.is_power_of_two() && FILENAME_MAX.is_power_of_two());

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers without padding (sizes asserted above).
    unsafe impl aya::Pod for super::ProbeConfig {}
}
