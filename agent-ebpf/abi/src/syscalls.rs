//! The one table of followed syscalls (and the io_uring submission tracepoint), from which
//! everything both sides need is generated: the id constants, names, arities, record kinds,
//! which arguments are copied into the string slots, which are directory descriptors, and the
//! tracepoint programs. The eBPF crate generates its hooks from the same rows through
//! [`syscall_table!`](crate::syscall_table), so adding a syscall is one row here plus the code
//! that fills its record.
//!
//! Ids are arch-independent: the programs know which syscall they run for from their attach
//! point, not from a syscall number.

use crate::{
    KIND_BPF, KIND_CREDENTIAL, KIND_FILE, KIND_IO_URING, KIND_MEMFD, KIND_MODULE, KIND_NAMESPACE,
    KIND_NETWORK, KIND_PROCESS_RENAME, KIND_PTRACE, KIND_SIGNAL,
};

/// Passes every row of the syscall table to the macro `$callback`. A row reads
///
/// ```text
/// /// doc
/// CONST = id, "name", args arity, KIND_*, strings [s0, s1], dirs [d0, d1], programs (enter, exit);
/// ```
///
/// `strings`: the arguments copied into string slot 0 and 1 (paths; `memfd_create`'s name, a
/// module's parameters); `dirs`: the directory descriptors the first and second path are
/// relative to (for `fchdir`, its descriptor); `_` is none. `programs`: the `sys_enter_*` and
/// `sys_exit_*` tracepoint programs, named as their tracepoints (empty for io_uring
/// submissions, which have a tracepoint of their own).
#[macro_export]
macro_rules! syscall_table {
    ($callback:ident) => {
        $callback! {
            /// `open(path, flags, mode)`.
            OPEN = 1, "open", args 3, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_open, sys_exit_open);
            /// `openat(dirfd, path, flags, mode)`.
            OPENAT = 2, "openat", args 4, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_openat, sys_exit_openat);
            /// `openat2(dirfd, path, how, size)`.
            OPENAT2 = 3, "openat2", args 4, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_openat2, sys_exit_openat2);
            /// `creat(path, mode)`.
            CREAT = 4, "creat", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_creat, sys_exit_creat);
            /// `rename(old, new)`.
            RENAME = 5, "rename", args 2, KIND_FILE, strings [0, 1], dirs [_, _], programs (sys_enter_rename, sys_exit_rename);
            /// `renameat(olddirfd, old, newdirfd, new)`.
            RENAMEAT = 6, "renameat", args 4, KIND_FILE, strings [1, 3], dirs [0, 2], programs (sys_enter_renameat, sys_exit_renameat);
            /// `renameat2(olddirfd, old, newdirfd, new, flags)`.
            RENAMEAT2 = 7, "renameat2", args 5, KIND_FILE, strings [1, 3], dirs [0, 2], programs (sys_enter_renameat2, sys_exit_renameat2);
            /// `unlink(path)`.
            UNLINK = 8, "unlink", args 1, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_unlink, sys_exit_unlink);
            /// `unlinkat(dirfd, path, flags)`.
            UNLINKAT = 9, "unlinkat", args 3, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_unlinkat, sys_exit_unlinkat);
            /// `rmdir(path)`.
            RMDIR = 10, "rmdir", args 1, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_rmdir, sys_exit_rmdir);
            /// `chmod(path, mode)`.
            CHMOD = 11, "chmod", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_chmod, sys_exit_chmod);
            /// `fchmod(fd, mode)`.
            FCHMOD = 12, "fchmod", args 2, KIND_FILE, strings [_, _], dirs [_, _], programs (sys_enter_fchmod, sys_exit_fchmod);
            /// `fchmodat(dirfd, path, mode)`.
            FCHMODAT = 13, "fchmodat", args 3, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_fchmodat, sys_exit_fchmodat);
            /// `fchmodat2(dirfd, path, mode, flags)`.
            FCHMODAT2 = 14, "fchmodat2", args 4, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_fchmodat2, sys_exit_fchmodat2);
            /// `chown(path, uid, gid)`.
            CHOWN = 15, "chown", args 3, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_chown, sys_exit_chown);
            /// `fchown(fd, uid, gid)`.
            FCHOWN = 16, "fchown", args 3, KIND_FILE, strings [_, _], dirs [_, _], programs (sys_enter_fchown, sys_exit_fchown);
            /// `lchown(path, uid, gid)`.
            LCHOWN = 17, "lchown", args 3, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_lchown, sys_exit_lchown);
            /// `fchownat(dirfd, path, uid, gid, flags)`.
            FCHOWNAT = 18, "fchownat", args 5, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_fchownat, sys_exit_fchownat);
            /// `link(old, new)`.
            LINK = 19, "link", args 2, KIND_FILE, strings [1, 0], dirs [_, _], programs (sys_enter_link, sys_exit_link);
            /// `linkat(olddirfd, old, newdirfd, new, flags)`.
            LINKAT = 20, "linkat", args 5, KIND_FILE, strings [3, 1], dirs [2, 0], programs (sys_enter_linkat, sys_exit_linkat);
            /// `symlink(target, linkpath)`.
            SYMLINK = 21, "symlink", args 2, KIND_FILE, strings [1, 0], dirs [_, _], programs (sys_enter_symlink, sys_exit_symlink);
            /// `symlinkat(target, newdirfd, linkpath)`.
            SYMLINKAT = 22, "symlinkat", args 3, KIND_FILE, strings [2, 0], dirs [1, _], programs (sys_enter_symlinkat, sys_exit_symlinkat);
            /// `truncate(path, length)`.
            TRUNCATE = 23, "truncate", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_truncate, sys_exit_truncate);
            /// `ftruncate(fd, length)`.
            FTRUNCATE = 24, "ftruncate", args 2, KIND_FILE, strings [_, _], dirs [_, _], programs (sys_enter_ftruncate, sys_exit_ftruncate);
            /// `mount(source, target, fstype, flags, data)`.
            MOUNT = 25, "mount", args 5, KIND_FILE, strings [1, 0], dirs [_, _], programs (sys_enter_mount, sys_exit_mount);
            /// `umount2(target, flags)`.
            UMOUNT = 26, "umount2", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_umount, sys_exit_umount);
            /// `utime(path, times)`.
            UTIME = 27, "utime", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_utime, sys_exit_utime);
            /// `utimes(path, times)`.
            UTIMES = 28, "utimes", args 2, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_utimes, sys_exit_utimes);
            /// `utimensat(dirfd, path, times, flags)`.
            UTIMENSAT = 29, "utimensat", args 4, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_utimensat, sys_exit_utimensat);
            /// `futimesat(dirfd, path, times)`.
            FUTIMESAT = 30, "futimesat", args 3, KIND_FILE, strings [1, _], dirs [0, _], programs (sys_enter_futimesat, sys_exit_futimesat);
            /// `setuid(uid)`.
            SETUID = 31, "setuid", args 1, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setuid, sys_exit_setuid);
            /// `setgid(gid)`.
            SETGID = 32, "setgid", args 1, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setgid, sys_exit_setgid);
            /// `setreuid(ruid, euid)`.
            SETREUID = 33, "setreuid", args 2, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setreuid, sys_exit_setreuid);
            /// `setregid(rgid, egid)`.
            SETREGID = 34, "setregid", args 2, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setregid, sys_exit_setregid);
            /// `setresuid(ruid, euid, suid)`.
            SETRESUID = 35, "setresuid", args 3, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setresuid, sys_exit_setresuid);
            /// `setresgid(rgid, egid, sgid)`.
            SETRESGID = 36, "setresgid", args 3, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setresgid, sys_exit_setresgid);
            /// `setfsuid(fsuid)`.
            SETFSUID = 37, "setfsuid", args 1, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setfsuid, sys_exit_setfsuid);
            /// `setfsgid(fsgid)`.
            SETFSGID = 38, "setfsgid", args 1, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_setfsgid, sys_exit_setfsgid);
            /// `capset(header, data)`.
            CAPSET = 39, "capset", args 2, KIND_CREDENTIAL, strings [_, _], dirs [_, _], programs (sys_enter_capset, sys_exit_capset);
            /// `ptrace(request, pid, addr, data)`.
            PTRACE = 40, "ptrace", args 4, KIND_PTRACE, strings [_, _], dirs [_, _], programs (sys_enter_ptrace, sys_exit_ptrace);
            /// `process_vm_writev(pid, ...)`.
            PROCESS_VM_WRITEV = 41, "process_vm_writev", args 6, KIND_PTRACE, strings [_, _], dirs [_, _], programs (sys_enter_process_vm_writev, sys_exit_process_vm_writev);
            /// `kill(pid, sig)`.
            KILL = 42, "kill", args 2, KIND_SIGNAL, strings [_, _], dirs [_, _], programs (sys_enter_kill, sys_exit_kill);
            /// `tkill(tid, sig)`.
            TKILL = 43, "tkill", args 2, KIND_SIGNAL, strings [_, _], dirs [_, _], programs (sys_enter_tkill, sys_exit_tkill);
            /// `tgkill(tgid, tid, sig)`.
            TGKILL = 44, "tgkill", args 3, KIND_SIGNAL, strings [_, _], dirs [_, _], programs (sys_enter_tgkill, sys_exit_tgkill);
            /// `connect(fd, addr, len)`.
            CONNECT = 45, "connect", args 3, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_connect, sys_exit_connect);
            /// `accept(fd, addr, len)`.
            ACCEPT = 46, "accept", args 3, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_accept, sys_exit_accept);
            /// `accept4(fd, addr, len, flags)`.
            ACCEPT4 = 47, "accept4", args 4, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_accept4, sys_exit_accept4);
            /// `listen(fd, backlog)`.
            LISTEN = 48, "listen", args 2, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_listen, sys_exit_listen);
            /// `bind(fd, addr, len)`.
            BIND = 49, "bind", args 3, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_bind, sys_exit_bind);
            /// `sendto(fd, buf, len, flags, addr, addrlen)`.
            SENDTO = 50, "sendto", args 6, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_sendto, sys_exit_sendto);
            /// `socket(family, type, protocol)` (reported for AF_PACKET only).
            SOCKET = 51, "socket", args 3, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_socket, sys_exit_socket);
            /// `init_module(image, len, params)`.
            INIT_MODULE = 52, "init_module", args 3, KIND_MODULE, strings [_, 2], dirs [_, _], programs (sys_enter_init_module, sys_exit_init_module);
            /// `finit_module(fd, params, flags)`.
            FINIT_MODULE = 53, "finit_module", args 3, KIND_MODULE, strings [_, 1], dirs [_, _], programs (sys_enter_finit_module, sys_exit_finit_module);
            /// `bpf(cmd, attr, size)` (reported for BPF_PROG_LOAD).
            BPF = 54, "bpf", args 3, KIND_BPF, strings [_, _], dirs [_, _], programs (sys_enter_bpf, sys_exit_bpf);
            /// `memfd_create(name, flags)`.
            MEMFD_CREATE = 55, "memfd_create", args 2, KIND_MEMFD, strings [0, _], dirs [_, _], programs (sys_enter_memfd_create, sys_exit_memfd_create);
            /// `setns(fd, nstype)`.
            SETNS = 56, "setns", args 2, KIND_NAMESPACE, strings [_, _], dirs [_, _], programs (sys_enter_setns, sys_exit_setns);
            /// `unshare(flags)`.
            UNSHARE = 57, "unshare", args 1, KIND_NAMESPACE, strings [_, _], dirs [_, _], programs (sys_enter_unshare, sys_exit_unshare);
            /// `io_uring_setup(entries, params)`.
            IO_URING_SETUP = 58, "io_uring_setup", args 2, KIND_IO_URING, strings [_, _], dirs [_, _], programs (sys_enter_io_uring_setup, sys_exit_io_uring_setup);
            /// The `io_uring:io_uring_submit_req` tracepoint: one operation submitted through a
            /// ring.
            IO_URING_SUBMIT = 59, "io_uring_submit", args 1, KIND_IO_URING, strings [_, _], dirs [_, _], programs ();
            /// `recvfrom(fd, buf, len, flags, addr, addrlen)` (reported for DNS answers only).
            RECVFROM = 60, "recvfrom", args 6, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_recvfrom, sys_exit_recvfrom);
            /// `recvmsg(fd, msg, flags)` (reported for DNS answers only).
            RECVMSG = 61, "recvmsg", args 3, KIND_NETWORK, strings [_, _], dirs [_, _], programs (sys_enter_recvmsg, sys_exit_recvmsg);
            /// `chdir(path)`: not reported, it keeps the agent's view of the working directory.
            CHDIR = 62, "chdir", args 1, KIND_FILE, strings [0, _], dirs [_, _], programs (sys_enter_chdir, sys_exit_chdir);
            /// `fchdir(fd)`: not reported, it keeps the agent's view of the working directory.
            FCHDIR = 63, "fchdir", args 1, KIND_FILE, strings [_, _], dirs [0, _], programs (sys_enter_fchdir, sys_exit_fchdir);
            /// `prctl(option, arg2, ...)` (reported for `PR_SET_NAME` by a process's main
            /// thread only: the name in `arg2`).
            PRCTL = 64, "prctl", args 5, KIND_PROCESS_RENAME, strings [1, _], dirs [_, _], programs (sys_enter_prctl, sys_exit_prctl);
        }
    };
}

