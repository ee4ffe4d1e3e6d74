//! Bulk transfers between net_crypto sessions over simulated bottlenecks,
//! on a virtual clock: the test bench of the lossless transport
//! (congestion control, acknowledgements, retransmissions).
//!
//! Each *flow* is a pair of [`NetCrypto`] endpoints, a sender on the left
//! and a receiver on the right. All flows share one [`Link`] per direction
//! (left to right carries the data, right to left the acknowledgements),
//! so two flows compete for one bottleneck as two connections through one
//! home router do. Optionally a flow also has a TCP relay path (a
//! [`RelayPath`] each way, reached through [`NetCrypto::handle_tcp`]:
//! by default a relay that only delays, or one that reads in rounds and
//! drops as c-toxcore's does, [`Transfers::set_relay`]), and the direct
//! path can be closed and opened, to watch a session move between them.
//!
//! The sender keeps its send buffer full from its flow's byte budget; the
//! receiver takes packets as they are delivered and checks that each flow's
//! packets arrive once and in order. Each payload is a full lossless
//! packet (1373 bytes) whose first bytes number it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use rand_core::SeedableRng;

use super::link::{Link, LinkConfig};
use super::relay::{RelayConfig, RelayPath};
use crate::crypto::{KeyPair, PublicKey};
use crate::proto::net_crypto::{NetCrypto, NetCryptoEvent, TcpSource};
use crate::wire::crypto_data::MAX_CRYPTO_DATA_SIZE;

/// The lossless packet id the flows use (a custom lossless id).
const PAYLOAD_ID: u8 = 161;

/// Which way a datagram crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hop {
    /// Sender to receiver over the direct path.
    Forward,
    /// Receiver to sender over the direct path.
    Back,
    /// Sender to receiver through the relay.
    RelayForward,
    /// Receiver to sender through the relay.
    RelayBack,
}

#[derive(Debug)]
struct Endpoint {
    nc: NetCrypto,
    addr: SocketAddr,
    pk: PublicKey,
    dht_pk: PublicKey,
}

/// One transfer's progress.
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    /// When the session was established.
    pub established: Option<Instant>,
    /// When the first payload was queued (sending starts at establishment
    /// or at the flow's start time, whichever is later).
    pub started: Option<Instant>,
    /// Payload bytes queued by the sender.
    pub queued: u64,
    /// Payload bytes delivered, in order, to the receiver.
    pub delivered: u64,
    /// When the last byte of the budget was delivered.
    pub finished: Option<Instant>,
    /// Delivered bytes at the end of each 100 ms of virtual time.
    pub series: Vec<(Instant, u64)>,
    /// When the last payload was delivered.
    pub last_delivery: Option<Instant>,
    /// The longest time between two deliveries, and when it ended.
    pub longest_gap: (Duration, Option<Instant>),
}

impl FlowStats {
    /// Bytes delivered between `from` and `to` (virtual times), from the
    /// 100 ms series.
    pub fn delivered_between(&self, from: Instant, to: Instant) -> u64 {
        let at = |t: Instant| self.series.iter().take_while(|(s, _)| *s <= t).last().map_or(0, |(_, d)| *d);
        at(to).saturating_sub(at(from))
    }

    /// Goodput in megabits per second between `from` and `to`.
    pub fn mbit_between(&self, from: Instant, to: Instant) -> f64 {
        let secs = to.saturating_duration_since(from).as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.delivered_between(from, to) as f64 * 8.0 / secs / 1e6
    }
}

#[derive(Debug)]
struct Flow {
    sender: Endpoint,
    receiver: Endpoint,
    budget: u64,
    start_at: Instant,
    next_number: u64,
    next_expected: u64,
    relay: bool,
    /// The direct path carries datagrams from the sender, and to it.
    direct_open: (bool, bool),
    stats: FlowStats,
}

/// Flows over shared bottleneck links.
#[derive(Debug)]
pub struct Transfers {
    now: Instant,
    epoch: Instant,
    rng: ChaCha8Rng,
    forward: Link,
    back: Link,
    relay_forward: RelayPath,
    relay_back: RelayPath,
    flows: Vec<Flow>,
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize, Hop)>>,
    payloads: foldhash::HashMap<u64, Bytes>,
    next_seq: u64,
    next_sample: Instant,
}

