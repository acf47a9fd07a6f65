//! Turns decoded syscall records into protocol payloads, one kind after another: file calls
//! ([`super::file`]) and network calls ([`super::network`]) in their own files, the kinds whose
//! arguments say it all (credentials, ptrace, signals, modules, bpf, memfd, namespaces,
//! io_uring, process renames) here.

use kestrel_ebpf_abi::{
    sys, CredentialSet, KIND_BPF, KIND_CREDENTIAL, KIND_FILE, KIND_IO_URING, KIND_MEMFD,
    KIND_MODULE, KIND_NAMESPACE, KIND_NETWORK, KIND_PROCESS_RENAME, KIND_PTRACE, KIND_SIGNAL,
};
use kestrel_proto::{
    event::Payload, BpfEvent, CredentialEvent, Credentials, IoUringEvent, MemfdEvent, ModuleEvent,
    NamespaceEvent, ProcessRenameEvent, PtraceEvent, SignalEvent,
};

use super::{
    file::{self, Bases},
    network,
};
use crate::{
    enrich::{paths::fd_path, process_table::ProcessTable},
    kernel::decode::{c_string, Syscall},
};

/// The payload for a syscall record; `cwd` resolves relative paths the kernel could not.
pub fn payload(s: &Syscall, cwd: &str) -> Option<Payload> {
    payload_in(
        s,
        &Bases {
            cwd,
            directories: [None, None],
        },
    )
}

/// The payload for a syscall record, its relative paths resolved against `bases`.
pub fn payload_in(s: &Syscall, bases: &Bases) -> Option<Payload> {
    Some(match s.kind {
        KIND_FILE => Payload::File(file::event(s, bases)),
        KIND_NETWORK => Payload::Network(network::event(s)),
        KIND_CREDENTIAL => Payload::Credential(CredentialEvent {
            syscall: sys::name(s.syscall).into(),
            old: Some(credentials(&s.aux.cred().old)),
            new: Some(credentials(&s.aux.cred().new)),
            result: s.result,
        }),
        KIND_PTRACE => Payload::Ptrace(PtraceEvent {
            syscall: sys::name(s.syscall).into(),
            request: if s.syscall == sys::PTRACE {
                s.args[0] as i64
            } else {
                0
            },
            target_pid: if s.syscall == sys::PTRACE {
                s.args[1]
            } else {
                s.args[0]
            } as u32,
            result: s.result,
            ..Default::default()
        }),
        KIND_SIGNAL => Payload::Signal(SignalEvent {
            syscall: sys::name(s.syscall).into(),
            target_pid: s.args[0] as u32,
            signal: if s.syscall == sys::TGKILL {
                s.args[2]
            } else {
                s.args[1]
            } as i32,
            result: s.result,
            ..Default::default()
        }),
        KIND_MODULE => Payload::Module(ModuleEvent {
            syscall: sys::name(s.syscall).into(),
            path: file::acted_on_fd(s)
                .and_then(|fd| fd_path(s.common.tgid, fd))
                .unwrap_or_default(),
            params: s.second_path.clone(),
            result: s.result,
        }),
        KIND_BPF => Payload::Bpf(BpfEvent {
            command: s.args[0] as i32,
            prog_type: s.aux.bpf().prog_type as u32,
            prog_name: c_string(&s.aux.bpf().prog_name),
            result: s.result,
        }),
        KIND_MEMFD => Payload::Memfd(MemfdEvent {
            name: s.path.clone(),
            flags: s.args[1] as u32,
            result: s.result,
        }),
        KIND_NAMESPACE => Payload::Namespace(NamespaceEvent {
            syscall: sys::name(s.syscall).into(),
            flags: if s.syscall == sys::SETNS {
                s.args[1]
            } else {
                s.args[0]
            },
            fd: if s.syscall == sys::SETNS {
                s.args[0] as i32 as i64
            } else {
                -1
            },
            result: s.result,
        }),
        KIND_PROCESS_RENAME => Payload::ProcessRename(ProcessRenameEvent {
            name: s.path.clone(),
            result: s.result,
        }),
        KIND_IO_URING => Payload::IoUring(if s.syscall == sys::IO_URING_SUBMIT {
            IoUringEvent {
                op: sys::uring_op_name(s.aux.uring().opcode as u32).into(),
                opcode: s.aux.uring().opcode as u32,
                ..Default::default()
            }
        } else {
            IoUringEvent {
                op: "setup".into(),
                entries: s.aux.uring().entries as u32,
                flags: s.aux.uring().flags as u32,
                result: s.result,
                ..Default::default()
            }
        }),
        _ => return None,
    })
}

/// Names the target of a signal, ptrace or process_vm_writev from the process table (its
/// executable and argv), so rules can tell `kill -9 <auditd's pid>` from any other kill: the
/// `kill` builtin sends the signal without an exec that would name it. Unknown targets (a
/// thread id, a process gone) stay unnamed.
pub fn name_target(payload: &mut Option<Payload>, table: &ProcessTable) {
    let (pid, exe, argv) = match payload {
        Some(Payload::Signal(s)) => (s.target_pid, &mut s.target_exe, &mut s.target_argv),
        Some(Payload::Ptrace(p)) => (p.target_pid, &mut p.target_exe, &mut p.target_argv),
        _ => return,
    };
    // kill(0, …) and negative pids (process groups) name no one process.
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    if let Some(target) = table.get(pid) {
        exe.clone_from(&target.exe);
        argv.clone_from(&target.argv);
    }
}

/// The protocol form of a credential set the kernel side read.
fn credentials(set: &CredentialSet) -> Credentials {
    Credentials {
        ruid: set.ruid,
        euid: set.euid,
        suid: set.suid,
        fsuid: set.fsuid,
        rgid: set.rgid,
        egid: set.egid,
        sgid: set.sgid,
        fsgid: set.fsgid,
        cap_effective: set.cap_effective,
        cap_permitted: set.cap_permitted,
        cap_inheritable: set.cap_inheritable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_names_its_target_from_the_process_table() {
        let table = ProcessTable::from_proc();
        let me = std::process::id();
        let mut payload = Some(Payload::Signal(SignalEvent {
            target_pid: me,
            signal: 15,
            ..Default::default()
        }));
        name_target(&mut payload, &table);
        let Some(Payload::Signal(s)) = &payload else {
            unreachable!()
        };
        let exe = std::env::current_exe().unwrap();
        assert_eq!(s.target_exe, exe.display().to_string());
        assert!(!s.target_argv.is_empty());

        // A process group (kill(-pgid, …)) and pid 0 name no one process.
        for pid in [0, (-42i32) as u32] {
            let mut payload = Some(Payload::Ptrace(PtraceEvent {
                target_pid: pid,
                ..Default::default()
            }));
            name_target(&mut payload, &table);
            let Some(Payload::Ptrace(p)) = &payload else {
                unreachable!()
            };
            assert!(p.target_exe.is_empty() && p.target_argv.is_empty());
        }
    }

    #[test]
    fn every_followed_call_has_a_name() {
        for id in 1..sys::COUNT {
            assert_ne!(sys::name(id), "unknown", "syscall id {id}");
        }
    }
}
