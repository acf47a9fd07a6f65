//! Kernel objects loaded or created: BPF programs (type and name), kernel modules and memfds
//! (the names and parameters the syscall table names as strings), and a process's new name.
//! Namespace changes need nothing beyond their arguments.

use aya_ebpf::helpers::bpf_probe_read_user;
use kestrel_ebpf_abi::{linux::BPF_ATTR_PROG_NAME, SyscallRecord};

use crate::strings::copy_string_args;

/// Module loads, memfd creations and process renames: the string arguments the syscall table
/// names.
#[inline(always)]
pub fn fill_named(id: u32, record: &mut SyscallRecord) -> bool {
    copy_string_args(id, record);
    true
}

/// `bpf(BPF_PROG_LOAD)`: the program type and name from the caller's `union bpf_attr` at `attr`.
#[inline(always)]
pub fn fill_bpf_program(attr: u64, record: &mut SyscallRecord) -> bool {
    let prog_type: u32 = unsafe { bpf_probe_read_user(attr as *const u32) }.unwrap_or(0);
    let name: [u8; 16] =
        unsafe { bpf_probe_read_user((attr + BPF_ATTR_PROG_NAME) as *const [u8; 16]) }
            .unwrap_or([0; 16]);
    let bpf = record.aux.bpf_mut();
    bpf.prog_type = prog_type as u64;
    bpf.prog_name = name;
    true
}
