//! Our onion against c-toxcore 0.2.18: friend requests both ways and DHT
//! public-key announcements between our node and a libtoxcore peer, with
//! tox-bootstrapd and the peer as the only other onion nodes (every onion
//! path mixes c-toxcore relays and our node).
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer, to_hex};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::driver::udp::{self, UdpConfig};
use tuntox::driver::{self, NodeHandle};
use tuntox::proto::onion::client::OnionEvent;
use tuntox::proto::{Node, NodeConfig, NodeEvent};
use tuntox::wire::friend_request::FriendRequest;
use tuntox::wire::packed_node::PackedNode;
use tuntox::wire::tox_id::{NoSpam, ToxId, parse_public_key};

const NOSPAM: NoSpam = NoSpam([0xde, 0xad, 0xbe, 0xef]);

struct Ours {
    rt: Runtime,
    handle: NodeHandle,
    tox_id: ToxId,
}

fn start_ours(netns: &Netns, bootstrapd: &Bootstrapd, seed: u64) -> Ours {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (real, dht) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
    let tox_id = ToxId::new(*real.public(), NOSPAM);
    let config =
        UdpConfig { ports: 33600..=33610, bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), ..Default::default() };
    let socket = netns.run_in(move || udp::bind(&config).expect("bind inside the namespace"));
    let node_config = NodeConfig { unix_time_at_start: 1_800_000_000, ..NodeConfig::default() };
    let node = Node::new(real, dht, node_config, [seed as u8; 32]);
    let rt = Runtime::new().unwrap();
    let handle = {
        let _guard = rt.enter();
        driver::spawn(node, socket, CancellationToken::new()).expect("start the node")
    };
    let boot = PackedNode::udp(
        SocketAddr::from(([127, 0, 0, 1], bootstrapd.udp_port)),
        parse_public_key(&bootstrapd.public_key_hex).unwrap(),
    );
    rt.block_on(handle.with(move |n, now| n.bootstrap(now, boot))).unwrap();
    Ours { rt, handle, tox_id }
}

impl Ours {
    /// Waits for an event matching `pred`, running `each_second` between
    /// checks (to resend requests); fails after `timeout`.
    fn wait_event(
        &mut self,
        timeout: Duration,
        what: &str,
        mut each_second: impl FnMut(&Runtime, &NodeHandle),
        pred: impl Fn(&NodeEvent) -> bool,
    ) -> NodeEvent {
        let deadline = Deadline::after(timeout);
        loop {
            each_second(&self.rt, &self.handle);
            let tick = Deadline::after(Duration::from_secs(1));
            while !tick.passed() {
                let handle = &mut self.handle;
                let next = self.rt.block_on(async { tokio::time::timeout(tick.left(), handle.next_event()).await });
                match next {
                    Ok(Some(event)) if pred(&event) => return event,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("our node stopped"),
                    Err(_) => break,
                }
            }
            let stats = self.rt.block_on(self.handle.with(|n, now| (n.onion().stats(), n.onion().announced_to(now))));
            assert!(!deadline.passed(), "timed out after {timeout:?} waiting for {what}; onion stats {stats:?}");
        }
    }
}

fn key(hex: &str) -> PublicKey {
    parse_public_key(hex).unwrap()
}

/// We send a friend request to a libtoxcore peer known only by its Tox ID;
/// its friend_request callback fires with our message.
#[test]
fn our_friend_request_reaches_libtoxcore() {
    let netns = Netns::new("onionto");
    let bootstrapd = Bootstrapd::start(&netns);
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let ours = start_ours(&netns, &bootstrapd, 1);
    let peer_id: ToxId = peer.address().parse().unwrap();
    let peer_pk = *peer_id.public_key();
    let request = FriendRequest::new(peer_id.nospam(), Bytes::from_static(b"hello from tuntox")).unwrap();
    ours.rt.block_on(ours.handle.with(move |n, _| n.onion_mut().add_friend(peer_pk))).unwrap();

    // Resend every second until the peer's announce nodes are found.
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let request = request.clone();
        let sent = ours
            .rt
            .block_on(ours.handle.with(move |n, now| n.onion_mut().send_friend_request(now, &peer_pk, &request)))
            .unwrap();
        if sent > 0 {
            break;
        }
        assert!(!deadline.passed(), "the peer's announce nodes were never found");
        std::thread::sleep(Duration::from_millis(500));
    }
    let line = peer.wait_value("friend_request ", deadline.step(Duration::from_secs(30)));
    let (pk, message) = line.split_once(' ').unwrap();
    assert_eq!(pk, ours.tox_id.public_key().to_string());
    assert_eq!(message, to_hex(b"hello from tuntox"));
    eprintln!("friend request delivered after {:?}", deadline.elapsed());
}

/// A libtoxcore peer adds our Tox ID; we receive its request, then (once
/// we are friends) its DHT public key, announced through the onion.
#[test]
fn libtoxcore_friend_request_and_dht_key_reach_us() {
    let netns = Netns::new("onionfrom");
    let bootstrapd = Bootstrapd::start(&netns);
    let mut ours = start_ours(&netns, &bootstrapd, 2);
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let peer_pk = key(peer.public_key());
    let peer_dht = key(peer.dht_id());
    peer.add_friend(&ours.tox_id.to_string(), "let me in");

    let event = ours.wait_event(
        Duration::from_secs(60),
        "the peer's friend request",
        |_, _| {},
        |e| matches!(e, NodeEvent::Onion(OnionEvent::FriendRequest { .. })),
    );
    let NodeEvent::Onion(OnionEvent::FriendRequest { real_pk, nospam, message }) = event else { unreachable!() };
    assert_eq!(real_pk, peer_pk);
    assert_eq!(nospam, NOSPAM);
    assert_eq!(&message[..], b"let me in");

    // Accept: the peer now announces its DHT key to us.
    ours.rt.block_on(ours.handle.with(move |n, _| n.onion_mut().add_friend(peer_pk))).unwrap();
    let event = ours.wait_event(
        Duration::from_secs(60),
        "the peer's DHT key",
        |_, _| {},
        |e| matches!(e, NodeEvent::Onion(OnionEvent::FriendDhtPk { .. })),
    );
    let NodeEvent::Onion(OnionEvent::FriendDhtPk { real_pk, dht_pk, nodes }) = event else { unreachable!() };
    assert_eq!((real_pk, dht_pk), (peer_pk, peer_dht));
    assert!(!nodes.is_empty(), "the announcement lists nodes near the peer");
    let stats =
        ours.rt.block_on(ours.handle.with(|n, now| (n.onion().is_connected(), n.onion().announced_to(now)))).unwrap();
    assert!(stats.0 && stats.1 > 0, "we are announced: {stats:?}");
}
