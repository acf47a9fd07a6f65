//! Process lifecycle: exec, fork (new processes only, not threads) and exit.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_uid_gid, bpf_probe_read_kernel_str_bytes,
        generated::bpf_probe_read_user,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use kestrel_ebpf_abi::{
    ExecRecord, ExitRecord, ForkRecord, ProbeConfig, ARGV_MAX, EXEC_ARGV_TRUNCATED,
    EXEC_ARGV_UNREADABLE, EXEC_FILENAME_TRUNCATED, EXEC_MEMFD, EXEC_UPPER_LAYER, FILENAME_MAX,
    KIND_EXEC, KIND_EXIT, KIND_FORK, NO_LOGIN_ID,
};

use crate::{
    filter::wanted,
    kernel::{
        controlling_tty, credentials, current_task, exe_file, file_identity, header,
        in_upper_layer, parent_tgid, read_at, Ptr as TaskPtr,
    },
    maps::{config, count_drop, current_pid_tgid, wakeup_flags, EVENTS},
};

/// The most argv bytes copied: one less than the buffer, so a mask bounds the length.
const ARGV_READ_MAX: u64 = ARGV_MAX as u64 - 1;

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_exec(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            count_drop(KIND_EXEC);
            1
        }
    }
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    if !wanted(&config, tgid, KIND_EXEC) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        return Err(-1);
    };
    let record = unsafe { &mut *entry.as_mut_ptr() };
    let task = current_task();
    let uid_gid = bpf_get_current_uid_gid();
    record.header = header(KIND_EXEC, core::mem::size_of::<ExecRecord>(), pid, tgid);
    record.uid = uid_gid as u32;
    record.gid = (uid_gid >> 32) as u32;
    record.ppid = parent_tgid(&config, task).unwrap_or(0);
    record.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    record.flags = 0;
    record.filename_len = 0;
    record.argv_len = 0;
    read_filename(ctx, &config, record);
    read_argv(&config, task, record);
    read_image(&config, task, record);
    entry.submit(wakeup_flags());
    Ok(())
}

/// Effective ids and capabilities, and the executed file's identity (and whether it is a memfd
/// or has no link left). The working directory is left to user space.
#[inline(always)]
fn read_image(config: &ProbeConfig, task: TaskPtr, record: &mut ExecRecord) {
    let credentials = credentials(config, task).unwrap_or_default();
    record.euid = credentials.euid;
    record.egid = credentials.egid;
    record.cap_effective = credentials.cap_effective;
    record.exe_dev = 0;
    record.exe_inode = 0;
    record.exe_nlink = 1;
    record.tty = controlling_tty(config, task).unwrap_or(0);
    (record.loginuid, record.sessionid) = login_ids(config, task);
    if let Ok(file) = exe_file(config, task) {
        if file != 0 {
            if let Ok((dev, ino, nlink)) = file_identity(config, file) {
                record.exe_dev = dev;
                record.exe_inode = ino;
                record.exe_nlink = nlink;
            }
            if is_memfd(config, file) {
                record.flags |= EXEC_MEMFD;
            }
            if in_upper_layer(config, file).unwrap_or(false) {
                record.flags |= EXEC_UPPER_LAYER;
            }
        }
    }
}

/// The task's audit login uid and session id ([`NO_LOGIN_ID`] each without audit or when
/// unreadable).
#[inline(always)]
fn login_ids(config: &ProbeConfig, task: TaskPtr) -> (u32, u32) {
    let [loginuid, sessionid] = config.task_login;
    if loginuid == 0 || sessionid == 0 {
        return (NO_LOGIN_ID, NO_LOGIN_ID);
    }
    (
        read_at(task, loginuid).unwrap_or(NO_LOGIN_ID),
        read_at(task, sessionid).unwrap_or(NO_LOGIN_ID),
    )
}

/// The file's name starts with `memfd:` (how the kernel names memfd_create files).
#[inline(always)]
fn is_memfd(config: &ProbeConfig, file: TaskPtr) -> bool {
    let Ok(dentry) = read_at::<u64>(file + config.file_path as u64, config.path_dentry) else {
        return false;
    };
    let Ok(name) = read_at::<u64>(dentry, config.dentry_name) else {
        return false;
    };
    matches!(read_at::<[u8; 6]>(name, 0), Ok(prefix) if &prefix == b"memfd:")
}

