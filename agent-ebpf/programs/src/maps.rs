//! Maps and globals shared by all programs: the event ring buffer, the drop counters and the
//! load-time configuration.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use kestrel_ebpf_abi::{ProbeConfig, DEFAULT_RING_BYTES, KIND_SLOTS};

/// Every record goes through this ring buffer. The agent may resize it at load time.
#[map(name = "KESTREL_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// The flags to commit a record with: a wake-up only once `ring_wakeup_bytes` are waiting
/// (the agent polls for the rest), the kernel's default when that is 0.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    // One field, not the whole configuration: callers already hold a copy on the small stack.
    let threshold =
        unsafe { core::ptr::read_volatile(&raw const KESTREL_CONFIG.ring_wakeup_bytes) } as u64;
    if threshold == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Records lost, per CPU, indexed by kind: the ring buffer was full, or a read or map update
/// the record could not do without failed (see the ABI's `DROPS_MAP`).
#[map(name = "KESTREL_DROPS")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

/// Offsets and filters, written by the agent before load.
#[unsafe(no_mangle)]
// SAFETY: all-zero integers are a valid ProbeConfig (every kind off until the agent sets it).
static KESTREL_CONFIG: ProbeConfig = unsafe { core::mem::zeroed() };

/// The configuration as set by the agent (a volatile read, so the compiler cannot fold the
/// placeholder zeros above into the code).
#[inline(always)]
pub fn config() -> ProbeConfig {
    unsafe { core::ptr::read_volatile(&KESTREL_CONFIG) }
}

/// Counts one record of `kind` lost on this CPU (every path that loses a record calls this).
#[inline(always)]
pub fn count_drop(kind: u32) {
    if let Some(counter) = DROPS.get_ptr_mut(kind) {
        // Per-CPU slot: no other writer can race with us.
        unsafe { *counter += 1 };
    }
}

/// The current task's (thread id, process id).
#[inline(always)]
pub fn current_pid_tgid() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid as u32, (pid_tgid >> 32) as u32)
}
