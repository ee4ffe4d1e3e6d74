//! The TCP relay server driver on real sockets, with clients made of our
//! own codecs: routing and data between clients, and bad input (garbage
//! handshakes, oversize and undecryptable frames, silence, a client that
//! never reads) that must end in a closed, counted connection and never
//! hold up other clients.
//!
//! Runs in a network namespace of its own (the relay is a Tox node), so it
//! needs root.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::deadline::Deadline;
use support::netns::Netns;
use tokio::runtime::Runtime;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::driver::{NodeHandle, relay, spawn_with_relay, udp};
use tuntox::proto::relay::channel::{SecureChannel, start_handshake};
use tuntox::proto::relay::{RelayServerConfig, RelayServerStats};
use tuntox::proto::{Node, NodeConfig};
use tuntox::wire::tcp::frame::FrameCodec;
use tuntox::wire::tcp::{ConnectionId, Data, Ping, RoutingRequest, ServerHandshake, TcpPacket};

/// A relay on 127.0.0.1: an in-process node with the TCP server.
fn start_relay(rt: &Runtime, seed: u64) -> (NodeHandle, KeyPair, SocketAddr) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys = KeyPair::generate(&mut rng);
    let config =
        NodeConfig { onion_client: false, tcp_server: Some(RelayServerConfig::default()), ..NodeConfig::default() };
    let node = Node::new(KeyPair::generate(&mut rng), keys.clone(), config, [seed as u8; 32]);
    let _guard = rt.enter();
    let socket = udp::bind(&udp::UdpConfig {
        ports: 33445..=33445,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..udp::UdpConfig::default()
    })
    .unwrap();
    let listener = relay::bind(0, Some("127.0.0.1".parse().unwrap())).unwrap();
    let handle = spawn_with_relay(node, socket, vec![listener], Some(keys.clone()), CancellationToken::new()).unwrap();
    let addr = handle.tcp_addrs()[0];
    (handle, keys, addr)
}

fn stats(rt: &Runtime, relay: &NodeHandle) -> RelayServerStats {
    rt.block_on(relay.with(|node, _| node.tcp_server().unwrap().stats())).unwrap()
}

fn wait_stats(
    rt: &Runtime,
    relay: &NodeHandle,
    what: &str,
    pred: impl Fn(&RelayServerStats) -> bool,
) -> RelayServerStats {
    let deadline = Deadline::after(Duration::from_secs(20));
    loop {
        let s = stats(rt, relay);
        if pred(&s) {
            return s;
        }
        assert!(!deadline.passed(), "{what}: stats {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until the relay closes the connection (bounded).
fn assert_closed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the relay did not close the connection: {e}"),
        }
    }
}

/// A test client speaking the relay protocol with our codecs.
struct Client {
    stream: TcpStream,
    channel: SecureChannel,
    buf: BytesMut,
    keys: KeyPair,
}

impl Client {
    fn connect(addr: SocketAddr, relay_pk: &PublicKey, seed: u64) -> Client {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let keys = KeyPair::generate(&mut rng);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (hello, pending) = start_handshake(&mut rng, &keys, relay_pk).unwrap();
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        stream.write_all(&bytes).unwrap();
        let mut answer = [0u8; 96];
        stream.read_exact(&mut answer).unwrap();
        let channel = pending.finish(&ServerHandshake::decode(answer.to_vec()).unwrap()).unwrap();
        Client { stream, channel, buf: BytesMut::new(), keys }
    }

    fn pk(&self) -> PublicKey {
        *self.keys.public()
    }

