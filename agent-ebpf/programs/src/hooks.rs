//! The attach points: one `sys_enter_*` and one `sys_exit_*` tracepoint program per followed
//! syscall, generated from the ABI's syscall table, each a thin wrapper passing its syscall id
//! to the shared handlers, plus the io_uring submission tracepoint. The agent attaches each
//! program to the tracepoint of the same name.

use aya_ebpf::{
    helpers::generated::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use kestrel_ebpf_abi::{sys, CredentialSet};

use crate::{
    filter::wanted,
    maps::config,
    syscall::{emit, enter, exit},
};

/// One `sys_enter_*` and one `sys_exit_*` tracepoint program per row of the syscall table
/// that has programs.
macro_rules! syscall_hooks {
    ($(
        $(#[$doc:meta])*
        $constant:ident = $id:literal, $name:literal, args $arity:literal, $kind:ident,
        strings [$s0:tt, $s1:tt], dirs [$d0:tt, $d1:tt], programs ($($enter:ident, $exit:ident)?);
    )*) => {
        $($(
            #[tracepoint]
            pub fn $enter(ctx: TracePointContext) -> u32 {
                enter(&ctx, sys::$constant)
            }

            #[tracepoint]
            pub fn $exit(ctx: TracePointContext) -> u32 {
                exit(&ctx, sys::$constant)
            }
        )?)*
    };
}

kestrel_ebpf_abi::syscall_table!(syscall_hooks);

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
    if !sys::URING_OPCODES.contains(&opcode) {
        return 0;
    }
    let mut args = [0u64; 6];
    args[0] = opcode as u64;
    emit(sys::IO_URING_SUBMIT, &args, &CredentialSet::default(), 0);
    0
}
