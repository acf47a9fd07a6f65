//! Network calls to network events: the socket's own endpoints, the address the caller passed
//! or the sender a receive returned, and DNS answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kestrel_ebpf_abi::{
    linux::{AF_INET, AF_INET6, AF_PACKET},
    sys,
};
use kestrel_proto::{NetworkEvent, NetworkOp};

use crate::{enrich::dns, kernel::decode::Syscall};

/// The network event of a network call: what the socket says and the address passed.
pub fn event(s: &Syscall) -> NetworkEvent {
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
            event.dns = dns::parse(&s.received, s.path_truncated);
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

#[cfg(test)]
mod tests {
    use super::*;

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
