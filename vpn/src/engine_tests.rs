//! Engines joined in memory: a server, clients, and fake TUNs (plain
//! packet buffers).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use etherparse::TcpOptionElement;
use ipnet::IpNet;

use crate::control::{Control, DATA_ID, Message, Reason};
use crate::engine::{ClientConfig, Engine, Event, PeerId, ServerConfig};
use crate::packet::tests::{syn, udp};
use crate::stats::Drop;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn server_config() -> ServerConfig {
    let mut c = ServerConfig::new(Some("10.7.0.0/24".parse().unwrap()), Some("fd00:7::/64".parse().unwrap()));
    c.routes = vec![net("192.168.0.0/16")];
    c
}

/// The server's peer number for the client `i`, and that client's key.
fn client_peer(i: u32) -> (PeerId, Vec<u8>) {
    (PeerId(100 + i), format!("client key {i}").into_bytes())
}

const SERVER: PeerId = PeerId(1);

/// One server, several clients; control packets move by `pump`.
struct Net {
    now: Instant,
    server: Engine,
    clients: Vec<Engine>,
}

impl Net {
    // Any instant will do as the start of the test's virtual clock.
    #[allow(clippy::disallowed_methods)]
    fn new(server: ServerConfig, clients: Vec<ClientConfig>) -> Net {
        let mut net = Net {
            now: Instant::now(),
            server: Engine::server(server).unwrap(),
            clients: clients.into_iter().map(|c| Engine::client(c).unwrap()).collect(),
        };
        for i in 0..net.clients.len() {
            net.connect(i);
        }
        net.pump();
        net
    }

    fn connect(&mut self, i: usize) {
        let (peer, key) = client_peer(i as u32);
        self.server.peer_connected(self.now, peer, &key);
        self.clients[i].peer_connected(self.now, SERVER, b"server key");
    }

    fn lose(&mut self, i: usize) {
        self.server.peer_lost(client_peer(i as u32).0);
        self.clients[i].peer_lost(SERVER);
    }

