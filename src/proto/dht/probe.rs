//! The address probe of `tuntox netcheck`, sans-IO: how DHT nodes see us.
//!
//! A nodes request (0x02) for our own DHT key, answered by a node that has
//! us in its lists, names us with the address our packets came from: the
//! address and port a NAT gave us toward that node. A node lists us once
//! it pinged us and we answered (c-toxcore pings whoever asks it
//! something, every 2 s), so the probe asks each node once a second,
//! answers pings, and waits for the node to name us.
//!
//! Asking several nodes on different addresses shows whether the NAT keeps
//! one mapping for every destination (the same address comes back) or
//! gives each destination its own port. Nodes named in the answers are
//! asked too (up to a limit), so one bootstrap node is enough on the real
//! network. The round trip of each node's first answer is kept.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::Transmit;
use crate::crypto::{KeyPair, Nonce, PublicKey};
use crate::proto::addr::normalize;
use crate::proto::key_cache::KeyCache;
use crate::wire::dht_packet::{DhtPacket, DhtPacketKind, DhtPayload};
use crate::wire::nodes_request::NodesRequest;
use crate::wire::nodes_response::NodesResponse;
use crate::wire::packed_node::{PackedNode, Protocol};
use crate::wire::ping_request::PingRequest;

/// How often a node that has not named us yet is asked again.
pub const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// One node asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its address and key.
    pub node: PackedNode,
    /// Named by another node rather than given.
    pub learned: bool,
    /// The round trip of its first answer.
    pub rtt: Option<Duration>,
    /// Where it sees us, once it named us.
    pub reported: Option<SocketAddr>,
    asked: Vec<(u64, Instant)>,
    last_ask: Option<Instant>,
}

impl Target {
    fn new(node: PackedNode, learned: bool) -> Self {
        Self { node, learned, rtt: None, reported: None, asked: Vec::new(), last_ask: None }
    }

    /// Whether it answered at all.
    pub fn answered(&self) -> bool {
        self.rtt.is_some()
    }
}

/// The probe.
#[derive(Debug)]
pub struct Probe {
    keys: KeyPair,
    targets: Vec<Target>,
    max_learned: usize,
    key_cache: KeyCache,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    next_tick: Option<Instant>,
    dropped: u64,
}

impl Probe {
    /// A probe with the DHT key pair `keys` (a fresh one: nodes know us by
    /// it) asking `nodes` (their UDP addresses), and up to `max_learned`
    /// nodes they name.
    pub fn new(keys: KeyPair, seed: [u8; 32], nodes: &[PackedNode], max_learned: usize) -> Self {
        let mut targets: Vec<Target> = Vec::new();
        for node in nodes.iter().filter(|n| n.protocol == Protocol::Udp) {
            let node = PackedNode { addr: normalize(node.addr), ..*node };
            if !targets.iter().any(|t| t.node.addr == node.addr) {
                targets.push(Target::new(node, false));
            }
        }
        Self {
            keys,
            targets,
            max_learned,
            key_cache: KeyCache::new(64),
            rng: ChaCha20Rng::from_seed(seed),
            transmits: VecDeque::new(),
            next_tick: None,
            dropped: 0,
        }
    }

