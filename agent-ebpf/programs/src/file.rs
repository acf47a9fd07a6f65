//! File calls: open flags and mode, the file-system type of a mount, muted and sensitive paths,
//! directory opens reported once a minute, and the directories relative paths are relative to.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::map,
    maps::LruHashMap,
};
use kestrel_ebpf_abi::{
    linux::{AT_FDCWD, O_ACCMODE, O_CREAT, O_DIRECTORY, O_TRUNC},
    sys, DirectoryId, ProbeConfig, SyscallRecord, STR_SLOT, SYS_DIRECTORY_OPEN, SYS_SENSITIVE_READ,
};

use crate::{
    filter::{is_muted, is_sensitive, names_other_process_memory},
    kernel::{current_task, fd_file, inode_identity},
    maps::current_pid_tgid,
    strings::copy_string_args,
};

/// How far back a file name is looked for (names of sensitive keys are short).
const NAME_SCAN: u32 = 64;

/// When each directory (device, inode) was last reported by a directory open.
#[map]
static DIRECTORIES_REPORTED: LruHashMap<[u64; 2], u64> = LruHashMap::with_max_entries(32768, 0);

/// How often an open of the same directory is reported again (the agent may have forgotten
/// it in between, or it may have moved).
const DIRECTORY_REPORT_INTERVAL_NS: u64 = 60_000_000_000;

/// The path in slot 0, with the offset of its last component and whether it is absolute
/// (relative paths are made absolute in user space).
#[inline(always)]
fn first_path(record: &SyscallRecord) -> Option<(*const u8, u32, u32, bool)> {
    let len = record.str_len[0];
    if len == 0 {
        return None;
    }
    let absolute = record.strings[0] == b'/';
    Some((
        record.strings.as_ptr(),
        len,
        basename_start(record, len),
        absolute,
    ))
}

/// Offset just after the last `/` in slot 0, or 0 for a path that is one name (looking back
/// at most `NAME_SCAN` bytes; a longer file name is not matched by name).
#[inline(always)]
fn basename_start(record: &SyscallRecord, len: u32) -> u32 {
    for back in 1..NAME_SCAN {
        if back > len {
            return 0;
        }
        let at = (len - back) as usize & (STR_SLOT - 1);
        if record.strings[at] == b'/' {
            return at as u32 + 1;
        }
    }
    len
}

/// File calls: which arguments are paths, file descriptors and directory descriptors.
#[inline(always)]
pub fn fill(config: &ProbeConfig, id: u32, record: &mut SyscallRecord) -> Result<bool, i64> {
    let a = record.args;
    copy_string_args(id, record);
    // Every successful change of directory, muted or not: relative paths are resolved against
    // the directory user space follows from them.
    if matches!(id, sys::CHDIR | sys::FCHDIR) {
        relative_bases(config, id, record);
        return Ok(record.result == 0);
    }
    let is_open = matches!(id, sys::OPEN | sys::OPENAT | sys::OPENAT2 | sys::CREAT);
    let mut write_like = true;
    if is_open {
        let (flags, mode) = match id {
            sys::OPEN => (a[1], a[2]),
            sys::OPENAT => (a[2], a[3]),
            sys::OPENAT2 => {
                let how: [u64; 2] =
                    unsafe { bpf_probe_read_user(a[2] as *const [u64; 2]) }.unwrap_or([0; 2]);
                (how[0], how[1])
            }
            _ => (O_CREAT | O_TRUNC | 1, a[1]),
        };
        let file = record.aux.file_mut();
        file.open_flags = flags;
        file.mode = mode;
        write_like = flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0;
    }
    if id == sys::MOUNT {
        let fs_type = &mut record.aux.file_mut().fs_type;
        let _ = unsafe { bpf_probe_read_user_str_bytes(a[2] as *const u8, fs_type) };
    }
    let Some((path, len, leaf, absolute)) = first_path(record) else {
        return Ok(write_like);
    };
    // Muted prefixes are absolute; a relative path is only known in user space.
    if absolute && is_muted(config, path, len) {
        return Ok(false);
    }
    if !write_like {
        if record.aux.file().open_flags & O_DIRECTORY != 0 && record.result >= 0 {
            let opened = directory_identity(config, record.result as u64);
            record.aux.file_mut().opened_directory = opened;
            if !directory_worth_reporting(opened) {
                return Ok(false);
            }
            record.flags |= SYS_DIRECTORY_OPEN;
            relative_bases(config, id, record);
            return Ok(true);
        }
        // A relative read is caught by its file name (sensitive prefixes are absolute).
        let (_, tgid) = current_pid_tgid();
        if !is_sensitive(config, path, len, leaf)
            && !(absolute && names_other_process_memory(path, len, tgid))
        {
            return Ok(false);
        }
        record.flags |= SYS_SENSITIVE_READ;
    }
    relative_bases(config, id, record);
    Ok(true)
}

/// For a record that is sent: which directory each relative path is relative to, by identity
/// (user space knows the paths of directories from their opens, also once the descriptor is
/// closed or the process gone).
#[inline(always)]
fn relative_bases(config: &ProbeConfig, id: u32, record: &mut SyscallRecord) {
    let (first, second) = directory_fds(id, &record.args);
    if id == sys::FCHDIR || (record.str_len[0] > 0 && record.strings[0] != b'/') {
        record.aux.file_mut().path_directories[0] = directory_identity(config, first);
    }
    if record.str_len[1] > 0 && record.strings[STR_SLOT] != b'/' {
        record.aux.file_mut().path_directories[1] = directory_identity(config, second);
    }
}

/// A directory open is reported at most once a minute per directory: the agent remembers the
/// path, so `find` or `ls` going over the same directories again costs no records.
#[inline(always)]
fn directory_worth_reporting(identity: DirectoryId) -> bool {
    if identity.inode == 0 {
        return false;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let key = [identity.generation_dev, identity.inode];
    if let Some(&last) = unsafe { DIRECTORIES_REPORTED.get(&key) } {
        if now.wrapping_sub(last) < DIRECTORY_REPORT_INTERVAL_NS {
            return false;
        }
    }
    let _ = DIRECTORIES_REPORTED.insert(&key, &now, 0);
    true
}

/// The directory descriptors of the first and second path arguments (`AT_FDCWD` for calls
/// without one; for `fchdir`, its descriptor).
#[inline(always)]
fn directory_fds(id: u32, a: &[u64; 6]) -> (u64, u64) {
    let [first, second] = sys::directory_args(id);
    let arg = |i: usize| a.get(i).copied().unwrap_or(AT_FDCWD as u64);
    (arg(first), arg(second))
}

/// The identity of directory descriptor `fd`; zero for the working directory or a descriptor
/// that is not open.
#[inline(always)]
fn directory_identity(config: &ProbeConfig, fd: u64) -> DirectoryId {
    if fd as i32 == AT_FDCWD {
        return DirectoryId::default();
    }
    let Ok(file) = fd_file(config, current_task(), fd as u32 as u64) else {
        return DirectoryId::default();
    };
    inode_identity(config, file).unwrap_or_default()
}