    /// Delivers control packets until none are left.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.server.poll_transmit() {
                let i = (t.peer.0 - 100) as usize;
                self.clients[i].handle_control(self.now, SERVER, &t.packet);
                moved = true;
            }
            for i in 0..self.clients.len() {
                while let Some(t) = self.clients[i].poll_transmit() {
                    assert_eq!(t.peer, SERVER);
                    self.server.handle_control(self.now, client_peer(i as u32).0, &t.packet);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn client_events(&mut self, i: usize) -> Vec<Event> {
        std::iter::from_fn(|| self.clients[i].poll_event()).collect()
    }

    fn server_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    fn client_addr(&self, i: usize) -> IpAddr {
        self.clients[i].assignment().unwrap().v4.unwrap().client.addr()
    }

    /// Client `i`'s TUN -> server's TUN. Returns what the server writes.
    fn up(&mut self, i: usize, packet: &[u8]) -> Result<Vec<u8>, Drop> {
        let mut buf = packet.to_vec();
        let peer = self.clients[i].handle_tun(&mut buf)?;
        assert_eq!(peer, SERVER);
        let mut lossy = [&[DATA_ID][..], &buf].concat();
        self.server.handle_data(self.now, client_peer(i as u32).0, &mut lossy)?;
        Ok(lossy[1..].to_vec())
    }

    /// Server's TUN -> a client's TUN. Returns (client index, packet).
    fn down(&mut self, packet: &[u8]) -> Result<(usize, Vec<u8>), Drop> {
        let mut buf = packet.to_vec();
        let peer = self.server.handle_tun(&mut buf)?;
        let i = (peer.0 - 100) as usize;
        let mut lossy = [&[DATA_ID][..], &buf].concat();
        self.clients[i].handle_data(self.now, SERVER, &mut lossy)?;
        Ok((i, lossy[1..].to_vec()))
    }
}

fn asking(routes: &[&str]) -> ClientConfig {
    ClientConfig { routes: routes.iter().map(|r| net(r)).collect(), ..ClientConfig::default() }
}

#[test]
fn client_gets_addresses_and_offered_routes_only() {
    let mut n = Net::new(server_config(), vec![asking(&["192.168.50.0/24", "172.16.0.0/12"])]);
    let events = n.client_events(0);
    let [Event::Assigned { assignment, resumed: false }] = &events[..] else { panic!("{events:?}") };
    assert_eq!(assignment.mtu, 1280);
    let v4 = assignment.v4.unwrap();
    assert_eq!(v4.client.prefix_len(), 24);
    assert!(net("10.7.0.0/24").contains(&v4.client.addr()));
    assert_ne!(v4.client.addr(), ip("10.7.0.1"));
    assert_eq!(v4.server, ip("10.7.0.1"));
    let v6 = assignment.v6.unwrap();
    assert_eq!(v6.client.prefix_len(), 64);
    assert_eq!(v6.server, ip("fd00:7::1"));
    assert_eq!(assignment.routes, vec![net("192.168.50.0/24")]);
    assert_eq!(assignment.refused, vec![net("172.16.0.0/12")]);
    assert_eq!(assignment.offered, vec![net("192.168.0.0/16")]);
    let server_events = n.server_events();
    assert!(matches!(server_events[..], [Event::ClientUp { peer: PeerId(100), v4: Some(_), v6: Some(_) }]));
    assert_eq!(n.server.server_addresses(), vec![net("10.7.0.1/24"), net("fd00:7::1/64")]);

    // The client routes the pool networks and the accepted route to the
    // server, and nothing else.
    let me = n.client_addr(0);
    let table = n.clients[0].routes();
    assert_eq!(table.lookup(ip("10.7.0.200")), Some(&SERVER));
    assert_eq!(table.lookup(ip("fd00:7::99")), Some(&SERVER));
    assert_eq!(table.lookup(ip("192.168.50.3")), Some(&SERVER));
    assert_eq!(table.lookup(ip("192.168.51.3")), None);
    assert_eq!(table.lookup(ip("172.16.0.1")), None);
    assert_eq!(n.up(0, &udp(me, ip("192.168.51.3"), b"x")), Err(Drop::NoRoute));
    assert_eq!(n.clients[0].stats().dropped.get(Drop::NoRoute), 1);
}

#[test]
fn packets_cross_both_ways_and_are_counted() {
    let mut n = Net::new(server_config(), vec![asking(&["192.168.50.0/24"])]);
    let me = n.client_addr(0);
    let p = udp(me, ip("192.168.50.9"), b"ping");
    assert_eq!(n.up(0, &p), Ok(p.clone()));
    let back = udp(ip("192.168.50.9"), me, b"pong");
    assert_eq!(n.down(&back), Ok((0, back.clone())));
    let v6me = n.clients[0].assignment().unwrap().v6.unwrap().client.addr();
    let p6 = udp(v6me, ip("fd00:7::1"), b"six");
    assert_eq!(n.up(0, &p6), Ok(p6.clone()));
    let c = n.clients[0].stats();
    assert_eq!((c.packets_out, c.bytes_out), (2, (p.len() + p6.len()) as u64));
    assert_eq!((c.packets_in, c.bytes_in), (1, back.len() as u64));
    let s = n.server.stats();
    assert_eq!((s.packets_in, s.packets_out), (2, 1));
    assert_eq!(s.dropped.total(), 0);
}

#[test]
fn a_peer_may_only_send_from_its_own_addresses() {
    let mut n = Net::new(server_config(), vec![asking(&[]), asking(&[])]);
    let other = n.client_addr(1);
    // Client 0 claims client 1's address: the client lets it out (its
    // kernel chose it), the server drops it.
    let mut spoofed = [&[DATA_ID][..], &udp(other, ip("10.7.0.1"), b"x")].concat();
    assert_eq!(n.server.handle_data(n.now, client_peer(0).0, &mut spoofed), Err(Drop::SourceNotAllowed));
    let mut outside = [&[DATA_ID][..], &udp(ip("8.8.8.8"), ip("10.7.0.1"), b"x")].concat();
    assert_eq!(n.server.handle_data(n.now, client_peer(0).0, &mut outside), Err(Drop::SourceNotAllowed));
    assert_eq!(n.server.stats().dropped.get(Drop::SourceNotAllowed), 2);
    // From the server, a client accepts only sources it routes there.
    let mut stray = [&[DATA_ID][..], &udp(ip("203.0.113.5"), n.client_addr(0), b"x")].concat();
    assert_eq!(n.clients[0].handle_data(n.now, SERVER, &mut stray), Err(Drop::SourceNotAllowed));
    // Garbage and foreign ids.
    assert_eq!(n.server.handle_data(n.now, client_peer(0).0, &mut [DATA_ID, 0x45, 0]), Err(Drop::Malformed));
    assert_eq!(n.server.handle_data(n.now, client_peer(0).0, &mut [200, 0x45, 0]), Err(Drop::NotData));
    assert_eq!(n.server.handle_data(n.now, client_peer(0).0, &mut []), Err(Drop::NotData));
    assert_eq!(n.server.handle_tun(&mut [0x60, 1, 2]), Err(Drop::Malformed));
}

#[test]
fn a_peer_reaches_only_what_it_was_offered() {
    let mut n = Net::new(server_config(), vec![asking(&[]), asking(&[])]);
    let me = n.client_addr(0);
    let other = n.client_addr(1);
    let v6me = n.clients[0].assignment().unwrap().v6.unwrap().client.addr();
    let peer = client_peer(0).0;
    let send = |n: &mut Net, src: IpAddr, dst: &str| {
        let mut packet = [&[DATA_ID][..], &udp(src, ip(dst), b"x")].concat();
        n.server.handle_data(n.now, peer, &mut packet)
    };
    // The server's VPN addresses and the offered route.
    assert_eq!(send(&mut n, me, "10.7.0.1"), Ok(()));
    assert_eq!(send(&mut n, v6me, "fd00:7::1"), Ok(()));
    assert_eq!(send(&mut n, me, "192.168.3.4"), Ok(()));
    // Not offered: another network, another address of the pool, another
    // client (crafted packets: a client's own routes never send them).
    for dst in ["10.0.1.1", "172.16.0.1", "10.7.0.250", "10.7.0.255", "8.8.8.8"] {
        assert_eq!(send(&mut n, me, dst), Err(Drop::DestinationNotAllowed), "{dst}");
    }
    assert_eq!(send(&mut n, me, &other.to_string()), Err(Drop::DestinationNotAllowed));
    assert_eq!(send(&mut n, v6me, "fd00:7::2"), Err(Drop::DestinationNotAllowed));
    assert_eq!(send(&mut n, v6me, "2001:db8::1"), Err(Drop::DestinationNotAllowed));
    assert_eq!(n.server.stats().dropped.get(Drop::DestinationNotAllowed), 8);
    assert_eq!(n.server.stats().packets_in, 3);
    // A client takes from the server only packets for its own addresses.
    let mut stray = [&[DATA_ID][..], &udp(ip("10.7.0.1"), other, b"x")].concat();
    assert_eq!(n.clients[0].handle_data(n.now, SERVER, &mut stray), Err(Drop::DestinationNotAllowed));
    let mut mine = [&[DATA_ID][..], &udp(ip("10.7.0.1"), me, b"x")].concat();
    assert_eq!(n.clients[0].handle_data(n.now, SERVER, &mut mine), Ok(()));
}

#[test]
fn clients_reach_each_other_only_when_allowed() {
    let mut config = server_config();
    config.allow_clients = true;
    let mut n = Net::new(config, vec![asking(&[]), asking(&[]), asking(&[])]);
    let (a, b) = (n.client_addr(0), n.client_addr(1));
    let p = udp(a, b, b"hop");
    let at_server = n.up(0, &p).unwrap();
    assert_eq!(n.down(&at_server), Ok((1, p)));
    // Still not an address nobody holds, nor a client without a session.
    assert_eq!(n.up(0, &udp(a, ip("10.7.0.250"), b"?")), Err(Drop::DestinationNotAllowed));
    let c = n.client_addr(2);
    n.lose(2);
    assert_eq!(n.up(0, &udp(a, c, b"?")), Err(Drop::DestinationNotAllowed));
}

#[test]
fn several_clients_get_their_own_addresses_and_packets() {
    let mut config = server_config();
    config.allow_clients = true;
    let mut n = Net::new(config, vec![asking(&[]), asking(&[]), asking(&[])]);
    let addrs: Vec<IpAddr> = (0..3).map(|i| n.client_addr(i)).collect();
    assert!(addrs[0] != addrs[1] && addrs[1] != addrs[2] && addrs[0] != addrs[2]);
    for (i, a) in addrs.iter().enumerate() {
        let p = udp(ip("10.7.0.1"), *a, b"to you");
        assert_eq!(n.down(&p).unwrap().0, i);
    }
    // Client 0 reaches client 2 through the server's TUN (the kernel routes
    // it back out): up from 0, down to 2.
    let p = udp(addrs[0], addrs[2], b"hop");
    let at_server = n.up(0, &p).unwrap();
    assert_eq!(n.down(&at_server), Ok((2, p)));
    // An address nobody holds.
    assert_eq!(n.down(&udp(ip("10.7.0.1"), ip("10.7.0.250"), b"?")), Err(Drop::NoRoute));
}

#[test]
fn mss_is_clamped_both_ways() {
    use TcpOptionElement::MaximumSegmentSize;
    let mut n = Net::new(
        server_config(),
        vec![ClientConfig { mtu: 1200, routes: vec![net("192.168.1.0/24")], ..ClientConfig::default() }],
    );
    assert_eq!(n.clients[0].assignment().unwrap().mtu, 1200);
    let me = n.client_addr(0);
    let out = n.up(0, &syn(me, ip("192.168.1.10"), &[MaximumSegmentSize(1460)], &[])).unwrap();
    let back = n.down(&syn(ip("192.168.1.10"), me, &[MaximumSegmentSize(1460)], &[])).unwrap().1;
    for p in [out, back] {
        let ipslice = etherparse::IpSlice::from_slice(&p).unwrap();
        let tcp = etherparse::TcpSlice::from_slice(ipslice.payload().payload).unwrap();
        assert_eq!(tcp.options_iterator().next().unwrap().unwrap(), MaximumSegmentSize(1160));
    }
    // Once by the client on the way out, once by the server on the way out.
    assert_eq!(n.clients[0].stats().mss_clamped, 1);
    assert_eq!(n.server.stats().mss_clamped, 1);
    // A packet above the session MTU is dropped.
    let big = udp(me, ip("192.168.1.10"), &[0u8; 1200]);
    assert_eq!(n.up(0, &big), Err(Drop::TooBig));
}

#[test]
fn mtu_negotiation() {
    let mut s = server_config();
    s.mtu = 1300;
    let mut n = Net::new(
        s,
        vec![
            ClientConfig { mtu: 1372, ..ClientConfig::default() },
            ClientConfig { mtu: 1250, ..ClientConfig::default() },
        ],
    );
    assert_eq!(n.clients[0].mtu(), 1300);
    assert_eq!(n.clients[1].mtu(), 1250);
    // A hello asking for less than the minimum is refused.
    let hello = Control::new(Message::Hello(crate::control::Hello { mtu: 500, routes: vec![] })).encode().unwrap();
    n.server.handle_control(n.now, client_peer(0).0, &hello);
    let t = n.server.poll_transmit().unwrap();
    let Message::Refuse(r) = Control::decode(&t.packet).unwrap().message else { panic!() };
    assert_eq!(r.reason, Reason::BadHello);
    assert!(r.text.contains("500"), "{}", r.text);
}

#[test]
fn disabled_server_refuses_for_good() {
    let mut s = server_config();
    s.enabled = false;
    let mut n = Net::new(s, vec![asking(&[])]);
    let events = n.client_events(0);
    let [Event::Refused { reason: Reason::Disabled, text }] = &events[..] else { panic!("{events:?}") };
    assert!(text.contains("--vpn"));
    assert_eq!(n.server.stats().refused, 1);
    // No data passes, and a reconnect does not ask again.
    assert_eq!(n.clients[0].handle_tun(&mut udp(ip("10.7.0.2"), ip("10.7.0.1"), b"x")), Err(Drop::NoRoute));
    n.lose(0);
    n.connect(0);
    assert!(n.clients[0].poll_transmit().is_none());
}

#[test]
fn lost_peer_keeps_routes_drops_and_resumes_with_the_same_address() {
    let mut n = Net::new(server_config(), vec![asking(&["192.168.50.0/24"])]);
    let first = n.clients[0].assignment().unwrap().clone();
    let me = n.client_addr(0);
    n.client_events(0);
    n.server_events();
    n.lose(0);
    assert_eq!(n.client_events(0), vec![Event::ServerLost]);
    assert_eq!(n.server_events(), vec![Event::ClientDown { peer: client_peer(0).0 }]);
    // Packets both ways are dropped and counted; the routes stay.
    assert_eq!(n.up(0, &udp(me, ip("192.168.50.9"), b"x")), Err(Drop::PeerOffline));
    assert_eq!(n.down(&udp(ip("192.168.50.9"), me, b"x")), Err(Drop::PeerOffline));
    assert_eq!(n.clients[0].stats().dropped.get(Drop::PeerOffline), 1);
    assert_eq!(n.clients[0].routes().lookup(ip("192.168.50.9")), Some(&SERVER));
    // Back: the same session.
    n.connect(0);
    n.pump();
    let events = n.client_events(0);
    assert_eq!(events, vec![Event::Assigned { assignment: first, resumed: true }]);
    assert!(n.up(0, &udp(me, ip("192.168.50.9"), b"x")).is_ok());
}

#[test]
fn connected_twice_keeps_the_session() {
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    let me = n.client_addr(0);
    n.client_events(0);
    n.connect(0);
    n.pump();
    assert!(n.client_events(0).is_empty());
    assert!(n.up(0, &udp(me, ip("10.7.0.1"), b"x")).is_ok());
}

#[test]
fn returning_key_under_a_new_peer_number_keeps_its_address() {
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    let me = n.client_addr(0);
    n.lose(0);
    // The server knows the same key as a new peer this time.
    let key = client_peer(0).1;
    n.server.peer_connected(n.now, PeerId(555), &key);
    n.clients[0].peer_connected(n.now, SERVER, b"server key");
    let hello = n.clients[0].poll_transmit().unwrap();
    n.server.handle_control(n.now, PeerId(555), &hello.packet);
    let assign = n.server.poll_transmit().unwrap();
    assert_eq!(assign.peer, PeerId(555));
    n.clients[0].handle_control(n.now, SERVER, &assign.packet);
    assert_eq!(n.client_addr(0), me);
    let mut p = udp(ip("10.7.0.1"), me, b"x");
    assert_eq!(n.server.handle_tun(&mut p), Ok(PeerId(555)));
}

#[test]
fn server_restart_is_noticed_through_no_session() {
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    let me = n.client_addr(0);
    n.client_events(0);
    // A new server process; the Tox link never noticed.
    n.server = Engine::server(server_config()).unwrap();
    let (peer, key) = client_peer(0);
    n.server.peer_connected(n.now, peer, &key);
    n.now += Duration::from_secs(5);
    assert_eq!(n.up(0, &udp(me, ip("10.7.0.1"), b"x")), Err(Drop::NoSession));
    // Only one "no session" answer per interval.
    assert_eq!(n.up(0, &udp(me, ip("10.7.0.1"), b"x")), Err(Drop::NoSession));
    assert_eq!(n.server.stats().control_out, 1);
    n.pump();
    // The client asked again and got the same address (the key's preferred
    // slot).
    let events = n.client_events(0);
    assert!(matches!(&events[..], [Event::Assigned { resumed: true, .. }]), "{events:?}");
    assert_eq!(n.client_addr(0), me);
    assert!(n.up(0, &udp(me, ip("10.7.0.1"), b"x")).is_ok());
}

#[test]
fn full_pool_refuses_then_retries() {
    let mut s = server_config();
    s.pool_v4 = Some("10.7.0.0/30".parse().unwrap());
    let mut n = Net::new(s, vec![asking(&[]), asking(&[])]);
    assert!(n.clients[0].assignment().is_some());
    let events = n.client_events(1);
    assert!(matches!(&events[..], [Event::Refused { reason: Reason::PoolFull, .. }]), "{events:?}");
    let retry = n.clients[1].poll_timeout().unwrap();
    assert_eq!(retry, n.now + crate::engine::RETRY_AFTER);
    // Client 0 leaves; at the retry client 1 gets the slot.
    n.lose(0);
    n.now += Duration::from_secs(31);
    n.clients[1].handle_timeout(n.now);
    n.pump();
    assert!(n.clients[1].assignment().is_some());
    assert_eq!(n.client_addr(1), ip("10.7.0.2"));
}

#[test]
fn shutdown_says_goodbye() {
    let mut n = Net::new(server_config(), vec![asking(&[]), asking(&[])]);
    n.client_events(0);
    n.server.shutdown();
    n.pump();
    assert_eq!(n.client_events(0), vec![Event::ServerLost]);
    assert_eq!(n.clients[1].handle_tun(&mut udp(ip("10.7.0.9"), ip("10.7.0.1"), b"x")), Err(Drop::PeerOffline));
    // And the client's goodbye ends its session on the server.
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    n.server_events();
    n.clients[0].shutdown();
    n.pump();
    assert_eq!(n.server_events(), vec![Event::ClientDown { peer: client_peer(0).0 }]);
}

#[test]
fn turning_the_server_off_ends_sessions() {
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    n.client_events(0);
    n.server.set_enabled(false);
    n.pump();
    assert_eq!(n.client_events(0), vec![Event::ServerLost]);
    n.lose(0);
    n.connect(0);
    n.pump();
    assert!(matches!(&n.client_events(0)[..], [Event::Refused { reason: Reason::Disabled, .. }]));
}

#[test]
fn control_from_strangers_and_garbage_is_counted() {
    let mut n = Net::new(server_config(), vec![asking(&[])]);
    n.server.handle_control(n.now, PeerId(9999), &[0xA8, 1, 1, 0, 0, 0]);
    n.server.handle_control(n.now, client_peer(0).0, &[0xA8, 1]);
    n.clients[0].handle_control(n.now, PeerId(3), &[0xA8, 1, 4, 6]);
    assert_eq!(n.server.stats().control_bad, 2);
    assert_eq!(n.clients[0].stats().control_bad, 1);
    assert!(n.server.poll_transmit().is_none());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives, from peers known or not, on either side, the
        /// engines neither panic nor let through a packet from a source the
        /// peer may not use.
        #[test]
        fn engines_survive_any_input(inputs in prop::collection::vec(
            (0u8..5, any::<u8>(), prop::collection::vec(any::<u8>(), 0..80)), 0..40)) {
            let mut n = Net::new(server_config(), vec![asking(&["192.168.0.0/16"])]);
            for (kind, who, mut bytes) in inputs {
                let peer = if who % 2 == 0 { client_peer(0).0 } else { PeerId(u32::from(who)) };
                match kind {
                    0 => n.server.handle_control(n.now, peer, &bytes),
                    1 => n.clients[0].handle_control(n.now, SERVER, &bytes),
                    2 => {
                        let mut lossy = [&[DATA_ID][..], &bytes].concat();
                        if n.server.handle_data(n.now, peer, &mut lossy).is_ok() {
                            let src = crate::packet::summarize(&lossy[1..]).unwrap().src;
                            prop_assert_eq!(n.server.routes().lookup(src), Some(&peer));
                        }
                    }
                    3 => { let _ = n.server.handle_tun(&mut bytes); }
                    _ => { let _ = n.clients[0].handle_tun(&mut bytes); }
                }
                n.pump();
            }
        }
    }
}

