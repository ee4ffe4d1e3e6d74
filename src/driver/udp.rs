//! The node's UDP socket.
//!
//! One socket carries all of a node's Tox UDP traffic. It is bound to the
//! first free port of a range (33445-33545 by default, `-u` to choose), so a
//! taken port means the next one, not a failure. It is dual-stack (IPv6
//! with IPv4-mapped addresses) when the host has IPv6, plain IPv4 otherwise,
//! with large buffers so bursts are not dropped in the kernel.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use socket2::{Domain, Protocol, Socket, Type};

/// Tox's default UDP port range.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 33445..=33545;
/// Socket buffer size asked for (the kernel may cap it).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Where to bind.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Ports to try, in order.
    pub ports: RangeInclusive<u16>,
    /// Use a dual-stack IPv6 socket when possible.
    pub ipv6: bool,
    /// Bind this address instead of the wildcard (tests bind loopback).
    pub bind_ip: Option<IpAddr>,
    /// Allow sending to broadcast addresses (LAN discovery).
    pub broadcast: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self { ports: DEFAULT_PORTS, ipv6: true, bind_ip: None, broadcast: false }
    }
}

/// Binds the first free port of the range. Fails only when every port is
/// taken (or the socket cannot be made at all), naming the range.
pub fn bind(config: &UdpConfig) -> io::Result<std::net::UdpSocket> {
    let ips: Vec<IpAddr> = match config.bind_ip {
        Some(ip) => vec![ip],
        None if config.ipv6 => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        None => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    };
    let mut last_error = None;
    for ip in ips {
        for port in config.ports.clone() {
            match bind_one(SocketAddr::new(ip, port), config.broadcast) {
                Ok(socket) => return Ok(socket),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                // No IPv6 on this host: fall back to IPv4.
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
    }
    let cause = last_error.map_or_else(|| "no address to bind".to_owned(), |e| e.to_string());
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free UDP port in {}-{}: {cause}", config.ports.start(), config.ports.end()),
    ))
}

/// A socket on a free port chosen by the kernel, on the same address as
/// `like` (the main socket's: the same family, dual-stack if it is):
/// hole punching's sockets.
pub fn bind_ephemeral(like: SocketAddr) -> io::Result<std::net::UdpSocket> {
    bind_one(SocketAddr::new(like.ip(), 0), false)
}

fn bind_one(addr: SocketAddr, broadcast: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // Best effort: the kernel caps these at its configured maximum.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    if broadcast {
        socket.set_broadcast(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address to hand `send_to` for `dst` on a socket bound to `local`: an
/// IPv4 destination becomes IPv4-mapped on a dual-stack socket.
pub fn send_addr(local: SocketAddr, dst: SocketAddr) -> SocketAddr {
    match (local, dst) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        _ => dst,
    }
}

/// Broadcast addresses for LAN discovery: each IPv4 interface's broadcast
/// address, the limited broadcast 255.255.255.255, and the IPv6 all-nodes
/// multicast ff02::1 on a dual-stack socket.
pub fn lan_targets(ipv6: bool) -> Vec<IpAddr> {
    let mut targets = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifaddr in addrs {
            let broadcast = ifaddr.broadcast.as_ref().and_then(|b| b.as_sockaddr_in()).map(|sin| sin.ip());
            if let Some(ip) = broadcast {
                let ip = IpAddr::V4(ip);
                if !targets.contains(&ip) {
                    targets.push(ip);
                }
            }
        }
    }
    targets.push(IpAddr::V4(Ipv4Addr::BROADCAST));
    if ipv6 {
        targets.push(IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)));
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_moves_to_the_next() {
        let loopback =
            UdpConfig { ports: 40000..=40100, bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), ..Default::default() };
        let first = bind(&loopback).unwrap();
        let second = bind(&loopback).unwrap();
        let (a, b) = (first.local_addr().unwrap().port(), second.local_addr().unwrap().port());
        assert_ne!(a, b);
        assert!(loopback.ports.contains(&a) && loopback.ports.contains(&b));

        let one_port = UdpConfig { ports: a..=a, ..loopback };
        let err = bind(&one_port).unwrap_err().to_string();
        assert!(err.starts_with(&format!("no free UDP port in {a}-{a}")), "{err}");
    }

    #[test]
    fn ipv4_destinations_are_mapped_on_dual_stack_sockets() {
        let v6_local: SocketAddr = "[::]:33445".parse().unwrap();
        let v4_local: SocketAddr = "0.0.0.0:33445".parse().unwrap();
        let dst: SocketAddr = "192.0.2.1:7".parse().unwrap();
        assert_eq!(send_addr(v6_local, dst), "[::ffff:192.0.2.1]:7".parse().unwrap());
        assert_eq!(send_addr(v4_local, dst), dst);
        assert!(lan_targets(true).contains(&IpAddr::V4(Ipv4Addr::BROADCAST)));
    }
}
