//! The NAT test bed itself: each router kind maps and filters UDP as its
//! name says, seen by plain sockets on the LAN hosts and the public hosts,
//! and the cone router reproduces the conntrack collision that keeps two
//! Tox peers off a direct path (an early datagram from the peer holds the
//! tuple, so the host's own packet to it leaves from a random port).

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use support::natbed::{
    CLIENT_PUBLIC, LAN_HOST, NatBed, NatBedConfig, PUBLIC_HOST, PUBLIC_HOST2, RouterKind, SERVER_PUBLIC,
};
use support::netns::Netns;

/// A UDP socket bound inside `netns` (it stays there), with a short read timeout.
fn udp(netns: &Netns, ip: std::net::Ipv4Addr, port: u16) -> UdpSocket {
    let socket = netns.run_in(move || UdpSocket::bind((ip, port)).expect("bind inside the namespace"));
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    socket
}

/// The next datagram's source, or `None` within the read timeout.
fn recv_from(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 256];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

#[test]
fn cone_keeps_the_port_random_port_changes_it_per_destination() {
    let bed = NatBed::new(NatBedConfig {
        second_public: true,
        ..NatBedConfig::new(RouterKind::Cone, RouterKind::RandomPort)
    });
    let public2 = bed.public2.as_ref().unwrap();
    let (p1, p2) = (udp(&bed.public, PUBLIC_HOST, 5000), udp(public2, PUBLIC_HOST2, 5000));
    for (host, public_ip) in [(&bed.client, CLIENT_PUBLIC), (&bed.server, SERVER_PUBLIC)] {
        let socket = udp(host, LAN_HOST, 40000);
        socket.send_to(b"one", (PUBLIC_HOST, 5000)).unwrap();
        socket.send_to(b"two", (PUBLIC_HOST2, 5000)).unwrap();
        let (_, from1) = recv_from(&p1).expect("the first public host hears the LAN host");
        let (_, from2) = recv_from(&p2).expect("the second public host hears it");
        assert_eq!((from1.ip(), from2.ip()), (public_ip.into(), public_ip.into()), "both see the router's address");
        if host.name() == bed.client.name() {
            assert_eq!((from1.port(), from2.port()), (40000, 40000), "cone: the LAN port, whatever the destination");
        } else {
            assert_ne!(from1.port(), from2.port(), "random port: one per destination");
        }
        // Filtering: the reply comes in, the same host's other port does not.
        p1.send_to(b"reply", from1).unwrap();
        assert_eq!(recv_from(&socket).map(|(d, _)| d), Some(b"reply".to_vec()));
        let other = udp(&bed.public, PUBLIC_HOST, 5001);
        other.send_to(b"stranger", from1).unwrap();
        assert_eq!(recv_from(&socket), None, "a port the host never sent to is filtered");
    }
}

#[test]
fn udp_blocked_passes_tcp_only_and_a_port_forward_admits_strangers() {
    let bed = NatBed::new(NatBedConfig::new(RouterKind::UdpBlocked, RouterKind::PortForward(33445)));
    let public = udp(&bed.public, PUBLIC_HOST, 5000);
    let client = udp(&bed.client, LAN_HOST, 40000);
    client.send_to(b"lost", (PUBLIC_HOST, 5000)).unwrap();
    assert_eq!(recv_from(&public), None, "the client's router drops its UDP");
    let listener = bed.public.run_in(|| TcpListener::bind((PUBLIC_HOST, 5000)).unwrap());
    let stream = bed.client.run_in(|| TcpStream::connect_timeout(&(PUBLIC_HOST, 5000).into(), Duration::from_secs(2)));
    assert!(stream.is_ok(), "TCP goes through: {stream:?}");
    drop(listener);

    let server = udp(&bed.server, LAN_HOST, 33445);
    let stranger = udp(&bed.public, PUBLIC_HOST, 5002);
    stranger.send_to(b"forwarded", (SERVER_PUBLIC, 33445)).unwrap();
    let (data, from) = recv_from(&server).expect("the forwarded port admits an unsolicited datagram");
    assert_eq!((data.as_slice(), from), (&b"forwarded"[..], SocketAddr::from((PUBLIC_HOST, 5002))));
}

