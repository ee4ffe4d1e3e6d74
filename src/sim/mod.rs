//! A deterministic network simulator for sans-IO nodes.
//!
//! Many [`Node`]s share a virtual clock. Datagrams cross a virtual network
//! that drops, delays (and so reorders) and duplicates them at seeded random
//! rates, so a protocol test of minutes of network time runs in milliseconds
//! and fails the same way on every run with the same seed.
//!
//! The loop repeatedly takes the earliest of: the next datagram delivery or
//! the next node timer; advances the clock to it; hands it to the node; and
//! queues whatever the node sends.
//!
//! Nodes may sit behind [`nat::Nat`]s: their datagrams leave with the NAT's
//! public address, and datagrams to that address reach them only as the
//! NAT's filtering allows, checked when they arrive.

pub mod link;
pub mod nat;
pub mod relay;
pub mod transport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::proto::{Node, NodeEvent};

/// How the virtual network treats datagrams.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram arrives twice.
    pub duplicate: f64,
    /// One-way delay, drawn uniformly from this range (a wide range reorders).
    pub delay: Range<Duration>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self { loss: 0.0, duplicate: 0.0, delay: Duration::from_millis(5)..Duration::from_millis(30) }
    }
}

/// Counters of the virtual network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Datagrams lost on purpose.
    pub lost: u64,
    /// Datagrams to addresses where no node lives, or that a NAT filtered.
    pub unroutable: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wakeup {
    Deliver { seq: u64 },
    Timer { node: usize },
}

/// A datagram on the wire: source as the receiver sees it, destination.
#[derive(Debug)]
struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    data: Bytes,
}

/// The virtual network and its nodes.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    net: NetConfig,
    rng: ChaCha8Rng,
    addrs: Vec<SocketAddr>,
    behind: Vec<Option<usize>>,
    nats: Vec<nat::Nat>,
    nodes: Vec<Node>,
    online: Vec<bool>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, Wakeup)>>,
    in_flight: HashMap<u64, InFlight>,
    next_seq: u64,
    events: Vec<(usize, NodeEvent)>,
    stats: NetStats,
    last_timer: Option<(usize, Instant)>,
    timer_repeats: u32,
}

