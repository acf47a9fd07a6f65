//! Turns decoded syscall records into protocol payloads: which argument means what for each
//! call, absolute paths, socket addresses, credential sets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kestrel_ebpf_abi::{
    linux::{AF_INET, AF_INET6, AF_PACKET, AT_FDCWD, AT_REMOVEDIR, O_CREAT, O_TRUNC},
    sys, CredentialSet, KIND_BPF, KIND_CREDENTIAL, KIND_FILE, KIND_IO_URING, KIND_MEMFD,
    KIND_MODULE, KIND_NAMESPACE, KIND_NETWORK, KIND_PTRACE, KIND_SIGNAL,
};
use kestrel_proto::{
    event::Payload, BpfEvent, CredentialEvent, Credentials, FileEvent, FileOp, IoUringEvent,
    MemfdEvent, ModuleEvent, NamespaceEvent, NetworkEvent, NetworkOp, PtraceEvent, SignalEvent,
};

use crate::{
    enrich::paths::{absolute, fd_path},
    kernel::decode::Syscall,
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
        KIND_FILE => Payload::File(file(s, bases)),
        KIND_NETWORK => Payload::Network(network(s)),
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
            path: acted_on_fd(s)
                .and_then(|fd| fd_path(s.common.tgid, fd))
                .unwrap_or_default(),
            params: s.second_path.clone(),
            result: s.result,
        }),
        KIND_BPF => Payload::Bpf(BpfEvent {
            command: s.args[0] as i32,
            prog_type: s.aux.bpf().prog_type as u32,
            prog_name: c_bytes(&s.aux.bpf().prog_name),
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

fn file(s: &Syscall, bases: &Bases) -> FileEvent {
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
            event.fs_type = c_bytes(&s.aux.file().fs_type);
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
fn acted_on_fd(s: &Syscall) -> Option<i32> {
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

fn network(s: &Syscall) -> NetworkEvent {
    let aux = s.aux.net();
    let family = aux.family;
    let socket_local = ip(family, &aux.local_address);
    let socket_remote = ip(family, &aux.remote_address);
    let passed = sockaddr(&aux.sockaddr);
    let mut event = NetworkEvent {
        family: family as u32,
        protocol: aux.protocol as u32,
        result: s.result,
        local_ip: socket_local.map(|ip| ip.to_string()).unwrap_or_default(),
        local_port: aux.local_port as u32,
        ..Default::default()
    };
    let op = match s.syscall {
        sys::CONNECT | sys::SENDTO => {
            event.initiated = true;
            if let Some((family, ip, port)) = passed {
                event.family = family;
                event.remote_ip = ip.to_string();
                event.remote_port = port as u32;
            }
            if s.syscall == sys::CONNECT {
                NetworkOp::NetworkConnect
            } else {
                NetworkOp::NetworkSend
            }
        }
        sys::BIND => {
            // After a successful bind the socket knows the real port (binding port 0 picks
            // one); the address passed by the caller is the fallback.
            if let Some((family, ip, port)) = passed {
                event.family = family;
                if event.local_port == 0 {
                    event.local_ip = ip.to_string();
                    event.local_port = port as u32;
                }
            }
            NetworkOp::NetworkBind
        }
        sys::ACCEPT | sys::ACCEPT4 => {
            event.remote_ip = socket_remote.map(|ip| ip.to_string()).unwrap_or_default();
            event.remote_port = aux.remote_port as u32;
            NetworkOp::NetworkAccept
        }
        sys::LISTEN => NetworkOp::NetworkListen,
        sys::RECVFROM | sys::RECVMSG => {
            // The sender the call returned, else the peer of a connected socket.
            match passed {
                Some((family, ip, port)) => {
                    event.family = family;
                    event.remote_ip = ip.to_string();
                    event.remote_port = port as u32;
                }
                None => {
                    event.remote_ip = socket_remote.map(|ip| ip.to_string()).unwrap_or_default();
                    event.remote_port = aux.remote_port as u32;
                }
            }
            event.dns = crate::enrich::dns::parse(&s.received, s.path_truncated);
            NetworkOp::NetworkDnsAnswer
        }
        _ => {
            event.family = AF_PACKET as u32;
            event.protocol = u16::from_be(s.args[2] as u16) as u32;
            NetworkOp::NetworkPacketSocket
        }
    };
    event.op = op as i32;
    event
}

/// An address from the socket's own fields (IPv4 in the first 4 bytes).
fn ip(family: u64, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

/// A `sockaddr_in`/`sockaddr_in6` as passed by the caller: (family, address, port).
fn sockaddr(bytes: &[u8; 32]) -> Option<(u32, IpAddr, u16)> {
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as u64;
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    match family {
        AF_INET => Some((
            AF_INET as u32,
            IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7])),
            port,
        )),
        AF_INET6 => {
            let octets: [u8; 16] = bytes[8..24].try_into().ok()?;
            Some((AF_INET6 as u32, IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
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

/// Text up to the first NUL.
fn c_bytes(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
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

    #[test]
    fn every_followed_call_has_a_name() {
        for id in 1..sys::COUNT {
            assert_ne!(sys::name(id), "unknown", "syscall id {id}");
        }
    }

    #[test]
    fn ipv4_and_ipv6_sockaddrs_decode() {
        let mut v4 = [0u8; 32];
        v4[..2].copy_from_slice(&2u16.to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(sockaddr(&v4), Some((2, "127.0.0.1".parse().unwrap(), 8080)));
        let mut v6 = [0u8; 32];
        v6[..2].copy_from_slice(&10u16.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(sockaddr(&v6), Some((10, "::1".parse().unwrap(), 443)));
    }
}