/// Copies the `filename` tracepoint field (a `__data_loc`: offset in the low 16 bits, length
/// including the NUL in the high 16 bits).
#[inline(always)]
fn read_filename(ctx: &TracePointContext, config: &ProbeConfig, record: &mut ExecRecord) {
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(config.tp_exec_filename as usize) }) else {
        return;
    };
    let source = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    if let Ok(name) = unsafe { bpf_probe_read_kernel_str_bytes(source, &mut record.filename) } {
        record.filename_len = name.len() as u32;
    }
    if (loc >> 16) as usize > FILENAME_MAX {
        record.flags |= EXEC_FILENAME_TRUNCATED;
    }
}

/// Copies the new argument vector from `mm->arg_start..arg_end` of the new process image.
#[inline(always)]
fn read_argv(config: &ProbeConfig, task: TaskPtr, record: &mut ExecRecord) {
    let Ok(mm) = read_at::<u64>(task, config.task_mm) else {
        record.flags |= EXEC_ARGV_UNREADABLE;
        return;
    };
    let (Ok(start), Ok(end)) = (
        read_at::<u64>(mm, config.mm_arg_start),
        read_at::<u64>(mm, config.mm_arg_end),
    ) else {
        record.flags |= EXEC_ARGV_UNREADABLE;
        return;
    };
    if end <= start {
        return;
    }
    let mut len = end - start;
    if len > ARGV_READ_MAX {
        len = ARGV_READ_MAX;
        record.flags |= EXEC_ARGV_TRUNCATED;
    }
    // The mask changes nothing (len <= ARGV_READ_MAX) but gives the verifier its bound.
    let len = (len & ARGV_READ_MAX) as u32;
    let copied = unsafe {
        bpf_probe_read_user(
            record.argv.as_mut_ptr() as *mut _,
            len,
            start as *const core::ffi::c_void,
        )
    };
    if copied == 0 {
        record.argv_len = len;
    } else {
        record.flags |= EXEC_ARGV_UNREADABLE;
    }
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    match try_fork(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            count_drop(KIND_FORK);
            1
        }
    }
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    if !wanted(&config, tgid, KIND_FORK) {
        return Ok(());
    }
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child: u64 = ctx.arg(1);
    let child_pid: u32 = read_at(child, config.task_pid)?;
    let child_tgid: u32 = read_at(child, config.task_tgid)?;
    if child_pid != child_tgid {
        return Ok(()); // a new thread, not a new process
    }
    let Some(mut entry) = EVENTS.reserve::<ForkRecord>(0) else {
        return Err(-1);
    };
    let record = unsafe { &mut *entry.as_mut_ptr() };
    let uid_gid = bpf_get_current_uid_gid();
    record.header = header(KIND_FORK, core::mem::size_of::<ForkRecord>(), pid, tgid);
    record.child_pid = child_pid;
    record.child_tgid = child_tgid;
    record.uid = uid_gid as u32;
    record.gid = (uid_gid >> 32) as u32;
    record.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    entry.submit(wakeup_flags());
    Ok(())
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_exit(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            count_drop(KIND_EXIT);
            1
        }
    }
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    if !wanted(&config, tgid, KIND_EXIT) {
        return Ok(());
    }
    let group_dead: u8 =
        unsafe { ctx.read_at(config.tp_exit_group_dead as usize) }.map_err(|e| e as i64)?;
    if group_dead == 0 {
        return Ok(()); // other threads of the process live on
    }
    let Some(mut entry) = EVENTS.reserve::<ExitRecord>(0) else {
        return Err(-1);
    };
    let record = unsafe { &mut *entry.as_mut_ptr() };
    let task = current_task();
    record.header = header(KIND_EXIT, core::mem::size_of::<ExitRecord>(), pid, tgid);
    record.ppid = parent_tgid(&config, task).unwrap_or(0);
    record.exit_code = read_at::<u32>(task, config.task_exit_code).unwrap_or(0);
    record.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    entry.submit(wakeup_flags());
    Ok(())
}
