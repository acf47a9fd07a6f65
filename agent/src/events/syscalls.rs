//! Turns decoded syscall records into protocol payloads, one kind after another: file calls
//! ([`super::file`]) and network calls ([`super::network`]) in their own files, the kinds whose
//! arguments say it all (credentials, ptrace, signals, modules, bpf, memfd, namespaces,
//! io_uring) here.

use kestrel_ebpf_abi::{
    sys, CredentialSet, KIND_BPF, KIND_CREDENTIAL, KIND_FILE, KIND_IO_URING, KIND_MEMFD,
    KIND_MODULE, KIND_NAMESPACE, KIND_NETWORK, KIND_PTRACE, KIND_SIGNAL,
};
use kestrel_proto::{
    event::Payload, BpfEvent, CredentialEvent, Credentials, IoUringEvent, MemfdEvent, ModuleEvent,
    NamespaceEvent, PtraceEvent, SignalEvent,
};

use super::{
    file::{self, Bases},
    network,
};
use crate::{
    enrich::paths::fd_path,
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
    fn every_followed_call_has_a_name() {
        for id in 1..sys::COUNT {
            assert_ne!(sys::name(id), "unknown", "syscall id {id}");
        }
    }
}
