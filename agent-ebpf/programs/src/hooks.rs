//! The attach points: one `sys_enter_*` and one `sys_exit_*` tracepoint program per followed
//! syscall, each a thin wrapper passing its syscall id to the shared handlers, plus the io_uring
//! submission tracepoint. The agent attaches each program to the tracepoint of the same name.

use aya_ebpf::{
    helpers::generated::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use kestrel_ebpf_abi::{sys, CredentialSet};

use crate::{
    filter::wanted,
    maps::config,
    syscalls::{emit, enter, exit},
};

macro_rules! syscall_hooks {
    ($($id:path => $enter:ident, $exit:ident;)*) => {
        $(
            #[tracepoint]
            pub fn $enter(ctx: TracePointContext) -> u32 {
                enter(&ctx, $id)
            }

            #[tracepoint]
            pub fn $exit(ctx: TracePointContext) -> u32 {
                exit(&ctx, $id)
            }
        )*
    };
}

syscall_hooks! {
    sys::OPEN => sys_enter_open, sys_exit_open;
    sys::OPENAT => sys_enter_openat, sys_exit_openat;
    sys::OPENAT2 => sys_enter_openat2, sys_exit_openat2;
    sys::CREAT => sys_enter_creat, sys_exit_creat;
    sys::RENAME => sys_enter_rename, sys_exit_rename;
    sys::RENAMEAT => sys_enter_renameat, sys_exit_renameat;
    sys::RENAMEAT2 => sys_enter_renameat2, sys_exit_renameat2;
    sys::UNLINK => sys_enter_unlink, sys_exit_unlink;
    sys::UNLINKAT => sys_enter_unlinkat, sys_exit_unlinkat;
    sys::RMDIR => sys_enter_rmdir, sys_exit_rmdir;
    sys::CHMOD => sys_enter_chmod, sys_exit_chmod;
    sys::FCHMOD => sys_enter_fchmod, sys_exit_fchmod;
    sys::FCHMODAT => sys_enter_fchmodat, sys_exit_fchmodat;
    sys::FCHMODAT2 => sys_enter_fchmodat2, sys_exit_fchmodat2;
    sys::CHOWN => sys_enter_chown, sys_exit_chown;
    sys::FCHOWN => sys_enter_fchown, sys_exit_fchown;
    sys::LCHOWN => sys_enter_lchown, sys_exit_lchown;
    sys::FCHOWNAT => sys_enter_fchownat, sys_exit_fchownat;
    sys::LINK => sys_enter_link, sys_exit_link;
    sys::LINKAT => sys_enter_linkat, sys_exit_linkat;
    sys::SYMLINK => sys_enter_symlink, sys_exit_symlink;
    sys::SYMLINKAT => sys_enter_symlinkat, sys_exit_symlinkat;
    sys::TRUNCATE => sys_enter_truncate, sys_exit_truncate;
    sys::FTRUNCATE => sys_enter_ftruncate, sys_exit_ftruncate;
    sys::MOUNT => sys_enter_mount, sys_exit_mount;
    sys::UMOUNT => sys_enter_umount, sys_exit_umount;
    sys::UTIME => sys_enter_utime, sys_exit_utime;
    sys::UTIMES => sys_enter_utimes, sys_exit_utimes;
    sys::UTIMENSAT => sys_enter_utimensat, sys_exit_utimensat;
    sys::FUTIMESAT => sys_enter_futimesat, sys_exit_futimesat;
    sys::SETUID => sys_enter_setuid, sys_exit_setuid;
    sys::SETGID => sys_enter_setgid, sys_exit_setgid;
    sys::SETREUID => sys_enter_setreuid, sys_exit_setreuid;
    sys::SETREGID => sys_enter_setregid, sys_exit_setregid;
    sys::SETRESUID => sys_enter_setresuid, sys_exit_setresuid;
    sys::SETRESGID => sys_enter_setresgid, sys_exit_setresgid;
    sys::SETFSUID => sys_enter_setfsuid, sys_exit_setfsuid;
    sys::SETFSGID => sys_enter_setfsgid, sys_exit_setfsgid;
    sys::CAPSET => sys_enter_capset, sys_exit_capset;
    sys::PTRACE => sys_enter_ptrace, sys_exit_ptrace;
    sys::PROCESS_VM_WRITEV => sys_enter_process_vm_writev, sys_exit_process_vm_writev;
    sys::KILL => sys_enter_kill, sys_exit_kill;
    sys::TKILL => sys_enter_tkill, sys_exit_tkill;
    sys::TGKILL => sys_enter_tgkill, sys_exit_tgkill;
    sys::CONNECT => sys_enter_connect, sys_exit_connect;
    sys::ACCEPT => sys_enter_accept, sys_exit_accept;
    sys::ACCEPT4 => sys_enter_accept4, sys_exit_accept4;
    sys::LISTEN => sys_enter_listen, sys_exit_listen;
    sys::BIND => sys_enter_bind, sys_exit_bind;
    sys::SENDTO => sys_enter_sendto, sys_exit_sendto;
    sys::SOCKET => sys_enter_socket, sys_exit_socket;
    sys::INIT_MODULE => sys_enter_init_module, sys_exit_init_module;
    sys::FINIT_MODULE => sys_enter_finit_module, sys_exit_finit_module;
    sys::BPF => sys_enter_bpf, sys_exit_bpf;
    sys::MEMFD_CREATE => sys_enter_memfd_create, sys_exit_memfd_create;
    sys::SETNS => sys_enter_setns, sys_exit_setns;
    sys::UNSHARE => sys_enter_unshare, sys_exit_unshare;
    sys::IO_URING_SETUP => sys_enter_io_uring_setup, sys_exit_io_uring_setup;
    sys::RECVFROM => sys_enter_recvfrom, sys_exit_recvfrom;
    sys::RECVMSG => sys_enter_recvmsg, sys_exit_recvmsg;
    sys::CHDIR => sys_enter_chdir, sys_exit_chdir;
    sys::FCHDIR => sys_enter_fchdir, sys_exit_fchdir;
}

/// io_uring opcodes reported (file, socket and process-relevant operations).
const URING_OPCODES: [u8; 9] = [13, 16, 18, 28, 35, 36, 38, 39, 45];

/// `io_uring:io_uring_submit_req`: an operation submitted through a ring (these never pass
/// through the syscall tracepoints).
#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let config = config();
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    if !wanted(&config, tgid, kestrel_ebpf_abi::KIND_IO_URING) {
        return 0;
    }
    let Ok(opcode) = (unsafe { ctx.read_at::<u8>(config.tp_uring_opcode as usize) }) else {
        return 0;
    };
    if !URING_OPCODES.contains(&opcode) {
        return 0;
    }
    let mut args = [0u64; 6];
    args[0] = opcode as u64;
    let _ = emit(sys::IO_URING_SUBMIT, &args, &CredentialSet::default(), 0);
    0
}