impl Sim {
    /// An empty network whose randomness comes from `seed`.
    pub fn new(net: NetConfig, seed: u64) -> Self {
        // The virtual clock starts at a real instant (Instant has no other
        // constructor) and from then on only moves when the simulation does.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Self {
            now,
            net,
            rng: ChaCha8Rng::seed_from_u64(seed),
            addrs: Vec::new(),
            behind: Vec::new(),
            nats: Vec::new(),
            nodes: Vec::new(),
            online: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            events: Vec::new(),
            stats: NetStats::default(),
            last_timer: None,
            timer_repeats: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A seed for a node's own randomness, drawn from the simulation's.
    pub fn node_seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    /// Adds a node reachable at `addr`; returns its index.
    pub fn add_node(&mut self, addr: SocketAddr, node: Node) -> usize {
        self.add_node_inner(addr, None, node)
    }

    /// Adds a NAT; returns its index for [`add_node_behind`](Self::add_node_behind).
    pub fn add_nat(&mut self, nat: nat::Nat) -> usize {
        self.nats.push(nat);
        self.nats.len() - 1
    }

    /// Adds a node at the private address `addr` behind NAT `nat`.
    pub fn add_node_behind(&mut self, nat: usize, addr: SocketAddr, node: Node) -> usize {
        self.add_node_inner(addr, Some(nat), node)
    }

    fn add_node_inner(&mut self, addr: SocketAddr, nat: Option<usize>, node: Node) -> usize {
        let index = self.nodes.len();
        self.addrs.push(addr);
        self.behind.push(nat);
        self.nodes.push(node);
        self.online.push(true);
        if nat.is_none() {
            self.by_addr.insert(addr, index);
        }
        let now = self.now;
        self.nodes[index].handle_timeout(now);
        self.flush(index);
        index
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Node `index`, to act on it (bootstrap, search...). Call
    /// [`flush`](Self::flush) afterwards so what it sends goes out.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// Node `index`'s address.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.addrs[index]
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Takes a node off the network (its datagrams are lost, its timers
    /// stop) or puts it back.
    pub fn set_online(&mut self, index: usize, online: bool) {
        self.online[index] = online;
        if online {
            self.schedule_timer(index);
        }
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Events the nodes emitted so far, with the node index; drains them.
    pub fn take_events(&mut self) -> Vec<(usize, NodeEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Sends what node `index` has queued and re-arms its timer: call after
    /// acting on a node directly.
    pub fn flush(&mut self, index: usize) {
        while let Some(transmit) = self.nodes[index].poll_transmit() {
            self.stats.sent += 1;
            if !self.online[index] || self.chance(self.net.loss) {
                self.stats.lost += 1;
                continue;
            }
            let from = match self.behind[index] {
                Some(nat) => self.nats[nat].outbound(self.addrs[index], transmit.dst),
                None => self.addrs[index],
            };
            let copies = if self.chance(self.net.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = self.random_delay();
                let seq = self.next_seq;
                self.next_seq += 1;
                let datagram = InFlight { from, to: transmit.dst, data: transmit.payload.clone() };
                self.in_flight.insert(seq, datagram);
                self.queue.push(Reverse((self.now + delay, Wakeup::Deliver { seq })));
            }
        }
        while let Some(event) = self.nodes[index].poll_event() {
            self.events.push((index, event));
        }
        self.schedule_timer(index);
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= probability
    }

    fn random_delay(&mut self) -> Duration {
        let Range { start, end } = self.net.delay;
        if end <= start {
            return start;
        }
        let span = (end - start).as_nanos() as u64;
        start + Duration::from_nanos(self.rng.next_u64() % span)
    }

    fn schedule_timer(&mut self, index: usize) {
        if let Some(at) = self.nodes[index].poll_timeout() {
            self.queue.push(Reverse((at.max(self.now), Wakeup::Timer { node: index })));
        }
    }

    /// The node a datagram from `from` to `to` reaches: through a NAT whose
    /// public IP `to` has (if its filtering lets `from` in), or directly.
    fn resolve(&self, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        if let Some(nat) = self.nats.iter().position(|n| n.public_ip() == to.ip()) {
            let inside = self.nats[nat].inbound(from, to.port())?;
            return (0..self.nodes.len()).find(|&i| self.behind[i] == Some(nat) && self.addrs[i] == inside);
        }
        let index = *self.by_addr.get(&to)?;
        self.behind[index].is_none().then_some(index)
    }

    /// Runs until virtual time `deadline`.
    pub fn run_until(&mut self, deadline: Instant) {
        while let Some(Reverse((at, _))) = self.queue.peek() {
            if *at > deadline {
                break;
            }
            let Some(Reverse((at, wakeup))) = self.queue.pop() else { break };
            self.now = self.now.max(at);
            match wakeup {
                Wakeup::Deliver { seq } => {
                    let Some(InFlight { from, to, data }) = self.in_flight.remove(&seq) else { continue };
                    let Some(to) = self.resolve(from, to) else {
                        self.stats.unroutable += 1;
                        continue;
                    };
                    if !self.online[to] {
                        self.stats.lost += 1;
                        continue;
                    }
                    self.stats.delivered += 1;
                    let now = self.now;
                    self.nodes[to].handle_udp(now, from, data);
                    self.flush(to);
                }
                Wakeup::Timer { node } => {
                    // Stale wake-ups (the node re-armed since) are skipped.
                    if !self.online[node] || self.nodes[node].poll_timeout().is_none_or(|t| t > self.now) {
                        continue;
                    }
                    let now = self.now;
                    self.nodes[node].handle_timeout(now);
                    // A node whose timer stays due after it ran would spin
                    // forever at one instant: a bug worth a clear failure.
                    if self.last_timer == Some((node, now)) {
                        self.timer_repeats += 1;
                        assert!(
                            self.timer_repeats < 10_000,
                            "node {node} keeps asking to run at the same instant {now:?}: {:?} {:?}",
                            self.nodes[node].timers(),
                            self.nodes[node].net_crypto().debug_sessions()
                        );
                    } else {
                        self.last_timer = Some((node, now));
                        self.timer_repeats = 0;
                    }
                    self.flush(node);
                }
            }
        }
        self.now = self.now.max(deadline);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline);
    }
}
