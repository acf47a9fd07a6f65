//! The words fields show for kernel numbers: file and network operations, capabilities,
//! namespaces, ptrace requests and signals.

use std::fmt::Write as _;

use kestrel_proto::{FileOp, NetworkOp};

/// The word for a file operation, as `FileOperation` shows it.
pub(super) fn file_op_name(op: FileOp) -> &'static str {
    match op {
        FileOp::Unspecified => "unspecified",
        FileOp::FileOpen => "open",
        FileOp::FileReadSensitive => "read",
        FileOp::FileRename => "rename",
        FileOp::FileUnlink => "unlink",
        FileOp::FileRmdir => "rmdir",
        FileOp::FileChmod => "chmod",
        FileOp::FileChown => "chown",
        FileOp::FileLink => "link",
        FileOp::FileSymlink => "symlink",
        FileOp::FileTruncate => "truncate",
        FileOp::FileMount => "mount",
        FileOp::FileUmount => "umount",
        FileOp::FileUtimes => "utimes",
    }
}

/// The word for a network operation, as `NetworkOperation` shows it.
pub(super) fn network_op_name(op: NetworkOp) -> &'static str {
    match op {
        NetworkOp::Unspecified => "unspecified",
        NetworkOp::NetworkConnect => "connect",
        NetworkOp::NetworkAccept => "accept",
        NetworkOp::NetworkListen => "listen",
        NetworkOp::NetworkBind => "bind",
        NetworkOp::NetworkSend => "send",
        NetworkOp::NetworkPacketSocket => "packet_socket",
        NetworkOp::NetworkDnsAnswer => "dns_answer",
    }
}

pub(super) fn push_words<'w>(out: &mut String, words: impl Iterator<Item = &'w str>) {
    for (i, w) in words.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
}

/// Linux capability names by number (include/uapi/linux/capability.h).
const CAPABILITIES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

pub(super) fn capability_names(out: &mut String, caps: u64) {
    let mut first = true;
    for bit in 0..64u32 {
        if caps & (1 << bit) == 0 {
            continue;
        }
        if !first {
            out.push(' ');
        }
        first = false;
        match CAPABILITIES.get(bit as usize) {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "cap_{bit}");
            }
        }
    }
}

pub(super) fn namespace_names(out: &mut String, flags: u64) {
    const NAMES: [(u64, &str); 8] = [
        (0x0002_0000, "mnt"),
        (0x2000_0000, "pid"),
        (0x4000_0000, "net"),
        (0x0400_0000, "uts"),
        (0x0800_0000, "ipc"),
        (0x1000_0000, "user"),
        (0x0200_0000, "cgroup"),
        (0x0000_0080, "time"),
    ];
    if flags == 0 {
        out.push_str("any");
        return;
    }
    push_words(
        out,
        NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, n)| *n),
    );
}

pub(super) fn ptrace_request_name(request: i64) -> Option<&'static str> {
    Some(match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        _ => return None,
    })
}

pub(super) fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i).copied())
}