/// Hole punching's openers: a datagram with IP TTL 2 (the puncher's
/// `OPENER_TTL`) from a LAN host passes its router, which maps it, and
/// dies at the next hop, before any host beyond; with TTL 3 it arrives.
/// The same from a dual-stack socket to an IPv4 address, as the node's
/// socket may be (the driver sets both the TTL and the hop limit).
#[test]
fn a_datagram_with_ttl_2_is_mapped_by_the_router_and_dies_at_the_next_hop() {
    let bed = NatBed::new(NatBedConfig::new(RouterKind::Cone, RouterKind::Cone));
    let public = udp(&bed.public, PUBLIC_HOST, 5000);
    for (i, dual_stack) in [false, true].into_iter().enumerate() {
        let port = 41000 + i as u16;
        let socket = bed.client.run_in(move || {
            if dual_stack {
                let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
                s.set_only_v6(false).unwrap();
                s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into()).unwrap();
                UdpSocket::from(s)
            } else {
                UdpSocket::bind((LAN_HOST, port)).unwrap()
            }
        });
        let dst: SocketAddr = if dual_stack {
            SocketAddr::from((PUBLIC_HOST.to_ipv6_mapped(), 5000))
        } else {
            SocketAddr::from((PUBLIC_HOST, 5000))
        };
        let sock = socket2::SockRef::from(&socket);
        for ttl in [2, 3] {
            sock.set_ttl_v4(ttl).expect("IP_TTL");
            if dual_stack {
                sock.set_unicast_hops_v6(ttl).expect("IPV6_UNICAST_HOPS");
            }
            socket.send_to(&[ttl as u8], dst).unwrap();
            let got = recv_from(&public);
            if ttl == 2 {
                assert_eq!(got, None, "dual stack {dual_stack}: TTL 2 went past the public router");
                let table = bed.client_router.conntrack();
                assert!(
                    table.lines().any(|l| l.contains(&format!("dst={PUBLIC_HOST} sport={port} dport=5000"))),
                    "dual stack {dual_stack}: the router mapped nothing:\n{table}"
                );
            } else {
                let (data, from) = got.unwrap_or_else(|| panic!("dual stack {dual_stack}: TTL 3 got lost"));
                assert_eq!((data, from), (vec![3], SocketAddr::from((CLIENT_PUBLIC, port))), "dual stack {dual_stack}");
            }
        }
    }
}

/// The failure of plain hole punching between two cone routers: the
/// client's first datagram reaches the server's router before the server
/// sent anything, leaves an UNREPLIED entry there, and the server's own
/// datagram to the client then leaves from a random port, which the
/// client's router does not admit.
#[test]
fn an_early_datagram_makes_the_cone_router_pick_a_random_port() {
    let bed = NatBed::new(NatBedConfig::new(RouterKind::Cone, RouterKind::Cone));
    let client = udp(&bed.client, LAN_HOST, 33445);
    let server = udp(&bed.server, LAN_HOST, 33445);
    client.send_to(b"early", (SERVER_PUBLIC, 33445)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.send_to(b"late", (CLIENT_PUBLIC, 33445)).unwrap();
    assert_eq!(recv_from(&client), None, "the server's datagram is filtered");
    client.send_to(b"again", (SERVER_PUBLIC, 33445)).unwrap();
    assert_eq!(recv_from(&server), None, "and the client's too");
    let table = bed.server_router.conntrack();
    let mapped = table
        .lines()
        .find(|l| l.contains(&format!("src={LAN_HOST} dst={CLIENT_PUBLIC}")))
        .unwrap_or_else(|| panic!("no entry for the server's datagram:\n{}", bed.conntrack()));
    assert!(!mapped.ends_with("dport=33445") && !mapped.contains("dport=33445 mark"), "not the LAN port: {mapped}");
    assert!(
        table.lines().any(|l| l.contains(&format!("src={CLIENT_PUBLIC} dst={SERVER_PUBLIC} sport=33445 dport=33445"))
            && l.contains("UNREPLIED")),
        "the client's early datagram holds the tuple:\n{table}"
    );
}