#[test]
fn sessions_list_each_online_client_with_its_addresses() {
    let mut n = Net::new(server_config(), vec![asking(&[]), asking(&[])]);
    let addrs = |n: &Net, i: usize| {
        let a = n.clients[i].assignment().unwrap();
        vec![IpNet::from(a.v4.unwrap().client.addr()), IpNet::from(a.v6.unwrap().client.addr())]
    };
    let (a0, a1) = (addrs(&n, 0), addrs(&n, 1));
    assert_eq!(n.server.sessions(), vec![(client_peer(0).0, a0), (client_peer(1).0, a1.clone())]);
    // Offline: no session listed (its lease stays for its return).
    n.lose(0);
    assert_eq!(n.server.sessions(), vec![(client_peer(1).0, a1)]);
    assert!(n.clients[1].sessions().is_empty(), "a client has no sessions to list");
}

/// A client given `assign` by its server; returns its events.
fn assigned(config: ClientConfig, addresses: &[(&str, &str)]) -> (Engine, Vec<Event>) {
    use crate::control::{Address, Assign, Control};
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut c = Engine::client(config).unwrap();
    c.peer_connected(now, SERVER, b"server key");
    while c.poll_transmit().is_some() {}
    let addresses =
        addresses.iter().map(|(client, server)| Address { client: net(client), server: ip(server) }).collect();
    let packet = Control::new(Message::Assign(Assign { mtu: 1280, addresses, routes: vec![] })).encode().unwrap();
    c.handle_control(now, SERVER, &packet);
    let events = std::iter::from_fn(|| c.poll_event()).collect();
    (c, events)
}