    fn send(&mut self, packet: &TcpPacket) {
        let mut out = BytesMut::new();
        self.channel.sealer.seal_packet(packet, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn recv(&mut self) -> TcpPacket {
        loop {
            if let Some(frame) = FrameCodec.decode(&mut self.buf).unwrap() {
                let plain = self.channel.opener.open_frame(frame).unwrap();
                return TcpPacket::decode(plain).unwrap();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a packet from the relay in time");
            assert!(n > 0, "the relay closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next packet that is not a ping (pings are answered).
    fn recv_no_ping(&mut self) -> TcpPacket {
        loop {
            match self.recv() {
                TcpPacket::Ping(p) => self.send(&TcpPacket::Pong(tuntox::wire::tcp::Pong::new(p.ping_id))),
                other => return other,
            }
        }
    }
}

/// Links two clients; returns their connection ids.
fn link(a: &mut Client, b: &mut Client) -> (ConnectionId, ConnectionId) {
    a.send(&TcpPacket::RoutingRequest(RoutingRequest::new(b.pk())));
    let TcpPacket::RoutingResponse(ra) = a.recv_no_ping() else { panic!("no routing response") };
    b.send(&TcpPacket::RoutingRequest(RoutingRequest::new(a.pk())));
    let TcpPacket::RoutingResponse(rb) = b.recv_no_ping() else { panic!("no routing response") };
    let (ca, cb) = (ra.connection().unwrap(), rb.connection().unwrap());
    assert!(matches!(b.recv_no_ping(), TcpPacket::ConnectNotification(n) if n.connection == cb));
    assert!(matches!(a.recv_no_ping(), TcpPacket::ConnectNotification(n) if n.connection == ca));
    (ca, cb)
}

#[test]
fn clients_route_data_and_bad_input_is_dropped_and_counted() {
    let netns = Netns::new("relaysrv");
    netns.run_in(|| {
        let rt = Runtime::new().unwrap();
        let (relay, keys, addr) = start_relay(&rt, 1);
        let relay_pk = *keys.public();

        let mut a = Client::connect(addr, &relay_pk, 10);
        let mut b = Client::connect(addr, &relay_pk, 11);
        a.send(&TcpPacket::Ping(Ping::new(5)));
        assert_eq!(a.recv(), TcpPacket::Pong(tuntox::wire::tcp::Pong::new(5)));
        b.send(&TcpPacket::Ping(Ping::new(6)));
        b.recv();
        let (ca, cb) = link(&mut a, &mut b);
        for i in 0..100u32 {
            let payload = Bytes::from(vec![i as u8; 1 + (i as usize * 19) % 2000]);
            a.send(&TcpPacket::Data(Data::new(ca, payload.clone()).unwrap()));
            assert_eq!(b.recv_no_ping(), TcpPacket::Data(Data::new(cb, payload).unwrap()));
        }

        // Garbage instead of a handshake.
        let mut g = TcpStream::connect(addr).unwrap();
        g.write_all(&[0x55; 128]).unwrap();
        assert_closed(&mut g);
        // A frame length over 2048.
        let mut c = Client::connect(addr, &relay_pk, 12);
        c.stream.write_all(&[0x08, 0x01]).unwrap();
        assert_closed(&mut c.stream);
        // A frame that does not open.
        let mut d = Client::connect(addr, &relay_pk, 13);
        d.stream.write_all(&[0, 20]).unwrap();
        d.stream.write_all(&[0xaa; 20]).unwrap();
        assert_closed(&mut d.stream);
        // A packet c-toxcore ends connections for: data on a slot never asked for.
        let mut e = Client::connect(addr, &relay_pk, 14);
        e.send(&TcpPacket::Data(Data::new(ConnectionId::from_slot(7).unwrap(), Bytes::from_static(b"x")).unwrap()));
        assert_closed(&mut e.stream);
        let s = wait_stats(&rt, &relay, "bad input counted", |s| {
            s.bad_handshakes == 1 && s.bad_frames == 1 && s.undecryptable == 1 && s.protocol_errors == 1
        });
        assert_eq!(s.data_routed, 100);

        // The linked pair still works.
        b.send(&TcpPacket::Data(Data::new(cb, Bytes::from_static(b"still here")).unwrap()));
        assert_eq!(a.recv_no_ping(), TcpPacket::Data(Data::new(ca, Bytes::from_static(b"still here")).unwrap()));

        // A flood of connections that never send their handshake: 256 wait
        // in their handshake at most (as c-toxcore); each one more closes
        // the oldest waiting one at once (nobody is locked out), and the
        // waiting ones are closed after the 10 s deadline.
        let mut silent: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_stats(&rt, &relay, "the oldest evicted", |s| s.evicted == 44);
        for stream in &mut silent {
            assert_closed(stream);
        }
        let s = wait_stats(&rt, &relay, "the silent connections", |s| s.confirm_timeouts == 256);
        assert_eq!((s.refused_full, s.evicted), (0, 44));
        // The linked pair is still there.
        a.send(&TcpPacket::Data(Data::new(ca, Bytes::from_static(b"after")).unwrap()));
        assert_eq!(b.recv_no_ping(), TcpPacket::Data(Data::new(cb, Bytes::from_static(b"after")).unwrap()));
        rt.block_on(relay.shutdown());
    });
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let netns = Netns::new("relayslow");
    netns.run_in(|| {
        let rt = Runtime::new().unwrap();
        let (relay, keys, addr) = start_relay(&rt, 2);
        let relay_pk = *keys.public();
        let mut sender = Client::connect(addr, &relay_pk, 20);
        let mut sleeper = Client::connect(addr, &relay_pk, 21);
        let mut a = Client::connect(addr, &relay_pk, 22);
        let mut b = Client::connect(addr, &relay_pk, 23);
        let (to_sleeper, _) = link(&mut sender, &mut sleeper);
        let (ca, cb) = link(&mut a, &mut b);

        // 40 MB at a client that reads nothing: the relay drops what does
        // not fit in its queue and the socket buffers.
        let flood = std::thread::spawn(move || {
            let payload = Bytes::from(vec![0x77; 2000]);
            for _ in 0..20_000 {
                sender.send(&TcpPacket::Data(Data::new(to_sleeper, payload.clone()).unwrap()));
            }
            sender
        });
        // Meanwhile the other pair keeps talking.
        for i in 0..200u32 {
            let payload = Bytes::from(i.to_be_bytes().to_vec());
            a.send(&TcpPacket::Data(Data::new(ca, payload.clone()).unwrap()));
            assert_eq!(b.recv_no_ping(), TcpPacket::Data(Data::new(cb, payload).unwrap()), "packet {i}");
        }
        let _sender = flood.join().unwrap();
        // Every packet was routed (20,000 to the sleeper, 200 to b); what
        // did not fit was dropped and counted, and nobody was closed.
        let s = wait_stats(&rt, &relay, "the flood routed", |s| s.data_routed == 20_200);
        assert!(s.send_dropped > 10_000, "{s:?}");
        assert_eq!((s.too_slow, s.protocol_errors), (0, 0), "{s:?}");
        drop(sleeper);
        rt.block_on(relay.shutdown());
    });
}
