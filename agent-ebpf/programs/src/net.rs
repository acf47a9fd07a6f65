//! Network calls: the address the caller passed and what the socket itself says (family,
//! protocol, type, both endpoints).

use aya_ebpf::helpers::bpf_probe_read_user_buf;
use kestrel_ebpf_abi::{
    linux::{AF_INET6, SOCK_DGRAM},
    sys, ProbeConfig, SyscallRecord,
};

use crate::{
    dns::dns_answer,
    kernel::{fd_sock, read_at, Ptr},
};

/// Network calls: the address passed by the caller and what the socket itself says.
#[inline(always)]
pub fn fill(
    config: &ProbeConfig,
    task: Ptr,
    id: u32,
    result: i64,
    record: &mut SyscallRecord,
) -> Result<bool, i64> {
    let a = record.args;
    let (fd, address, address_len) = match id {
        sys::CONNECT | sys::BIND => (a[0], a[1], a[2]),
        sys::SENDTO => (a[0], a[4], a[5]),
        sys::ACCEPT | sys::ACCEPT4 | sys::SOCKET => {
            if result < 0 {
                return Ok(id == sys::SOCKET);
            }
            (result as u64, 0, 0)
        }
        _ => (a[0], 0, 0),
    };
    if address != 0 && address_len > 0 {
        let len = if address_len > 32 {
            32
        } else {
            address_len as usize
        };
        let dst = &mut record.aux.net_mut().sockaddr;
        let _ = unsafe { bpf_probe_read_user_buf(address as *const u8, &mut dst[..len & 63]) };
    }
    if let Ok(sk) = fd_sock(config, task, fd) {
        let _ = socket_facts(config, sk, record);
    }
    if id == sys::SENDTO && record.aux.net().socket_type != SOCK_DGRAM {
        return Ok(false);
    }
    if id == sys::RECVFROM || id == sys::RECVMSG {
        return Ok(dns_answer(id, result, record));
    }
    Ok(true)
}

/// Family, protocol, type and both endpoints of socket `sk`.
#[inline(always)]
fn socket_facts(config: &ProbeConfig, sk: Ptr, record: &mut SyscallRecord) -> Result<(), i64> {
    let net = record.aux.net_mut();
    let family: u16 = read_at(sk, config.skc[4])?;
    net.family = family as u64;
    net.protocol = read_at::<u16>(sk, config.sk_protocol)? as u64;
    net.socket_type = read_at::<u16>(sk, config.sk_type)? as u64;
    if family as u64 == AF_INET6 {
        let local = read_at(sk, config.skc[6])?;
        let remote = read_at(sk, config.skc[5])?;
        net.local_address = local;
        net.remote_address = remote;
    } else {
        net.local_address = ipv4_address(read_at(sk, config.skc[1])?);
        net.remote_address = ipv4_address(read_at(sk, config.skc[0])?);
    }
    net.local_port = read_at::<u16>(sk, config.skc[3])? as u64;
    net.remote_port = u16::from_be(read_at::<u16>(sk, config.skc[2])?) as u64;
    Ok(())
}

/// An IPv4 address in the first 4 bytes of a 16-byte address.
#[inline(always)]
fn ipv4_address(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}
