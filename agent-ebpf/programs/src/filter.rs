//! In-kernel filtering, before anything reaches the ring buffer: enabled kinds, the agent's own
//! process, muted executables and path prefixes, sensitive-path matching for read-only opens
//! (a sensitive prefix or name, or the memory of another process under `/proc`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use kestrel_ebpf_abi::{FileKey, PathPrefix, ProbeConfig, PREFIX_MAX, PREFIX_SLOTS, STR_SLOT};

use crate::kernel::{current_task, exe_file, file_identity};

/// Prefixes of paths whose read-only opens are reported.
#[map(name = "KESTREL_SENSITIVE")]
static SENSITIVE: Array<PathPrefix> = Array::with_max_entries(PREFIX_SLOTS, 0);

/// Prefixes of file names (last path component) whose read-only opens are reported.
#[map(name = "KESTREL_SENSITIVE_NAMES")]
static SENSITIVE_NAMES: Array<PathPrefix> = Array::with_max_entries(PREFIX_SLOTS, 0);

/// Prefixes of paths whose file events are not reported.
#[map(name = "KESTREL_MUTED")]
static MUTED: Array<PathPrefix> = Array::with_max_entries(PREFIX_SLOTS, 0);

/// Executables (by device and inode) whose processes are not reported.
#[map(name = "KESTREL_MUTED_EXES")]
static MUTED_EXES: HashMap<FileKey, u8> = HashMap::with_max_entries(256, 0);

/// Whether an event of `kind` from process `tgid` may be reported at all.
#[inline(always)]
pub fn wanted(config: &ProbeConfig, tgid: u32, kind: u32) -> bool {
    if config.agent_tgid != 0 && config.agent_tgid == tgid {
        return false;
    }
    if config.only_tgid != 0 && config.only_tgid != tgid {
        return false;
    }
    if kind >= 32 || config.kinds_enabled & (1 << kind) == 0 {
        return false;
    }
    !exe_is_muted(config)
}

/// The current process runs a muted executable.
#[inline(always)]
fn exe_is_muted(config: &ProbeConfig) -> bool {
    if config.muted_exe_count == 0 {
        return false;
    }
    let Ok(file) = exe_file(config, current_task()) else {
        return false;
    };
    if file == 0 {
        return false;
    }
    let Ok((dev, ino, _)) = file_identity(config, file) else {
        return false;
    };
    unsafe { MUTED_EXES.get(&FileKey { dev, ino }) }.is_some()
}

/// `path` (of `len` bytes, last component at `leaf`) starts with one of the sensitive
/// prefixes, or its last component starts with one of the sensitive name prefixes.
#[inline(always)]
pub fn is_sensitive(config: &ProbeConfig, path: *const u8, len: u32, leaf: u32) -> bool {
    if matches_any(&SENSITIVE, config.sensitive_count, path, len) {
        return true;
    }
    if config.sensitive_name_count == 0 || leaf >= len {
        return false;
    }
    let leaf = leaf & (STR_SLOT as u32 - 1);
    matches_any(
        &SENSITIVE_NAMES,
        config.sensitive_name_count,
        unsafe { path.add(leaf as usize) },
        len - leaf,
    )
}

/// Most digits a pid or tid has (`pid_max` is at most 2^22).
const MAX_PID_DIGITS: usize = 10;

/// `path` (of `len` bytes, `STR_SLOT` readable) is `/proc/PID/mem` or `/proc/PID/maps`, or
/// the same under `task/TID/`, of a process other than `tgid`: reading it dumps another
/// process's memory (maps tells where to read). `/proc/self/...` and the caller's own pid are
/// not.
#[inline(always)]
pub fn names_other_process_memory(path: *const u8, len: u32, tgid: u32) -> bool {
    let len = len as usize;
    // "/proc/1/mem" is the shortest; a pid, "task/", a tid and "maps" fit well within 48.
    if !(11..=48).contains(&len) {
        return false;
    }
    let at = |i: usize| unsafe { *path.add(i & (STR_SLOT - 1)) };
    for (i, &expected) in b"/proc/".iter().enumerate() {
        if at(i) != expected {
            return false;
        }
    }
    let Some((pid, mut next)) = number_at(&at, 6) else {
        return false;
    };
    if pid == tgid {
        return false;
    }
    if at(next) == b't' {
        for (i, &expected) in b"task/".iter().enumerate() {
            if at(next + i) != expected {
                return false;
            }
        }
        let Some((_, after_tid)) = number_at(&at, next + 5) else {
            return false;
        };
        next = after_tid;
    }
    let rest = len.saturating_sub(next);
    (rest == 3 && at(next) == b'm' && at(next + 1) == b'e' && at(next + 2) == b'm')
        || (rest == 4
            && at(next) == b'm'
            && at(next + 1) == b'a'
            && at(next + 2) == b'p'
            && at(next + 3) == b's')
}

/// The decimal number starting at `start` and ending with a `/`, with the offset just past
/// the `/`; `None` when there is no digit there or no `/` after them.
#[inline(always)]
fn number_at(at: &impl Fn(usize) -> u8, start: usize) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for digit in 0..MAX_PID_DIGITS {
        let c = at(start + digit);
        if c == b'/' && digit > 0 {
            return Some((value, start + digit + 1));
        }
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.wrapping_mul(10).wrapping_add((c - b'0') as u32);
    }
    None
}

/// `path` (of `len` bytes) starts with one of the muted prefixes.
#[inline(always)]
pub fn is_muted(config: &ProbeConfig, path: *const u8, len: u32) -> bool {
    matches_any(&MUTED, config.muted_count, path, len)
}

#[inline(always)]
fn matches_any(prefixes: &Array<PathPrefix>, count: u32, path: *const u8, len: u32) -> bool {
    for index in 0..PREFIX_SLOTS {
        if index >= count {
            break;
        }
        let Some(prefix) = prefixes.get(index) else {
            break;
        };
        if starts_with(path, len, prefix) {
            return true;
        }
    }
    false
}

/// Compares eight bytes at a time (the caller guarantees `PREFIX_MAX` readable bytes at
/// `path`); bytes past the prefix are masked off.
#[inline(always)]
fn starts_with(path: *const u8, len: u32, prefix: &PathPrefix) -> bool {
    let want = prefix.len as usize;
    if want == 0 || want > PREFIX_MAX || want > len as usize {
        return false;
    }
    for word in 0..PREFIX_MAX / 8 {
        let done = word * 8;
        if done >= want {
            break;
        }
        let remaining = want - done;
        let mask = if remaining >= 8 {
            u64::MAX
        } else {
            (1u64 << (remaining * 8)) - 1
        };
        let have = unsafe { core::ptr::read_unaligned(path.add(done) as *const u64) };
        let expected =
            unsafe { core::ptr::read_unaligned(prefix.bytes.as_ptr().add(done) as *const u64) };
        if (have ^ expected) & mask != 0 {
            return false;
        }
    }
    true
}