/// An argument index in the table: `_` is none ([`NO_ARG`]).
macro_rules! argument {
    (_) => {
        NO_ARG
    };
    ($index:literal) => {
        $index
    };
}

/// The `[enter, exit]` program names of a row, `None` for a row without programs.
macro_rules! program_names {
    () => {
        None
    };
    ($enter:ident, $exit:ident) => {
        Some([stringify!($enter), stringify!($exit)])
    };
}

/// Generates the constants and lookups from the table.
macro_rules! define_syscalls {
    ($(
        $(#[$doc:meta])*
        $constant:ident = $id:literal, $name:literal, args $arity:literal, $kind:ident,
        strings [$s0:tt, $s1:tt], dirs [$d0:tt, $d1:tt], programs ($($programs:ident),*);
    )*) => {
        $(
            $(#[$doc])*
            pub const $constant: u32 = $id;
        )*

        /// Every followed id, in table order.
        pub const ALL: [u32; [$($id),*].len()] = [$($constant),*];

        /// The name of a followed call (`"unknown"` for an id not in the table).
        pub const fn name(id: u32) -> &'static str {
            match id {
                $($constant => $name,)*
                _ => "unknown",
            }
        }

        /// How many arguments a call takes (0 for an id not in the table).
        pub const fn arity(id: u32) -> usize {
            match id {
                $($constant => $arity,)*
                _ => 0,
            }
        }

        /// The record kind a syscall id reports as (0 for an id not in the table).
        pub const fn kind_of(id: u32) -> u32 {
            match id {
                $($constant => $kind,)*
                _ => 0,
            }
        }

        /// Which arguments are copied into string slot 0 and 1 ([`NO_ARG`]: none): the first
        /// and second path of a file call, `memfd_create`'s name, a module's parameters.
        pub const fn string_args(id: u32) -> [usize; 2] {
            match id {
                $($constant => [argument!($s0), argument!($s1)],)*
                _ => [NO_ARG, NO_ARG],
            }
        }

        /// Which arguments hold the directory descriptors the first and second path of a call
        /// are relative to ([`NO_ARG`]: the working directory); for `fchdir`, its descriptor.
        pub const fn directory_args(id: u32) -> [usize; 2] {
            match id {
                $($constant => [argument!($d0), argument!($d1)],)*
                _ => [NO_ARG, NO_ARG],
            }
        }

        /// The `[sys_enter_*, sys_exit_*]` programs of a call, each named as the `syscalls`
        /// tracepoint it attaches to (`None` for io_uring submissions and unknown ids).
        pub const fn programs(id: u32) -> Option<[&'static str; 2]> {
            match id {
                $($constant => program_names!($($programs),*),)*
                _ => None,
            }
        }
    };
}

syscall_table!(define_syscalls);

/// One past the largest id.
pub const COUNT: u32 = {
    let mut largest = 0;
    let mut i = 0;
    while i < ALL.len() {
        if ALL[i] > largest {
            largest = ALL[i];
        }
        i += 1;
    }
    largest + 1
};

/// No argument: a path is relative to the working directory (see [`directory_args`]), or a
/// string slot stays empty (see [`string_args`]).
pub const NO_ARG: usize = 6;

/// Generates the io_uring opcode list and names from one list.
macro_rules! uring_ops {
    ($($opcode:literal => $name:literal,)*) => {
        /// io_uring opcodes reported (file, socket and process-relevant operations).
        pub const URING_OPCODES: [u8; [$($opcode),*].len()] = [$($opcode),*];

        /// The name of a reported io_uring opcode (`"other"` for the rest).
        pub const fn uring_op_name(opcode: u32) -> &'static str {
            match opcode {
                $($opcode => $name,)*
                _ => "other",
            }
        }
    };
}

