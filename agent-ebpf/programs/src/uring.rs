//! io_uring: a ring set up (its size and flags) and an operation submitted through one (its
//! opcode, passed by the `io_uring_submit_req` hook as the first argument).

use aya_ebpf::helpers::bpf_probe_read_user;
use kestrel_ebpf_abi::{linux::IO_URING_PARAMS_FLAGS, sys, SyscallRecord};

/// `io_uring_setup` and submissions: the opcode, or the ring's entries and flags.
#[inline(always)]
pub fn fill(id: u32, args: &[u64; 6], record: &mut SyscallRecord) -> bool {
    let uring = record.aux.uring_mut();
    if id == sys::IO_URING_SUBMIT {
        uring.opcode = args[0];
    } else {
        let flags: u32 =
            unsafe { bpf_probe_read_user((args[1] + IO_URING_PARAMS_FLAGS) as *const u32) }
                .unwrap_or(0);
        uring.entries = args[0];
        uring.flags = flags as u64;
    }
    true
}
