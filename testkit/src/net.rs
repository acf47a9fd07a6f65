//! Connections from a chosen source address, so a test can play a client on another host:
//! the collector bounds TLS handshakes per source address, and every loopback address
//! (127.0.0.0/8) is a distinct source here.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

use socket2::{Domain, Socket, Type};

/// A TCP connection to `127.0.0.1:port` made from source address `from` (any 127.x.y.z).
pub fn tcp_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    socket.connect(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).into())?;
    Ok(socket.into())
}