impl Transfers {
    /// No flows yet; data crosses `forward`, acknowledgements `back`.
    pub fn new(forward: LinkConfig, back: LinkConfig, seed: u64) -> Self {
        // The virtual clock starts at a real instant (Instant has no other
        // constructor) and from then on only moves when the simulation does.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let relay = RelayConfig::instant(Duration::from_millis(15));
        Self {
            now,
            epoch: now,
            rng: ChaCha8Rng::seed_from_u64(seed),
            forward: Link::new(forward),
            back: Link::new(back),
            relay_forward: RelayPath::new(relay.clone(), now),
            relay_back: RelayPath::new(relay, now),
            flows: Vec::new(),
            in_flight: BinaryHeap::new(),
            payloads: foldhash::HashMap::default(),
            next_seq: 0,
            next_sample: now + Duration::from_millis(100),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// When the simulation started.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Adds a flow that sends `budget` bytes from `start` (after the
    /// epoch) on; returns its index. Its session comes up at once.
    pub fn add_flow(&mut self, budget: u64, start: Duration) -> usize {
        let index = self.flows.len();
        let mut key_rng = ChaCha20Rng::seed_from_u64(0x5eed ^ index as u64);
        let mut endpoint = |side: u8| {
            let real = KeyPair::generate(&mut key_rng);
            let dht = KeyPair::generate(&mut key_rng);
            let (pk, dht_pk) = (*real.public(), *dht.public());
            let mut seed = [side; 32];
            seed[0] = index as u8;
            let addr = SocketAddr::from(([198, 18, side, index as u8 + 1], 33445));
            Endpoint { nc: NetCrypto::new(real, dht, seed), addr, pk, dht_pk }
        };
        let mut sender = endpoint(1);
        let mut receiver = endpoint(2);
        sender.nc.set_accept(receiver.pk, true);
        receiver.nc.set_accept(sender.pk, true);
        sender.nc.connect(self.now, receiver.pk, receiver.dht_pk);
        sender.nc.set_addr(&receiver.pk, receiver.addr);
        self.flows.push(Flow {
            sender,
            receiver,
            budget,
            start_at: self.epoch + start,
            next_number: 0,
            next_expected: 0,
            relay: false,
            direct_open: (true, true),
            stats: FlowStats::default(),
        });
        self.pump(index);
        index
    }

    /// Gives flow `index` a TCP relay path: packets the sessions hand to
    /// the relays cross the relay paths.
    pub fn add_relay(&mut self, index: usize) {
        let now = self.now;
        let flow = &mut self.flows[index];
        flow.relay = true;
        let (s, r) = (flow.sender.pk, flow.receiver.pk);
        flow.sender.nc.set_tcp(now, &r, true);
        flow.receiver.nc.set_tcp(now, &s, true);
        self.pump(index);
    }

    /// How the relay paths behave from now on (data, acknowledgements).
    pub fn set_relay(&mut self, forward: RelayConfig, back: RelayConfig) {
        self.relay_forward.set(forward);
        self.relay_back.set(back);
    }

    /// Opens or closes flow `index`'s direct path (both ways).
    pub fn set_direct(&mut self, index: usize, open: bool) {
        self.flows[index].direct_open = (open, open);
    }

    /// Opens or closes each way of flow `index`'s direct path: `forward`
    /// from the sender, `back` to it (a path that works one way only).
    pub fn set_direct_ways(&mut self, index: usize, forward: bool, back: bool) {
        self.flows[index].direct_open = (forward, back);
    }

    /// The direct path's links, to change them while flows run.
    pub fn forward_link(&mut self) -> &mut Link {
        &mut self.forward
    }

    /// The acknowledgements' link.
    pub fn back_link(&mut self) -> &mut Link {
        &mut self.back
    }

    /// The relay paths (sender to receiver, and back).
    pub fn relay_paths(&mut self) -> (&mut RelayPath, &mut RelayPath) {
        (&mut self.relay_forward, &mut self.relay_back)
    }

    /// Flow `index`'s progress.
    pub fn flow(&self, index: usize) -> &FlowStats {
        &self.flows[index].stats
    }

    /// Flow `index`'s sending endpoint (congestion control, counters).
    pub fn sender(&self, index: usize) -> &NetCrypto {
        &self.flows[index].sender.nc
    }

    /// Flow `index`'s receiving endpoint.
    pub fn receiver(&self, index: usize) -> &NetCrypto {
        &self.flows[index].receiver.nc
    }

    /// The sender's real key of flow `index` (the receiver's session peer).
    pub fn sender_key(&self, index: usize) -> PublicKey {
        self.flows[index].sender.pk
    }

    /// The receiver's real key of flow `index` (the sender's session peer).
    pub fn receiver_key(&self, index: usize) -> PublicKey {
        self.flows[index].receiver.pk
    }

    /// Whether every flow delivered its whole budget.
    pub fn all_finished(&self) -> bool {
        self.flows.iter().all(|f| f.stats.finished.is_some())
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline, |_| false);
    }

    /// Runs until every flow finished or `limit` passed; returns whether
    /// they finished.
    pub fn run_to_end(&mut self, limit: Duration) -> bool {
        let deadline = self.now + limit;
        self.run_until(deadline, Self::all_finished);
        self.all_finished()
    }

    fn next_timer(&self) -> Option<(Instant, usize, bool)> {
        let mut best: Option<(Instant, usize, bool)> = None;
        for (i, flow) in self.flows.iter().enumerate() {
            for (receiver, nc) in [(false, &flow.sender.nc), (true, &flow.receiver.nc)] {
                if let Some(t) = nc.poll_timeout()
                    && best.is_none_or(|(b, ..)| t < b)
                {
                    best = Some((t, i, receiver));
                }
            }
            // A flow waiting for its start time.
            if flow.stats.established.is_some()
                && flow.stats.started.is_none()
                && best.is_none_or(|(b, ..)| flow.start_at < b)
            {
                best = Some((flow.start_at, i, false));
            }
        }
        best
    }

    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) {
        let mut same_instant = 0u32;
        while !done(self) {
            let delivery = self.in_flight.peek().map(|Reverse((t, ..))| *t);
            let timer = self.next_timer();
            let next = match (delivery, timer) {
                (Some(d), Some((t, ..))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, ..))) => t,
                (None, None) => deadline,
            };
            let next = next.max(self.now).min(self.next_sample);
            if next > deadline {
                break;
            }
            same_instant = if next == self.now { same_instant + 1 } else { 0 };
            assert!(same_instant < 1_000_000, "the transfers spin at one instant");
            self.now = next;
            if self.now >= self.next_sample {
                for flow in &mut self.flows {
                    flow.stats.series.push((self.now, flow.stats.delivered));
                }
                self.next_sample += Duration::from_millis(100);
            }
            if delivery.is_some_and(|d| d <= self.now) {
                let Some(Reverse((_, seq, flow, hop))) = self.in_flight.pop() else { continue };
                let data = self.payloads.remove(&seq).unwrap_or_default();
                self.deliver(flow, hop, data);
                self.pump(flow);
                continue;
            }
            if let Some((t, flow, receiver)) = timer
                && t <= self.now
            {
                let now = self.now;
                let f = &mut self.flows[flow];
                if receiver {
                    f.receiver.nc.handle_timeout(now);
                } else {
                    f.sender.nc.handle_timeout(now);
                }
                self.pump(flow);
            }
        }
        if !done(self) {
            self.now = self.now.max(deadline);
        }
    }

    fn deliver(&mut self, index: usize, hop: Hop, data: Bytes) {
        let now = self.now;
        let flow = &mut self.flows[index];
        match hop {
            Hop::Forward => flow.receiver.nc.handle_udp(now, flow.sender.addr, data),
            Hop::Back => flow.sender.nc.handle_udp(now, flow.receiver.addr, data),
            Hop::RelayForward => {
                flow.receiver.nc.handle_tcp(now, flow.sender.dht_pk, TcpSource::Routed, data);
            }
            Hop::RelayBack => {
                flow.sender.nc.handle_tcp(now, flow.receiver.dht_pk, TcpSource::Routed, data);
            }
        }
    }

    fn schedule(&mut self, index: usize, hop: Hop, data: Bytes) {
        let (forward_open, back_open) = self.flows[index].direct_open;
        let link = match hop {
            Hop::Forward if forward_open => &mut self.forward,
            Hop::Back if back_open => &mut self.back,
            Hop::Forward | Hop::Back => return,
            Hop::RelayForward | Hop::RelayBack => {
                let path = if hop == Hop::RelayForward { &mut self.relay_forward } else { &mut self.relay_back };
                let Some(at) = path.send(self.now, data.len()) else { return };
                return self.enqueue(index, hop, at, data);
            }
        };
        let Some(at) = link.send(self.now, data.len(), &mut self.rng) else { return };
        self.enqueue(index, hop, at, data);
    }

    fn enqueue(&mut self, index: usize, hop: Hop, at: Instant, data: Bytes) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.payloads.insert(seq, data);
        self.in_flight.push(Reverse((at, seq, index, hop)));
    }

    /// Moves what flow `index`'s endpoints produced: datagrams onto the
    /// links, events to the flow, and new payloads into the send buffer.
    fn pump(&mut self, index: usize) {
        loop {
            let mut moved = false;
            let now = self.now;
            let mut outgoing = Vec::new();
            {
                let flow = &mut self.flows[index];
                while let Some(t) = flow.sender.nc.poll_transmit() {
                    outgoing.push((Hop::Forward, t.payload));
                }
                while let Some(t) = flow.receiver.nc.poll_transmit() {
                    outgoing.push((Hop::Back, t.payload));
                }
                if flow.relay {
                    // Each side knows the other's address, as the DHT tells
                    // a node its friends' (the session may have come up
                    // through the relay).
                    let sender = flow.sender.pk;
                    if flow.receiver.nc.session(&sender).is_some_and(|s| s.addr.is_none()) {
                        flow.receiver.nc.set_addr(&sender, flow.sender.addr);
                    }
                    while let Some(t) = flow.sender.nc.poll_tcp_transmit() {
                        outgoing.push((Hop::RelayForward, t.payload));
                    }
                    while let Some(t) = flow.receiver.nc.poll_tcp_transmit() {
                        outgoing.push((Hop::RelayBack, t.payload));
                    }
                }
                while let Some(event) = flow.sender.nc.poll_event() {
                    if let NetCryptoEvent::Established(_) = event {
                        flow.stats.established.get_or_insert(now);
                    }
                }
                while let Some(event) = flow.receiver.nc.poll_event() {
                    if let NetCryptoEvent::Lossless(_, data) = event
                        && data.first() == Some(&PAYLOAD_ID)
                    {
                        let number = u64::from_be_bytes(data[1..9].try_into().unwrap_or_default());
                        assert_eq!(number, flow.next_expected, "flow {index}: packets arrive once and in order");
                        flow.next_expected += 1;
                        flow.stats.delivered += data.len() as u64;
                        if let Some(last) = flow.stats.last_delivery
                            && now - last > flow.stats.longest_gap.0
                        {
                            flow.stats.longest_gap = (now - last, Some(now));
                        }
                        flow.stats.last_delivery = Some(now);
                        if flow.stats.delivered >= flow.budget && flow.stats.finished.is_none() {
                            flow.stats.finished = Some(now);
                        }
                    }
                }
                // Keep the send buffer full while the budget lasts.
                if flow.stats.established.is_some() && now >= flow.start_at {
                    let peer = flow.receiver.pk;
                    while flow.stats.queued < flow.budget && flow.sender.nc.send_room(&peer) > 0 {
                        let mut payload = BytesMut::with_capacity(MAX_CRYPTO_DATA_SIZE);
                        payload.put_u8(PAYLOAD_ID);
                        payload.put_u64(flow.next_number);
                        payload.resize(MAX_CRYPTO_DATA_SIZE, 0xa5);
                        let len = payload.len() as u64;
                        if flow.sender.nc.send_lossless(now, &peer, payload.freeze()).is_err() {
                            break;
                        }
                        flow.stats.started.get_or_insert(now);
                        flow.next_number += 1;
                        flow.stats.queued += len;
                        moved = true;
                    }
                }
            }
            for (hop, data) in outgoing {
                moved = true;
                self.schedule(index, hop, data);
            }
            if !moved {
                break;
            }
        }
    }
}
