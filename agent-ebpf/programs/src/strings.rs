//! The two string slots of a `SyscallRecord`: user strings (paths, names, parameters) copied in
//! with their lengths, and flagged when cut short.

use aya_ebpf::helpers::bpf_probe_read_user_str_bytes;
use kestrel_ebpf_abi::{sys, SyscallRecord, STR_SLOT, SYS_STR0_TRUNCATED, SYS_STR1_TRUNCATED};

/// Copies the arguments the syscall table names for the string slots (the paths, a name,
/// parameters) into them.
#[inline(always)]
pub fn copy_string_args(id: u32, record: &mut SyscallRecord) {
    let [first, second] = sys::string_args(id);
    let arg = |i: usize| record.args.get(i).copied().unwrap_or(0);
    let (first, second) = (arg(first), arg(second));
    copy_user_str(first, record, 0);
    copy_user_str(second, record, 1);
}

/// Copies a NUL-terminated user string into string slot `slot` (0 or 1).
#[inline(always)]
fn copy_user_str(address: u64, record: &mut SyscallRecord, slot: usize) {
    if address == 0 {
        return;
    }
    let start = if slot == 0 { 0 } else { STR_SLOT };
    let dst = &mut record.strings[start..start + STR_SLOT];
    if let Ok(bytes) = unsafe { bpf_probe_read_user_str_bytes(address as *const u8, dst) } {
        let len = bytes.len() as u32;
        record.str_len[slot & 1] = len;
        if len as usize >= STR_SLOT - 1 {
            record.flags |= if slot == 0 {
                SYS_STR0_TRUNCATED
            } else {
                SYS_STR1_TRUNCATED
            };
        }
    }
}
