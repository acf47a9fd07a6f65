//! Followed syscalls: `sys_enter_*` keeps the arguments (and, for credential changes, the old
//! credentials) per thread; `sys_exit_*` adds the result and `emit` has the call's family fill
//! in its facts (strings, socket addresses, new credentials, ...), filters, and sends one
//! `SyscallRecord`, counting every record lost on the way. Descriptors (a dirfd, the file an
//! fd-based call acts on) are resolved to paths in user space: walking the dentry tree here
//! made the verifier exceed its instruction budget.
//! Each hook passes its syscall id as a constant, so the compiler keeps only that syscall's
//! branch in each program.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use kestrel_ebpf_abi::{
    linux::{AF_PACKET, BPF_PROG_LOAD, PR_SET_NAME},
    sys::{self, kind_of},
    Aux, CredentialSet, SyscallRecord, KIND_BPF, KIND_CREDENTIAL, KIND_FILE, KIND_IO_URING,
    KIND_MEMFD, KIND_MODULE, KIND_NAMESPACE, KIND_NETWORK, KIND_PROCESS_RENAME, STR_SLOT,
    SYSCALL_FIXED_SIZE,
};

use crate::{
    creds,
    dns::{from_dns_port, is_datagram_socket},
    file,
    filter::wanted,
    kernel::{credentials, current_task, header},
    maps::{config, count_drop, current_pid_tgid, wakeup_flags, EVENTS},
    net, objects, uring,
};

/// Offset of the first argument in a `sys_enter_*` record, and of `ret` in `sys_exit_*`.
const ARGS_OFFSET: usize = 16;

/// What `sys_enter` keeps for `sys_exit`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    args: [u64; 6],
    old_credentials: CredentialSet,
}

/// Calls in flight, by thread. LRU, so a thread that dies inside a call cannot leak an entry.
#[map]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(16384, 0);

/// The record being built (per CPU: far larger than the stack).
#[map]
static SCRATCH: PerCpuArray<SyscallRecord> = PerCpuArray::with_max_entries(1, 0);

/// `sys_enter_*` for syscall `id`.
#[inline(always)]
pub fn enter(ctx: &TracePointContext, id: u32) -> u32 {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    if !wanted(&config, tgid, kind_of(id)) {
        return 0;
    }
    let mut args = [0u64; 6];
    args[0] = unsafe { ctx.read_at::<u64>(ARGS_OFFSET) }.unwrap_or(0);
    // Receives are the most frequent calls hooked, and nearly all are on streams: decide on
    // the descriptor before reading anything else.
    if (id == sys::RECVFROM || id == sys::RECVMSG) && !is_datagram_socket(&config, args[0]) {
        return 0;
    }
    for (i, arg) in args.iter_mut().enumerate().skip(1) {
        *arg = unsafe { ctx.read_at::<u64>(ARGS_OFFSET + 8 * i) }.unwrap_or(0);
    }
    if !worth_following(id, &args, pid, tgid) {
        return 0;
    }
    let mut pending = Pending {
        args,
        old_credentials: CredentialSet::default(),
    };
    if kind_of(id) == KIND_CREDENTIAL {
        pending.old_credentials = credentials(&config, current_task()).unwrap_or_default();
    }
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        // Without its arguments the exit cannot report the call.
        count_drop(kind_of(id));
    }
    0
}

/// Calls whose arguments already say they are not interesting. A thread naming itself
/// (`pthread_setname_np`, done by every runtime's worker threads) is not a process renaming
/// itself: only the main thread's name is the process's.
#[inline(always)]
fn worth_following(id: u32, args: &[u64; 6], pid: u32, tgid: u32) -> bool {
    match id {
        sys::PRCTL => args[0] == PR_SET_NAME && pid == tgid,
        sys::SOCKET => args[0] == AF_PACKET,
        sys::SENDTO => args[4] != 0,
        sys::BPF => args[0] == BPF_PROG_LOAD,
        sys::KILL | sys::TGKILL => args[0] as u32 != tgid,
        _ => true,
    }
}

/// `sys_exit_*` for syscall `id`.
#[inline(always)]
pub fn exit(ctx: &TracePointContext, id: u32) -> u32 {
    let key = bpf_get_current_pid_tgid();
    let Some(pending) = (unsafe { PENDING.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING.remove(&key);
    let result: i64 = unsafe { ctx.read_at(ARGS_OFFSET) }.unwrap_or(0);
    if (id == sys::RECVFROM || id == sys::RECVMSG)
        && (result <= 0 || !from_dns_port(&config(), id, &pending.args))
    {
        return 0;
    }
    emit(id, &pending.args, &pending.old_credentials, result);
    0
}

/// Builds, filters and sends the record for a finished call; a record lost on the way (no
/// scratch space, a failed read it cannot do without, a full ring buffer) is counted as a drop
/// of its kind.
#[inline(always)]
pub fn emit(id: u32, args: &[u64; 6], old_credentials: &CredentialSet, result: i64) {
    if try_emit(id, args, old_credentials, result).is_err() {
        count_drop(kind_of(id));
    }
}

#[inline(always)]
fn try_emit(
    id: u32,
    args: &[u64; 6],
    old_credentials: &CredentialSet,
    result: i64,
) -> Result<(), i64> {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    let kind = kind_of(id);
    let record = SCRATCH.get_ptr_mut(0).ok_or(-12i64)?;
    let record = unsafe { &mut *record };
    let task = current_task();
    record.header = header(kind, 0, pid, tgid);
    record.syscall = id;
    record.flags = 0;
    record.result = result;
    record.args = *args;
    record.aux = Aux::ZERO;
    record.str_len = [0; 2];
    record.reserved = 0;
    record.euid = credentials(&config, task).map(|c| c.euid).unwrap_or(0);
    let keep = match kind {
        KIND_FILE => file::fill(&config, id, record)?,
        KIND_NETWORK => net::fill(&config, task, id, result, record)?,
        KIND_CREDENTIAL => creds::fill(&config, task, old_credentials, record)?,
        KIND_MODULE => objects::fill_named(id, record),
        KIND_BPF => objects::fill_bpf_program(args[1], record),
        KIND_MEMFD => objects::fill_named(id, record),
        KIND_NAMESPACE => true,
        KIND_PROCESS_RENAME => objects::fill_named(id, record),
        KIND_IO_URING => uring::fill(id, args, record),
        // ptrace and signals: the arguments say it all.
        _ => true,
    };
    if keep {
        submit(record)?;
    }
    Ok(())
}

/// Sends the used prefix of the record (an error when the ring buffer is full).
#[inline(always)]
fn submit(record: &mut SyscallRecord) -> Result<(), i64> {
    let used = if record.str_len[1] > 0 {
        STR_SLOT + record.str_len[1] as usize + 1
    } else if record.str_len[0] > 0 {
        record.str_len[0] as usize + 1
    } else {
        0
    };
    let mut size = SYSCALL_FIXED_SIZE + used;
    if size > core::mem::size_of::<SyscallRecord>() {
        size = core::mem::size_of::<SyscallRecord>();
    }
    record.header.size = size as u32;
    let bytes =
        unsafe { core::slice::from_raw_parts(record as *const SyscallRecord as *const u8, size) };
    EVENTS
        .output::<[u8]>(bytes, wakeup_flags())
        .map_err(|e| e as i64)
}
