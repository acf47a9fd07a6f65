//! File calls to file events: which path argument is which, made absolute against the
//! directory it is relative to, and the operation with its flags, mode and owner.

use kestrel_ebpf_abi::{
    linux::{AT_FDCWD, AT_REMOVEDIR, O_CREAT, O_TRUNC},
    sys,
};
use kestrel_proto::{FileEvent, FileOp};

use crate::{
    enrich::paths::{absolute, fd_path},
    kernel::decode::{c_string, Syscall},
};

/// What the relative paths of a call are resolved against, as far as the agent knows it.
#[derive(Debug, Clone, Default)]
pub struct Bases<'a> {
    /// The process's working directory (empty: unknown).
    pub cwd: &'a str,
    /// The paths of the directory descriptors the first and second path are relative to, when
    /// the agent knows those directories.
    pub directories: [Option<String>; 2],
}

/// The file event of a file call, its paths resolved against `bases`.
pub fn event(s: &Syscall, bases: &Bases) -> FileEvent {
    let a = s.args;
    // The descriptor's path is the kernel's own view of the file, while it is still open.
    let first = acted_on_fd(s)
        .and_then(|fd| fd_path(s.common.tgid, fd))
        .filter(|resolved| same_final_name(resolved, &s.path))
        .unwrap_or_else(|| path_argument(s, 0, bases));
    let second = path_argument(s, 1, bases);
    let mut event = FileEvent {
        path: first,
        target_path: second,
        result: s.result,
        path_truncated: s.path_truncated,
        syscall: sys::name(s.syscall).into(),
        uid: -1,
        gid: -1,
        ..Default::default()
    };
    let op = match s.syscall {
        sys::OPEN | sys::OPENAT | sys::OPENAT2 | sys::CREAT => {
            let aux = s.aux.file();
            event.flags = aux.open_flags;
            event.mode = (aux.mode & 0o7777) as u32;
            event.created = aux.open_flags & O_CREAT != 0;
            event.truncated = aux.open_flags & O_TRUNC != 0;
            if s.sensitive_read {
                FileOp::FileReadSensitive
            } else {
                FileOp::FileOpen
            }
        }
        sys::RENAME | sys::RENAMEAT | sys::RENAMEAT2 => {
            event.flags = if s.syscall == sys::RENAMEAT2 { a[4] } else { 0 };
            FileOp::FileRename
        }
        sys::UNLINKAT if a[2] & AT_REMOVEDIR != 0 => FileOp::FileRmdir,
        sys::UNLINK | sys::UNLINKAT => FileOp::FileUnlink,
        sys::RMDIR => FileOp::FileRmdir,
        sys::CHMOD | sys::FCHMOD | sys::FCHMODAT | sys::FCHMODAT2 => {
            let mode = if matches!(s.syscall, sys::CHMOD | sys::FCHMOD) {
                a[1]
            } else {
                a[2]
            };
            event.mode = (mode & 0o7777) as u32;
            FileOp::FileChmod
        }
        sys::CHOWN | sys::LCHOWN | sys::FCHOWN | sys::FCHOWNAT => {
            let (uid, gid) = if s.syscall == sys::FCHOWNAT {
                (a[2], a[3])
            } else {
                (a[1], a[2])
            };
            event.uid = uid as u32 as i32 as i64;
            event.gid = gid as u32 as i32 as i64;
            FileOp::FileChown
        }
        sys::LINK | sys::LINKAT => FileOp::FileLink,
        sys::SYMLINK | sys::SYMLINKAT => {
            // The symlink's target is stored as given, never resolved.
            event.target_path = s.second_path.clone();
            FileOp::FileSymlink
        }
        sys::TRUNCATE | sys::FTRUNCATE => FileOp::FileTruncate,
        sys::MOUNT => {
            event.target_path = s.second_path.clone();
            event.flags = a[3];
            event.fs_type = c_string(&s.aux.file().fs_type);
            FileOp::FileMount
        }
        sys::UMOUNT => {
            event.flags = a[1];
            FileOp::FileUmount
        }
        _ => FileOp::FileUtimes,
    };
    event.op = op as i32;
    event
}

/// The first path argument made absolute against `bases` alone (not through /proc, unless a
/// base is unknown): cheap enough for every directory a process opens.
pub fn first_path(s: &Syscall, bases: &Bases) -> String {
    path_argument(s, 0, bases)
}

/// Path argument `slot` (0: first, 1: second) made absolute against its directory descriptor
/// or the working directory, as `bases` knows them (else as /proc does).
fn path_argument(s: &Syscall, slot: usize, bases: &Bases) -> String {
    let path = if slot == 0 { &s.path } else { &s.second_path };
    absolute(
        s.common.tgid,
        path,
        directory_fds(s)[slot],
        bases.directories[slot].as_deref(),
        bases.cwd,
    )
}

/// The directory descriptors of the first and second path arguments (`AT_FDCWD` for calls
/// without one).
fn directory_fds(s: &Syscall) -> [i32; 2] {
    sys::directory_args(s.syscall).map(|i| s.args.get(i).map_or(AT_FDCWD, |&fd| fd as i32))
}

/// The descriptor of the file a call acts on, for calls that name the file by descriptor
/// (or, for a successful open, the descriptor it returned: the path the kernel resolved).
pub fn acted_on_fd(s: &Syscall) -> Option<i32> {
    match s.syscall {
        sys::FCHMOD | sys::FCHOWN | sys::FTRUNCATE | sys::FINIT_MODULE => Some(s.args[0] as i32),
        sys::UTIMENSAT if s.args[1] == 0 => Some(s.args[0] as i32),
        sys::OPEN | sys::OPENAT | sys::OPENAT2 | sys::CREAT
            if s.result >= 0 && !s.path.starts_with('/') =>
        {
            Some(s.result as i32)
        }
        _ => None,
    }
}

/// Whether `resolved` (a descriptor's path) can be the file the call named as `requested`:
/// by the time the event is read, the descriptor an open returned may have been closed and its
/// number reused for another file, so the names must agree. Calls that name no path (`fchmod`)
/// have only the descriptor to go by.
fn same_final_name(resolved: &str, requested: &str) -> bool {
    let last = |p: &str| {
        p.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    requested.is_empty() || last(resolved) == last(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_descriptor_is_not_taken_for_the_opened_file() {
        assert!(same_final_name("/tmp/d/created.txt", "created.txt"));
        assert!(same_final_name("/tmp/d/created.txt", "../d/created.txt"));
        assert!(!same_final_name("anon_inode:bpf-prog", "created.txt"));
        assert!(!same_final_name("/tmp/d/x (deleted)", "x"));
        assert!(same_final_name("/tmp/d/any", ""));
    }
}