uring_ops! {
    13 => "accept",
    16 => "connect",
    18 => "openat",
    28 => "openat2",
    35 => "renameat",
    36 => "unlinkat",
    38 => "symlinkat",
    39 => "linkat",
    45 => "socket",
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_run_from_one_without_gaps_and_names_are_unique() {
        let ids: HashSet<u32> = ALL.iter().copied().collect();
        assert_eq!(ids.len(), ALL.len(), "an id is used twice");
        assert_eq!(ids, (1..COUNT).collect(), "ids are 1..COUNT");
        let names: HashSet<&str> = ALL.iter().map(|&id| name(id)).collect();
        assert_eq!(names.len(), ALL.len(), "a name is used twice");
        assert!(!names.contains("unknown"));
    }

    #[test]
    fn argument_indexes_are_within_each_calls_arity() {
        for id in ALL {
            let arity = arity(id);
            assert!((1..=6).contains(&arity), "{}: arity {arity}", name(id));
            for arg in string_args(id).into_iter().chain(directory_args(id)) {
                assert!(arg == NO_ARG || arg < arity, "{}: argument {arg}", name(id));
            }
        }
    }

    #[test]
    fn only_file_calls_have_directory_arguments() {
        for id in ALL {
            if directory_args(id) != [NO_ARG, NO_ARG] {
                assert_eq!(kind_of(id), KIND_FILE, "{}", name(id));
            }
            assert_ne!(kind_of(id), 0, "{} has no kind", name(id));
        }
    }

    #[test]
    fn programs_are_the_enter_and_exit_tracepoints_of_one_call() {
        let mut seen = HashSet::new();
        for id in ALL {
            let Some([enter, exit]) = programs(id) else {
                assert_eq!(id, IO_URING_SUBMIT, "{} has no programs", name(id));
                continue;
            };
            let call = enter.strip_prefix("sys_enter_").expect(enter);
            assert_eq!(exit.strip_prefix("sys_exit_"), Some(call), "{}", name(id));
            assert!(seen.insert(call), "{call} attached twice");
        }
    }

    #[test]
    fn reported_uring_opcodes_have_names() {
        for opcode in URING_OPCODES {
            assert_ne!(uring_op_name(opcode as u32), "other", "{opcode}");
        }
    }
}