#[test]
fn a_client_refuses_prefixes_too_wide_and_pools_over_its_own_routes() {
    // What the server assigns today: the pool's length (a /24 by default,
    // /16 at the widest) and a /64.
    for ok in [
        [("10.77.0.9/24", "10.77.0.1"), ("fd00:7::9/64", "fd00:7::1")],
        [("10.77.0.9/16", "10.77.0.1"), ("fd00:7::9/64", "fd00:7::1")],
    ] {
        let (c, events) = assigned(ClientConfig::default(), &ok);
        assert!(matches!(events[..], [Event::Assigned { .. }]), "{ok:?}: {events:?}");
        assert!(c.assignment().is_some());
    }
    let avoid = ClientConfig {
        avoid: vec![net("192.168.1.0/24"), net("10.0.0.0/8"), net("fd12::/16")],
        ..ClientConfig::default()
    };
    for (config, bad, says) in [
        (ClientConfig::default(), vec![("10.77.0.9/0", "10.77.0.1")], "too wide"),
        (ClientConfig::default(), vec![("10.77.0.9/15", "10.77.0.1")], "too wide"),
        (ClientConfig::default(), vec![("10.77.0.9/24", "10.77.0.1"), ("fd00:7::9/48", "fd00:7::1")], "/64"),
        (ClientConfig::default(), vec![("fd00:7::9/0", "fd00:7::1")], "/64"),
        (ClientConfig::default(), vec![("10.77.0.9/24", "10.78.0.1")], "outside"),
        (avoid.clone(), vec![("10.77.0.9/24", "10.77.0.1")], "10.0.0.0/8"),
        (avoid.clone(), vec![("192.168.0.9/16", "192.168.0.1")], "192.168.1.0/24"),
        (avoid.clone(), vec![("fd12:7::9/64", "fd12:7::1")], "fd12::/16"),
    ] {
        let (mut c, events) = assigned(config, &bad);
        let [Event::Rejected { message }] = &events[..] else { panic!("{bad:?}: {events:?}") };
        assert!(message.contains(says), "{bad:?}: {message}");
        assert!(c.assignment().is_none(), "{bad:?}");
        assert!(c.routes().is_empty(), "{bad:?}: nothing routed");
        // It says goodbye and asks no more.
        let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert!(sent.iter().any(|t| matches!(Control::decode(&t.packet).unwrap().message, Message::Goodbye(_))));
        c.peer_lost(SERVER);
        c.peer_connected(c_now(), SERVER, b"server key");
        assert!(c.poll_transmit().is_none(), "no hello after a rejected session");
    }
    // A pool apart from the avoided routes is fine.
    let (_, events) = assigned(avoid, &[("172.30.0.9/24", "172.30.0.1")]);
    assert!(matches!(events[..], [Event::Assigned { .. }]), "{events:?}");
}

#[allow(clippy::disallowed_methods)]
fn c_now() -> Instant {
    Instant::now()
}
