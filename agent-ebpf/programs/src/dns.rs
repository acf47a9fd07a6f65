//! DNS capture: receives are followed only on datagram sockets (decided at entry), reported
//! only when the datagram came from port 53 (decided at exit), and then carry the answer's
//! first bytes and its sender.

use aya_ebpf::helpers::{bpf_probe_read_user, bpf_probe_read_user_buf};
use kestrel_ebpf_abi::{
    linux::{DNS_PORT, MSGHDR_IOV, SOCK_DGRAM},
    sys, ProbeConfig, SyscallRecord, STR_SLOT, SYS_STR0_TRUNCATED,
};

use crate::kernel::{current_task, fd_sock, read_at};

/// The descriptor is a `SOCK_DGRAM` socket.
#[inline(always)]
pub fn is_datagram_socket(config: &ProbeConfig, fd: u64) -> bool {
    let Ok(sk) = fd_sock(config, current_task(), fd) else {
        return false;
    };
    matches!(read_at::<u16>(sk, config.sk_type), Ok(t) if t as u64 == SOCK_DGRAM)
}

/// A datagram just received came from port 53: by the sender address the call returned, else
/// by the peer of the (connected) socket. Cheap, so that other datagrams cost little.
#[inline(always)]
pub fn from_dns_port(config: &ProbeConfig, id: u32, args: &[u64; 6]) -> bool {
    let sender = if id == sys::RECVFROM {
        args[4]
    } else {
        unsafe { bpf_probe_read_user(args[1] as *const u64) }.unwrap_or(0)
    };
    if sender != 0 {
        // sockaddr_in and sockaddr_in6 both start with the family, then the port.
        if let Ok(head) = unsafe { bpf_probe_read_user(sender as *const [u8; 4]) } {
            let port = u16::from_be_bytes([head[2], head[3]]) as u64;
            if port != 0 {
                return port == DNS_PORT;
            }
        }
    }
    let Ok(sk) = fd_sock(config, current_task(), args[0]) else {
        return false;
    };
    matches!(read_at::<u16>(sk, config.skc[2]), Ok(port) if u16::from_be(port) as u64 == DNS_PORT)
}

/// For a DNS answer received (`result` > 0 bytes from port 53, as `exit` checked with
/// [`from_dns_port`]): its first bytes into string slot 0, the sender into
/// [`NetAux::sockaddr`](kestrel_ebpf_abi::NetAux::sockaddr).
#[inline(always)]
pub fn dns_answer(id: u32, result: i64, record: &mut SyscallRecord) -> bool {
    let a = record.args;
    // Where the data went (the first buffer), its size, and where the sender was written.
    let (buffer, capacity, sender) = if id == sys::RECVFROM {
        (a[1], a[2], a[4])
    } else {
        // struct msghdr: msg_name at 0; struct iovec: base at 0, len at 8.
        let name: u64 = unsafe { bpf_probe_read_user(a[1] as *const u64) }.unwrap_or(0);
        let iov: u64 =
            unsafe { bpf_probe_read_user((a[1] + MSGHDR_IOV) as *const u64) }.unwrap_or(0);
        let first: [u64; 2] = if iov == 0 {
            [0; 2]
        } else {
            unsafe { bpf_probe_read_user(iov as *const [u64; 2]) }.unwrap_or([0; 2])
        };
        (first[0], first[1], name)
    };
    if sender != 0 {
        let dst = &mut record.aux.net_mut().sockaddr;
        let _ = unsafe { bpf_probe_read_user_buf(sender as *const u8, &mut dst[..28]) };
    }
    if buffer == 0 {
        return false;
    }
    let mut len = result as u64;
    if len > capacity {
        len = capacity;
    }
    if len > (STR_SLOT - 1) as u64 {
        len = (STR_SLOT - 1) as u64;
        record.flags |= SYS_STR0_TRUNCATED;
    }
    let len = len as usize & (STR_SLOT - 1);
    let dst = &mut record.strings[..STR_SLOT];
    if unsafe { bpf_probe_read_user_buf(buffer as *const u8, &mut dst[..len]) }.is_err() {
        return false;
    }
    record.str_len[0] = len as u32;
    true
}
