//! Reads of kernel structures at offsets the agent resolved from BTF, and the common header.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns},
};
use kestrel_ebpf_abi::{ProbeConfig, RecordHeader};

/// A `struct task_struct *`, as an address.
pub type TaskPtr = u64;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read_at<T>(base: u64, offset: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|e| e as i64)
}

/// The task the program runs in.
#[inline(always)]
pub fn current_task() -> TaskPtr {
    unsafe { bpf_get_current_task() }
}

/// Process id of the task's parent (`task->real_parent->tgid`).
#[inline(always)]
pub fn parent_tgid(config: &ProbeConfig, task: TaskPtr) -> Result<u32, i64> {
    let parent: u64 = read_at(task, config.task_real_parent)?;
    read_at(parent, config.task_tgid)
}

/// The header for a record of `kind` and `size` bytes about the current task.
#[inline(always)]
pub fn header(kind: u32, size: usize, pid: u32, tgid: u32) -> RecordHeader {
    RecordHeader {
        kind,
        size: size as u32,
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid,
        tgid,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    }
}