    /// The nodes asked, given ones first.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Packets that did not decode, open or match a request.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether there is nothing more to learn: every node named us, or at
    /// least two did and every given node that answered did too.
    pub fn finished(&self) -> bool {
        let reports = self.targets.iter().filter(|t| t.reported.is_some()).count();
        let all = self.targets.iter().all(|t| t.reported.is_some());
        let given_done = self.targets.iter().filter(|t| !t.learned && t.answered()).all(|t| t.reported.is_some());
        !self.targets.is_empty() && (all || (reports >= 2 && given_done))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Asks every node that has not named us yet, once per
    /// [`ASK_INTERVAL`]. The first call asks at once.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + ASK_INTERVAL);
        for i in 0..self.targets.len() {
            let target = &self.targets[i];
            if target.reported.is_some() || target.last_ask.is_some_and(|t| now < t + ASK_INTERVAL) {
                continue;
            }
            let ping_id = self.rng.next_u64() | 1;
            let own = *self.keys.public();
            let node = target.node;
            if self.send(node.addr, node.public_key, &NodesRequest::new(own, ping_id)) {
                let target = &mut self.targets[i];
                target.asked.push((ping_id, now));
                target.last_ask = Some(now);
            }
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        if self.handle_inner(now, normalize(from), data).is_none() {
            self.dropped += 1;
        }
    }

    fn handle_inner(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Option<()> {
        let packet = DhtPacket::decode(data).ok()?;
        if packet.sender == *self.keys.public() {
            return None;
        }
        let key = self.key_cache.get(&packet.sender, self.keys.secret()).ok()?;
        let plain = packet.open(key).ok()?;
        match packet.kind {
            DhtPacketKind::PingRequest => {
                // Answering is what gets us into the node's lists.
                let ping = PingRequest::decode(plain).ok()?;
                self.send(from, packet.sender, &ping.response());
            }
            DhtPacketKind::NodesRequest => {
                let request = NodesRequest::decode(plain).ok()?;
                self.send(from, packet.sender, &NodesResponse::new(Vec::new(), request.ping_id).ok()?);
            }
            DhtPacketKind::NodesResponse => {
                let response = NodesResponse::decode(plain).ok()?;
                let own = *self.keys.public();
                let target =
                    self.targets.iter_mut().find(|t| t.node.addr == from && t.node.public_key == packet.sender)?;
                let at = target.asked.iter().position(|(id, _)| *id == response.ping_id)?;
                let (_, sent) = target.asked.remove(at);
                target.rtt.get_or_insert(now.saturating_duration_since(sent));
                let mut learned = Vec::new();
                for node in response.nodes() {
                    if node.public_key == own {
                        target.reported = Some(normalize(node.addr));
                    } else if node.protocol == Protocol::Udp {
                        learned.push(PackedNode { addr: normalize(node.addr), ..*node });
                    }
                }
                for node in learned {
                    let known = self.targets.iter().any(|t| t.node.addr == node.addr);
                    if !known && self.targets.iter().filter(|t| t.learned).count() < self.max_learned {
                        self.targets.push(Target::new(node, true));
                        // Asked at the next tick.
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn send<P: DhtPayload>(&mut self, dst: SocketAddr, key: PublicKey, payload: &P) -> bool {
        let nonce = Nonce::random(&mut self.rng);
        let Ok(shared) = self.key_cache.get(&key, self.keys.secret()) else { return false };
        let packet = DhtPacket::seal_payload(*self.keys.public(), shared, nonce, payload);
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut buf);
        self.transmits.push_back(Transmit { dst, payload: buf.freeze() });
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{Dht, DhtConfig};
    use super::*;

    fn keys(seed: u64) -> KeyPair {
        KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Two DHT nodes that know each other; the probe behind a NAT whose
    /// external port for a destination is `nat(destination)`. Steps the
    /// three for `secs` seconds and returns the probe.
    fn run(nat: impl Fn(SocketAddr) -> u16, secs: u64, given: usize) -> Probe {
        let t0 = crate::proto::test_epoch();
        let (a_addr, b_addr) = (addr("198.18.1.1:33445"), addr("198.18.2.1:33445"));
        let mut a = Dht::new(keys(1), DhtConfig::default(), [1; 32]);
        let mut b = Dht::new(keys(2), DhtConfig::default(), [2; 32]);
        a.bootstrap(t0, PackedNode::udp(b_addr, *b.public_key()));
        b.bootstrap(t0, PackedNode::udp(a_addr, *a.public_key()));
        let nodes = [PackedNode::udp(a_addr, *a.public_key()), PackedNode::udp(b_addr, *b.public_key())];
        let mut probe = Probe::new(keys(3), [3; 32], &nodes[..given], 4);
        let ours = |port| SocketAddr::from(([198, 18, 9, 9], port));
        for step in 0..secs * 10 {
            let now = t0 + Duration::from_millis(100 * step);
            a.handle_timeout(now);
            b.handle_timeout(now);
            probe.handle_timeout(now);
            for _ in 0..4 {
                while let Some(t) = probe.poll_transmit() {
                    let from = ours(nat(t.dst));
                    if t.dst == a_addr {
                        a.handle_packet(now, from, t.payload);
                    } else if t.dst == b_addr {
                        b.handle_packet(now, from, t.payload);
                    }
                }
                let from_a: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
                let from_b: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
                for (own, sent) in [(a_addr, from_a), (b_addr, from_b)] {
                    for t in sent {
                        if t.dst.ip() == ours(0).ip() {
                            // Back through the NAT, only to the port it gave.
                            if t.dst.port() == nat(own) {
                                probe.handle_packet(now, own, t.payload);
                            }
                        } else if t.dst == a_addr {
                            a.handle_packet(now, own, t.payload);
                        } else if t.dst == b_addr {
                            b.handle_packet(now, own, t.payload);
                        }
                    }
                }
            }
            if probe.finished() {
                break;
            }
        }
        probe
    }

    #[test]
    fn one_mapping_for_all_destinations_is_seen_twice() {
        let probe = run(|_| 40000, 10, 2);
        assert!(probe.finished());
        let seen: Vec<_> = probe.targets().iter().map(|t| t.reported).collect();
        assert_eq!(seen, [Some(addr("198.18.9.9:40000")), Some(addr("198.18.9.9:40000"))]);
        assert!(probe.targets().iter().all(|t| t.rtt.is_some()));
    }

    #[test]
    fn a_port_per_destination_shows() {
        let probe = run(|dst| if dst.ip() == addr("198.18.1.1:1").ip() { 40001 } else { 40002 }, 10, 2);
        assert!(probe.finished());
        let seen: Vec<_> = probe.targets().iter().map(|t| t.reported.unwrap().port()).collect();
        assert_eq!(seen, [40001, 40002]);
    }

    #[test]
    fn a_named_node_is_asked_too() {
        let probe = run(|_| 40000, 10, 1);
        assert!(probe.finished(), "{:?}", probe.targets());
        assert_eq!(probe.targets().len(), 2);
        assert!(probe.targets()[1].learned && probe.targets()[1].reported.is_some());
    }

    #[test]
    fn silence_is_nothing_learned() {
        let t0 = crate::proto::test_epoch();
        let mut probe = Probe::new(keys(3), [3; 32], &[PackedNode::udp(addr("198.18.1.1:1"), *keys(1).public())], 2);
        probe.handle_timeout(t0);
        assert!(probe.poll_transmit().is_some());
        probe.handle_timeout(t0 + Duration::from_millis(500));
        assert!(probe.poll_transmit().is_none(), "asked once a second");
        probe.handle_timeout(t0 + ASK_INTERVAL);
        assert!(probe.poll_transmit().is_some());
        assert!(!probe.finished() && !probe.targets()[0].answered());
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(kind in prop::sample::select(vec![0u8, 1, 2, 4, 0x20]), body in prop::collection::vec(any::<u8>(), 0..300)) {
            let t0 = crate::proto::test_epoch();
            let mut probe = Probe::new(keys(3), [3; 32], &[PackedNode::udp(addr("198.18.1.1:1"), *keys(1).public())], 2);
            let mut data = vec![kind];
            data.extend(body);
            probe.handle_packet(t0, addr("198.18.1.1:1"), Bytes::from(data));
            prop_assert_eq!(probe.dropped(), 1);
        }
    }
}
